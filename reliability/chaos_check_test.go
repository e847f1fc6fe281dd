package reliability_test

import (
	"strconv"
	"testing"
)

// TestChaosCheck shows that check, which the chaos tests rely on, finds
// every kind of fault it reports, and accepts the streams the Hub
// documents.
func TestChaosCheck(t *testing.T) {
	t.Parallel()
	// Two epochs: a, whose history the restart lost, and b.
	mk := func(name string, n0, count int) *epoch {
		ep := &epoch{name: name}
		for i := range count {
			ep.events = append(ep.events, published{name + "-" + strconv.Itoa(i+1), n0 + i})
		}
		return ep
	}
	one := []*epoch{mk("a", 0, 4)}
	two := []*epoch{mk("a", 0, 4), mk("b", 4, 3)}
	msg := func(ep *epoch, pos int) received {
		return received{"message", ep.events[pos].id, strconv.Itoa(ep.events[pos].n)}
	}
	reset := func(id string) received { return received{"reset", id, "gone"} }
	a, b := two[0], two[1]
	tests := []struct {
		name   string
		epochs []*epoch
		got    []received
		want   chaosResult
		bad    bool
	}{
		{"all once in order", one, []received{msg(a, 1), msg(a, 2), msg(a, 3)}, chaosResult{}, false},
		{"one lost", one, []received{msg(a, 1), msg(a, 3)}, chaosResult{lost: 1}, false},
		{"last one lost", one, []received{msg(a, 1), msg(a, 2)}, chaosResult{lost: 1}, false},
		{"one twice", one, []received{msg(a, 1), msg(a, 2), msg(a, 2), msg(a, 3)}, chaosResult{dup: 1}, false},
		{"swapped", one, []received{msg(a, 2), msg(a, 1), msg(a, 3)}, chaosResult{order: 1}, false},
		{"reset where history was kept", one, []received{msg(a, 1), reset("a-1"), msg(a, 2), msg(a, 3)}, chaosResult{resets: 1}, true},
		{"wrong data", one, []received{msg(a, 1), {"message", a.events[2].id, "x"}, msg(a, 3)}, chaosResult{}, true},
		{"unknown id", one, []received{msg(a, 1), msg(a, 2), {"message", "z-1", "9"}, msg(a, 3)}, chaosResult{}, true},
		{"reset at the boundary", two, []received{msg(a, 1), reset(b.events[0].id), msg(b, 1), msg(b, 2)}, chaosResult{resets: 1, gone: 2}, false},
		{"reset to an empty epoch", two, []received{msg(a, 1), msg(a, 2), msg(a, 3), reset("b-0"), msg(b, 0), msg(b, 1), msg(b, 2)}, chaosResult{resets: 1}, false},
		{"events before the reset's id", two, []received{msg(a, 1), reset(b.events[1].id), msg(b, 1), msg(b, 2)}, chaosResult{resets: 1, gone: 2, order: 1}, true},
		{"new epoch without a reset", two, []received{msg(a, 1), msg(b, 0), msg(b, 1), msg(b, 2)}, chaosResult{lost: 5}, true},
		{"no reset, new epoch missed", two, []received{msg(a, 1), msg(a, 2), msg(a, 3)}, chaosResult{lost: 3}, false},
		{"two resets into one epoch", two, []received{msg(a, 1), reset("b-0"), reset(b.events[0].id), msg(b, 1), msg(b, 2)}, chaosResult{resets: 2, gone: 2, lost: 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := check(tt.got, tt.epochs, "reset")
			if bad := len(r.bad) > 0; bad != tt.bad {
				t.Errorf("bad = %q, want some: %v", r.bad, tt.bad)
			}
			r.bad = nil
			if r.lost != tt.want.lost || r.dup != tt.want.dup || r.order != tt.want.order || r.resets != tt.want.resets || r.gone != tt.want.gone {
				t.Errorf("check = %+v, want %+v", r, tt.want)
			}
		})
	}
}
