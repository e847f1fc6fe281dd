package sse_test

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/b2ce5911/sse"
)

// A client of a Hub learns from a reset event why its history is gone and
// where it stands now.
func ExampleResetData() {
	stream := "event: reset\nid: 3f2a9c1e-97\n" +
		`data: {"reason":"expired","lastEventId":"3f2a9c1e-41","resume":"3f2a9c1e-97"}` + "\n\n"
	e, err := sse.NewDecoder(strings.NewReader(stream)).Decode()
	if err != nil || e.Type != sse.DefaultResetType {
		return
	}
	var d sse.ResetData
	if err := json.Unmarshal(e.Bytes(), &d); err != nil {
		return
	}
	switch d.Reason {
	case sse.GapExpired:
		fmt.Println("away too long: reload, then resume from", d.Resume)
	default: // sse.GapUnknown, or a reason added later
		fmt.Println("the server does not know", d.LastEventID+": reload")
	}
	// Output: away too long: reload, then resume from 3f2a9c1e-97
}
