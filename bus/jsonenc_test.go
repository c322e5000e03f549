package bus

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// sameAsMarshal fails unless the appender writes what json.Marshal writes,
// or both refuse.
func sameAsMarshal(t *testing.T, e TurnEvent) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := marshal(e)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("json.Marshal err %v, appender err %v for %#v", werr, gerr, e)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("appender wrote\n%s\njson.Marshal wrote\n%s", got, want)
	}
}

func TestTurnEventJSONMatchesEncodingJSON(t *testing.T) {
	cost := 0.125
	at := time.Date(2026, 11, 28, 3, 4, 5, 600700800, time.UTC)
	for _, e := range []TurnEvent{
		{},
		{RunID: "r1", Turn: 2, Seq: 3, At: at, Kind: TurnText, Text: "hello"},
		{RunID: "r1", Turn: -1, Seq: -5, At: at.In(time.FixedZone("x", 5*3600+1800)), Kind: TurnText, SessionID: "s",
			Text: "quote \" back \\ nl \n cr \r tab \t bs \b ff \f nul \x00 del \x7f <script>&amp;</script> \u2028 \u2029 é 日本 \xff\xfe bad"},
		{RunID: "r", At: at, Kind: TurnToolUse, Tool: &ToolCall{ID: "t1", Name: "Bash", Input: json.RawMessage(`{ "cmd" : "ls <x> & y" , "n": [1, 2.50, 3e2] }`)}},
		{RunID: "r", At: at, Kind: TurnToolResult, Tool: &ToolCall{ID: "t1", IsError: true}, Text: "out"},
		{RunID: "r", At: at, Kind: TurnOutcome, Result: &TurnResult{IsError: true, Subtype: "success", Usage: Usage{InputTokens: 5}, CostUSD: &cost, PermissionDenials: []string{"Write"}}},
		{RunID: "r", At: at, Kind: TurnOther, Raw: json.RawMessage(`{"type":"x","a":[true,false,null]}`)},
		{RunID: "r", At: at, Kind: TurnTrackerTool, Text: `{"data":"<x>"}`, TrackerTool: &ToolCallRecord{Tool: "linear_graphql", Arguments: json.RawMessage(`{"query":"q <b>"}`),
			Class: "refused", Rule: "own-issue", Error: "no & <no>", DurationMS: 12, RateLimit: &ToolRateLimit{Headers: map[string]string{"Retry-After": "5"}, Limited: true, RetryAfterMS: 5000}, OutputBytes: 14}},
		{RunID: "r", At: at, Kind: TurnTrackerTool, Text: `{"data":{"issue":{"id":"<i>"}}}`, TrackerTool: &ToolCallRecord{Tool: "linear_graphql",
			Arguments: json.RawMessage(`{ "query" : "query { issue(id: \"<x>&\") { id } }", "variables": {"key": "****"} }`), OK: true, DurationMS: 212,
			RateLimit: &ToolRateLimit{Headers: map[string]string{"X-RateLimit-Requests-Remaining": "0", "Retry-After": "30"}, Limited: true, RetryAfterMS: 30000}, OutputBytes: 4096}},
		{RunID: "r", At: at, Kind: TurnTrackerTool, TrackerTool: &ToolCallRecord{Tool: "linear_graphql", Class: ToolRefused, Rule: "own-issue", Error: "issueUpdate of <another> issue"}},
		{RunID: "r", At: at, Kind: TurnTrackerTool, TrackerTool: &ToolCallRecord{Tool: "x", Arguments: json.RawMessage(`not json`)}},
		{RunID: "r", At: at, Kind: TurnOther, Raw: json.RawMessage(`not json`)},
		{RunID: "r", At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{RunID: "r", At: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{RunID: "r", At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600))},
		{RunID: "r", At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("near", 23*3600+59*60))},
	} {
		sameAsMarshal(t, e)
	}
	// Every single byte, alone and in company.
	for b := range 256 {
		sameAsMarshal(t, TurnEvent{Text: string([]byte{byte(b)})})
		sameAsMarshal(t, TurnEvent{Text: "a" + string([]byte{byte(b)}) + "z", SessionID: string([]byte{byte(b), 'x'})})
	}
}

