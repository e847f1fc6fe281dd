#!/usr/bin/env bash
# The "Hub at scale" measurements of BENCHMARKS.md (issue 14): this tree's
# load tool against the same tool built on the library at BASE (the commit
# before the detached streams), every raw output in results/scale-*.
#
#   bash scale.sh [BASE]     # BASE defaults to f7e8828; about 30 min
#   OUT=/tmp/x bash scale.sh # elsewhere than results/
set -euo pipefail
cd "$(dirname "$0")"
base=${1:-f7e8828}
out=${OUT:-results}
mkdir -p "$out"
new=/tmp/fanout-new base_bin=/tmp/fanout-base
go build -o "$new" ./cmd/fanout
# The same tool on the library at BASE: a worktree of it, and a copy of
# this module whose replace points there.
rm -rf /tmp/scale-base-root /tmp/scale-base-bench
git worktree add --detach /tmp/scale-base-root "$base" >/dev/null
trap 'git worktree remove --force /tmp/scale-base-root' EXIT
cp -r . /tmp/scale-base-bench
(cd /tmp/scale-base-bench && go mod edit -replace github.com/b2ce5911/sse=/tmp/scale-base-root && go build -o "$base_bin" ./cmd/fanout)
export SSEBENCH_FANOUT_GAPS=1 # the child logs every gap and every stream that ends

run() { # name, binary, args...
	local name=$1 bin=$2
	shift 2
	echo "== $name: $*" >&2
	"$bin" "$@" >"$out/scale-$name.md" 2>"$out/scale-$name.log" || true
}
# Sustained fan-out, this tree against BASE, alternated; first, while
# nothing else of this script runs.
for i in 1 2; do
	run fanout-new-$i "$new" -n 1000,5000,10000 -libs ours
	run fanout-base-$i "$base_bin" -n 1000,5000,10000 -libs ours
done
# Idle HTTP/1.1 and HTTP/2 (1,000 streams per TLS connection), each
# library and N in a fresh process: what one run leaves behind (freed while
# the next one is measured) would make the next look smaller.
for n in 10000 19000; do
	for lib in ours go-sse r3labs reference; do
		run idle-h1-$lib-$n "$new" -mode idle -n $n -libs $lib
		run idle-h2-$lib-$n "$new" -mode idle -h2 1000 -n $n -libs $lib
	done
	run idle-h1-ours-nodetach-$n "$new" -mode idle -n $n -libs ours -hub DisableDetach=true
	run idle-h2-ours-nodetach-$n "$new" -mode idle -h2 1000 -n $n -libs ours -hub DisableDetach=true
done
# 10,000 events back to back to 1,000 clients, history 10,000.
run burst "$new" -mode burst -n 1000 -events 10000
# No window: ours' defaults against Backpressure; clients resume.
run nowindow "$new" -mode nowindow -n 1000 -events 20000
# One client at a tenth of the rate among 1,000: ours three times over
# (without, with, alternated), the others once.
run slow-ours "$new" -mode slow -n 1000 -rate 100 -duration 10s -libs ours -repeat 3
run slow-others "$new" -mode slow -n 1000 -rate 100 -duration 10s -libs go-sse,r3labs,reference
