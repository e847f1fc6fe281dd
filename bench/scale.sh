#!/usr/bin/env bash
# The "Hub at scale" measurements of BENCHMARKS.md (issue 14): this tree's
# load tool against the same tool built on the library at BASE (the commit
# before the detached streams), every raw output in results/scale-*.
#
#   bash scale.sh [BASE]     # BASE defaults to f7e8828; about 30 min
set -euo pipefail
cd "$(dirname "$0")"
base=${1:-f7e8828}
out=results
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
# Idle HTTP/1.1 and HTTP/2 (1,000 streams per TLS connection).
run idle-h1 "$new" -mode idle -n 10000,19000
run idle-h1-nodetach "$new" -mode idle -n 10000,19000 -libs ours -hub DisableDetach=true
run idle-h2 "$new" -mode idle -h2 1000 -n 10000,19000
# 10,000 events back to back to 1,000 clients, history 10,000.
run burst "$new" -mode burst -n 1000 -events 10000
# No window: ours' defaults against Backpressure; clients resume.
run nowindow "$new" -mode nowindow -n 1000 -events 20000
# One client at a tenth of the rate among 1,000.
run slow "$new" -mode slow -n 1000 -rate 200 -duration 10s
# Sustained fan-out, this tree against BASE, alternated.
for i in 1 2; do
	run fanout-new-$i "$new" -n 1000,5000,10000 -libs ours
	run fanout-base-$i "$base_bin" -n 1000,5000,10000 -libs ours
done
