package bus

import (
	"encoding/json"
	"strings"
	"testing"
)

// A progress message carries a tracker tool call's record without its
// arguments when they are large (up to ToolRecordMaxBytes), and never
// changes the event it was cut from.
func TestBriefCutsTrackerToolArguments(t *testing.T) {
	big := json.RawMessage(`{"query":"` + strings.Repeat("x", ProgressTextBytes) + `"}`)
	small := json.RawMessage(`{"query":"{ viewer { id } }"}`)
	rec := &ToolCallRecord{Tool: "linear_graphql", Arguments: big, OK: true, DurationMS: 5}
	e := TurnEvent{Kind: TurnTrackerTool, TrackerTool: rec, Text: strings.Repeat("é", ProgressTextBytes)}
	b := e.Brief()
	if b.TrackerTool == nil || b.TrackerTool.Tool != "linear_graphql" || !b.TrackerTool.OK || b.TrackerTool.DurationMS != 5 {
		t.Fatalf("brief lost the record: %+v", b.TrackerTool)
	}
	if b.TrackerTool.Arguments != nil {
		t.Errorf("brief kept %d bytes of arguments", len(b.TrackerTool.Arguments))
	}
	if len(rec.Arguments) != len(big) {
		t.Error("brief changed the event's own record")
	}
	if len(b.Text) > ProgressTextBytes+len("…") {
		t.Errorf("brief text is %d bytes", len(b.Text))
	}
	e.TrackerTool = &ToolCallRecord{Tool: "linear_graphql", Arguments: small}
	if got := e.Brief().TrackerTool.Arguments; string(got) != string(small) {
		t.Errorf("small arguments: got %s", got)
	}
}