func TestEncodeUsesTheAppender(t *testing.T) {
	e := TurnEvent{RunID: "r1", Turn: 1, Seq: 1, At: time.Unix(1, 0).UTC(), Kind: TurnText, Text: "<b>"}
	m, err := encode("subj", TurnEvents.spec, TurnEvents.spec.typeName, e)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(e)
	if !bytes.Equal(m.Data, want) {
		t.Fatalf("encoded %s, want %s", m.Data, want)
	}
	var nilEvent *TurnEvent
	if b, err := marshal(nilEvent); err != nil || string(b) != "null" {
		t.Fatalf("nil event: %s %v", b, err)
	}
}

// FuzzTurnEventJSON: for any text, ids and raw parts, the appender writes
// exactly what json.Marshal writes (or refuses what it refuses).
func FuzzTurnEventJSON(f *testing.F) {
	f.Add("r1", "hello", "s", "t1", "Bash", []byte(`{"a":1}`), []byte(`{"b":[1,2]}`), int64(1), true)
	f.Add("", "\x00\u2028<>&\xff", "", "", "", []byte(` { } `), []byte(`nope`), int64(-1), false)
	f.Fuzz(func(t *testing.T, runID, text, session, toolID, toolName string, input, raw []byte, nanos int64, isErr bool) {
		if len(text)+len(input)+len(raw) > 1<<16 {
			return
		}
		e := TurnEvent{RunID: runID, Turn: int(nanos % 7), Seq: nanos, At: time.Unix(0, nanos).UTC(), Kind: TurnEventKind(toolName),
			SessionID: session, Text: text, Raw: raw}
		if toolID != "" || isErr {
			e.Tool = &ToolCall{ID: toolID, Name: toolName, Input: input, IsError: isErr}
		}
		sameAsMarshal(t, e)
	})
}

// FuzzLeadingAt: the fast read of an event's time agrees with encoding/json
// whenever it answers, and answers for every event this build writes.
func FuzzLeadingAt(f *testing.F) {
	f.Add([]byte(`{"run_id":"r","turn":1,"seq":2,"at":"2026-11-28T03:04:05.123Z","kind":"text"}`))
	f.Add([]byte(`{"run_id":"r\"","turn":1,"seq":2,"at":"2026-11-28T03:04:05Z"}`))
	f.Add([]byte(`{"run_id":"r","turn":-,"seq":2,"at":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		at, ok := leadingAt(data)
		if !ok || !json.Valid(data) {
			return
		}
		var v struct {
			At time.Time `json:"at"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return // a duplicate or mistyped key later on: decodeAt falls back
		}
		if !v.At.Equal(at) {
			t.Fatalf("leadingAt %v, encoding/json %v for %s", at, v.At, data)
		}
	})
}

func TestDecodeAtReadsWhatThisBuildWrites(t *testing.T) {
	for _, e := range []TurnEvent{
		{RunID: "run-1", Turn: 3, Seq: 99, At: time.Date(2026, 11, 28, 3, 4, 5, 123456789, time.UTC), Kind: TurnText, Text: "x"},
		{RunID: "r", Turn: 0, Seq: 0, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -7*3600))},
	} {
		m, err := encode("s", TurnEvents.spec, TurnEvents.spec.typeName, e)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := leadingAt(m.Data); !ok {
			t.Fatalf("fast path missed %s", m.Data)
		}
		at, err := decodeAt(m, TurnEvents.spec, TurnEvents.spec.typeName)
		if err != nil || !at.Equal(e.At) {
			t.Fatalf("decodeAt = %v, %v; want %v", at, err, e.At)
		}
	}
	// Another layout, and broken JSON behind a good prefix.
	m, _ := encode("s", TurnEvents.spec, TurnEvents.spec.typeName, TurnEvent{})
	m.Data = []byte(`{"at":"2026-11-28T00:00:00Z","run_id":"r"}`)
	if at, err := decodeAt(m, TurnEvents.spec, TurnEvents.spec.typeName); err != nil || at.Year() != 2026 {
		t.Fatalf("fallback: %v %v", at, err)
	}
	m.Data = []byte(`{"run_id":"r","turn":1,"seq":2,"at":"2026-11-28T00:00:00Z", broken`)
	if _, err := decodeAt(m, TurnEvents.spec, TurnEvents.spec.typeName); err == nil {
		t.Fatal("broken JSON behind a good prefix was accepted")
	}
	m.Header.Set(HeaderType, "RunEvent")
	if _, err := decodeAt(m, TurnEvents.spec, TurnEvents.spec.typeName); err == nil {
		t.Fatal("wrong type accepted")
	}
}
