package runlog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

func TestStoredEventAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, e := range []Event{
		{Stream: bus.StreamTurns, Seq: 42, Subject: subjectOf(t, bus.TurnEvents, "r1", "1"), Type: "TurnEvent", At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Event: json.RawMessage(`{"a":"\u003c"}`)},
		{Stream: bus.StreamRuns, Subject: "s<&>\"", Type: "RunEvent"},
		{Stream: bus.StreamTurns, Seq: 7, Index: 3, Subject: subjectOf(t, bus.TurnEvents, "r1", "2"), Type: "TurnEvent", Event: json.RawMessage(`{}`)},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON wrote\n%s\njson.Marshal wrote\n%s", got, want)
		}
	}
}

// A tracker tool call's event keeps its whole record through the store
// and out of the JSONL export, alone in a message, in a batch and
// published on its own: the export is the audit trail of what the agent
// did with the operator's key.
func TestTrackerToolEventRoundTripsThroughTheExport(t *testing.T) {
	b := openTest(t, bus.Options{})
	at := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	okCall := &bus.ToolCallRecord{Tool: "linear_graphql", Arguments: json.RawMessage(`{"query":"mutation { issueUpdate(id: \"<own>\") { success } }","variables":{"token":"****"}}`),
		OK: true, DurationMS: 212, OutputBytes: 51,
		RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-RateLimit-Requests-Remaining": "1499"}}}
	refused := &bus.ToolCallRecord{Tool: "linear_graphql", Arguments: json.RawMessage(`{"query":"mutation { issueDelete(id: \"other\") { success } }"}`),
		Class: bus.ToolRefused, Rule: "own-issue", Error: "issueDelete is not an allowed mutation", DurationMS: 3}
	limited := &bus.ToolCallRecord{Tool: "linear_graphql", Arguments: json.RawMessage(`{}`), Class: bus.TrackerRateLimited, Error: "HTTP 429", DurationMS: 40,
		RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"Retry-After": "30"}, Limited: true, RetryAfterMS: 30000}}
	want := map[int64]*bus.ToolCallRecord{2: okCall, 4: refused, 5: limited}
	ev := func(seq int64) bus.TurnEvent {
		e := bus.TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: at.Add(time.Duration(seq) * time.Millisecond), Kind: bus.TurnText, Text: "t"}
		if rec := want[seq]; rec != nil {
			e.Kind, e.TrackerTool, e.Text = bus.TurnTrackerTool, rec, `{"data":{"issueUpdate":{"success":true}}}`
		}
		return e
	}
	// Seq 1-3 in one batch, 4 alone through the writer, 5 published alone.
	w := NewWriter(b, 0)
	for seq := int64(1); seq <= 4; seq++ {
		if err := w.AppendTurn(t.Context(), ev(seq)); err != nil {
			t.Fatal(err)
		}
		if seq == 3 || seq == 4 {
			if err := w.SendTurns(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, ev(5), "", "r1", "1"); err != nil {
		t.Fatal(err)
	}
	events, _, err := Timeline(t.Context(), b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 5 {
		t.Fatalf("timeline has %d events, want 5", len(events))
	}
	seen := 0
	for _, e := range events {
		rec := want[e.Turn.Seq]
		if rec == nil {
			continue
		}
		seen++
		if e.Turn.Kind != bus.TurnTrackerTool || !sameRecord(e.Turn.TrackerTool, rec) {
			t.Errorf("seq %d read back as %s %+v, want %+v", e.Turn.Seq, e.Turn.Kind, e.Turn.TrackerTool, rec)
		}
		line, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		var exported struct {
			Event struct {
				Kind        bus.TurnEventKind `json:"kind"`
				Text        string            `json:"text"`
				TrackerTool json.RawMessage   `json:"tracker_tool"`
			} `json:"event"`
		}
		if err := json.Unmarshal(line, &exported); err != nil {
			t.Fatalf("export line %s: %v", line, err)
		}
		var got bus.ToolCallRecord
		if err := json.Unmarshal(exported.Event.TrackerTool, &got); err != nil {
			t.Fatalf("seq %d: the export line has no tracker_tool object: %s", e.Turn.Seq, line)
		}
		if exported.Event.Kind != bus.TurnTrackerTool || exported.Event.Text == "" || !sameRecord(&got, rec) {
			t.Errorf("seq %d exported as %s", e.Turn.Seq, line)
		}
	}
	if seen != 3 {
		t.Fatalf("read back %d tracker tool events, want 3", seen)
	}
}

// sameRecord compares tool call records, their arguments as JSON values
// (encoding/json writes < > & in strings as \u escapes).
func sameRecord(a, b *bus.ToolCallRecord) bool {
	if a == nil || b == nil {
		return a == b
	}
	var av, bv any
	if json.Unmarshal(a.Arguments, &av) != nil || json.Unmarshal(b.Arguments, &bv) != nil || !reflect.DeepEqual(av, bv) {
		return false
	}
	x, y := *a, *b
	x.Arguments, y.Arguments = nil, nil
	return reflect.DeepEqual(x, y)
}
