package runlog

import (
	"bytes"
	"encoding/json"
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
