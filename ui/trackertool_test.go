package ui

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// trackerCalls are three tracker tool calls of a run, seq from 5: one
// that succeeded, one a rule refused, one the provider rate limited.
// Every field that comes from the agent or the provider holds markup.
func trackerCalls(runID string, at time.Time) []bus.TurnEvent {
	calls := []struct {
		text string
		rec  bus.ToolCallRecord
	}{
		{`{"data":{"issue":{"title":"<script>alert(6)</script>"}}}`, bus.ToolCallRecord{Tool: "linear_graphql", OK: true, DurationMS: 212, OutputBytes: 4096,
			Arguments: json.RawMessage(`{"query":"query { issue(id: \"<img src=x onerror=alert(5)>\") { title } }","variables":{"key":"****"}}`),
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-RateLimit-Requests-Remaining": "<b>1499</b>"}}}},
		{"", bus.ToolCallRecord{Tool: "linear_graphql", Class: bus.ToolRefused, Rule: "own-issue", Error: "issueUpdate targets <b>ABC-2</b>, not this run's issue", DurationMS: 3,
			Arguments: json.RawMessage(`{"query":"mutation { issueUpdate(id: \"ABC-2\") { success } }"}`)}},
		{"", bus.ToolCallRecord{Tool: "linear_graphql", Class: bus.TrackerRateLimited, Error: "Linear answered HTTP 429", DurationMS: 40, Arguments: json.RawMessage(`{}`),
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"Retry-After": "30"}, Limited: true, RetryAfterMS: 30000}}},
	}
	var out []bus.TurnEvent
	for i, c := range calls {
		rec := c.rec
		out = append(out, bus.TurnEvent{RunID: runID, Turn: 1, Seq: int64(5 + i), At: at.Add(time.Duration(i) * time.Second), Kind: bus.TurnTrackerTool, Text: c.text, TrackerTool: &rec})
	}
	return out
}

// markup is what no page may carry unescaped from trackerCalls.
var markup = []string{"<img src=x", "<script>alert", "<b>"}

// trackerEntryWants is what the transcript entry of each of trackerCalls
// shows, escaped.
var trackerEntryWants = [][]string{
	{`class="ev ev-tracker-tool"`, "tracker tool", "linear_graphql", `<span class="st st-ok">ok</span>`, "212 ms", "arguments (secrets masked)",
		"&lt;img src=x onerror=alert(5)&gt;", `&#34;****&#34;`, "output (first 56 of 4096 bytes)", "&lt;script&gt;alert(6)&lt;/script&gt;",
		`<span class="st">rate limit</span>`, "rate-limit headers", "X-RateLimit-Requests-Remaining: &lt;b&gt;1499&lt;/b&gt;"},
	{`<span class="st st-bad">failed</span>`, "refused, rule own-issue", "3 ms", "issueUpdate targets &lt;b&gt;ABC-2&lt;/b&gt;, not this run&#39;s issue"},
	{`<span class="st st-bad">failed</span>`, "rate_limited", "40 ms", `<span class="st st-warn">rate limited, retry after 30s</span>`, "Linear answered HTTP 429", "Retry-After: 30"},
}

// TestTrackerToolEntry: each tracker tool call is a transcript entry of
// its own kind: the tool, an ok or failed badge, the class and the rule
// that refused it, the duration, the rate-limit signal, the masked
// arguments and the start of the output, everything from outside escaped;
// its one-line summary (a run's latest activity, the API's recent events)
// says the same in words.
func TestTrackerToolEntry(t *testing.T) {
	calls := trackerCalls("run-t", time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC))
	for i, ev := range calls {
		var b strings.Builder
		if err := eventItem(runlog.Event{Stream: bus.StreamTurns, Seq: uint64(i + 1), At: ev.At, Turn: &ev}).Render(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
		html := b.String()
		for _, want := range trackerEntryWants[i] {
			if !strings.Contains(html, want) {
				t.Errorf("call %d: entry lacks %q:\n%s", i, want, html)
			}
		}
		for _, bad := range markup {
			if strings.Contains(html, bad) {
				t.Errorf("call %d: entry holds %q unescaped:\n%s", i, bad, html)
			}
		}
	}
	for i, want := range []string{
		"tracker tool linear_graphql: ok (212 ms)",
		"tracker tool linear_graphql: failed (refused, rule own-issue, 3 ms): issueUpdate targets <b>ABC-2</b>, not this run's issue",
		"tracker tool linear_graphql: failed (rate_limited, retry after 30s, 40 ms): Linear answered HTTP 429",
	} {
		if got := eventMessage(calls[i]); got != want {
			t.Errorf("call %d: summary %q, want %q", i, got, want)
		}
	}
	// An event without its record (damage, an older writer) still shows.
	var b strings.Builder
	bare := bus.TurnEvent{Kind: bus.TurnTrackerTool, Text: "<i>x</i>"}
	if err := eventItem(runlog.Event{Turn: &bare}).Render(t.Context(), &b); err != nil || !strings.Contains(b.String(), "tracker tool") || !strings.Contains(b.String(), "&lt;i&gt;x") {
		t.Errorf("bare tracker_tool event: %v %s", err, b.String())
	}
	if got := eventMessage(bare); got != "<i>x</i>" {
		t.Errorf("bare summary %q", got)
	}
}

// TestTrackerToolCallsShownEverywhere: a run's tracker tool calls, stored
// and announced as the runner does, are the run's latest activity while
// it runs, entries of the run page, of its live stream and of its replay,
// whole objects in the API's event stream and summaries in the issue's
// recent events.
func TestTrackerToolCallsShownEverywhere(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-t", "TT-1", "tools", false)
	calls := trackerCalls("run-t", time.Now().UTC().Add(-30*time.Second))
	for _, ev := range calls {
		if _, err := bus.PublishDurable(t.Context(), h.b, bus.TurnEvents, ev, "", "run-t", "1"); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(h.b, bus.AgentProgress, bus.RunProgress{RunID: "run-t", Turn: 1, Events: ev.Seq, New: 1, Last: ev.Brief()}, "run-t"); err != nil {
			t.Fatal(err)
		}
	}
	latest := "tracker tool linear_graphql: failed (rate_limited, retry after 30s, 40 ms): Linear answered HTTP 429"
	h.eventually(t, "the latest activity", func() bool { r, _ := h.srv.model.Run("run-t"); return r.LastMessage == latest })
	if _, body := get(t, h.url+"/api/v1/state"); !strings.Contains(body, `"last_message": "`+latest+`"`) || !strings.Contains(body, `"last_event": "tool_call_failed"`) ||
		!strings.Contains(body, `"last_event_kind": "tracker_tool"`) {
		t.Errorf("state's running entry lacks the call:\n%s", body)
	}
	if err := runlog.Record(t.Context(), h.b, bus.RunEvent{RunID: "run-t", Event: bus.RunFinished, At: time.Now().UTC(), Status: bus.RunSucceeded}, "run-t-end"); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "run ended", func() bool { r, ok := h.srv.model.Run("run-t"); return ok && r.Status != bus.RunRunning })

	wantEntries := func(where, html string) {
		t.Helper()
		if n := strings.Count(html, "ev-tracker-tool"); n != 3 {
			t.Errorf("%s: %d tracker tool entries, want 3", where, n)
		}
		for i, wants := range trackerEntryWants {
			for _, want := range wants {
				if !strings.Contains(html, want) {
					t.Errorf("%s: call %d: lacks %q", where, i, want)
				}
			}
		}
		for _, bad := range markup {
			if strings.Contains(html, bad) {
				t.Errorf("%s holds %q unescaped", where, bad)
			}
		}
	}
	resp, page := get(t, h.url+"/runs/run-t")
	wantStatus(t, resp, page, 200)
	wantEntries("run page", page)
	// The live stream of the finished run sends every entry, then done.
	resp, stream := getBounded(t, h.url+"/runs/run-t/stream")
	wantStatus(t, resp, stream, 200)
	wantEntries("run page stream", stream)

	// The API's event stream: each call whole, with its record.
	data, _ := h.eventStream(t, "run-t", "")
	var got []bus.ToolCallRecord
	for _, d := range data {
		var ev runlog.Event
		var te bus.TurnEvent
		if err := json.Unmarshal([]byte(d), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Stream == bus.StreamTurns && json.Unmarshal(ev.Event, &te) == nil && te.Kind == bus.TurnTrackerTool && te.TrackerTool != nil {
			got = append(got, *te.TrackerTool)
		}
	}
	if len(got) != 3 || !got[0].OK || got[0].OutputBytes != 4096 || got[1].Rule != "own-issue" || got[2].RateLimit == nil || got[2].RateLimit.RetryAfterMS != 30000 {
		t.Errorf("API event stream tracker tool records: %+v", got)
	}
	// The issue's recent events summarise them.
	_, issue := get(t, h.url+"/api/v1/issues/TT-1")
	if !strings.Contains(issue, `"event": "tool_call_completed"`) || !strings.Contains(issue, `"kind": "tracker_tool"`) || !strings.Contains(issue, "tracker tool linear_graphql: ok (212 ms)") {
		t.Errorf("recent events lack the calls:\n%s", issue)
	}

	// A replay of the run shows them the same way.
	events, _, err := runlog.Timeline(t.Context(), h.b, "run-t")
	if err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	srv, err := New(Options{Replay: &Replay{RunID: "run-t", Events: events, Speed: 0}, OnListen: func(u string) { urls <- u }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	url := <-urls
	h.eventually(t, "replay played", func() bool { _, body := get(t, url+"/api/v1/state"); return strings.Contains(body, `"done": true`) })
	resp, page = get(t, url+"/runs/run-t")
	wantStatus(t, resp, page, 200)
	wantEntries("replayed run page", page)
}

// TestPrettyJSONReadsAsWritten: stored JSON has < > & as \u escapes; the
// transcript shows the characters (escaped as HTML by templ), and an
// escaped backslash before "u003c" is left alone.
func TestPrettyJSONReadsAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		`{"q":"\u003cb\u003e \u0026 \u003C"}`: "{\n  \"q\": \"<b> & <\"\n}",
		`{"q":"\\u003cb"}`:                    "{\n  \"q\": \"\\\\u003cb\"\n}",
		`{"q":"\\\u003c \u00e9 \n"}`:          "{\n  \"q\": \"\\\\< \\u00e9 \\n\"\n}",
		`not json \u003c`:                     `not json \u003c`,
	} {
		if got := prettyJSON([]byte(in)); got != want {
			t.Errorf("prettyJSON(%s) = %q, want %q", in, got, want)
		}
	}
}

// FuzzUnescapeHTMLSafe: for any string, its JSON with the HTML-safe
// escapes put back decodes to the same string.
func FuzzUnescapeHTMLSafe(f *testing.F) {
	for _, s := range []string{"<a href='x'>&amp;</a>", `\u003c`, `\\u003c`, "\\", "é\u2028<"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		js, err := json.Marshal(s) // a string always marshals (bad UTF-8 becomes U+FFFD)
		if err != nil {
			t.Fatal(err)
		}
		var want, got string
		if err := json.Unmarshal(js, &want); err != nil {
			t.Fatal(err)
		}
		out := unescapeHTMLSafe(js)
		if err := json.Unmarshal([]byte(out), &got); err != nil || got != want {
			t.Fatalf("%s → %s: %q, %v; want %q", js, out, got, err, want)
		}
	})
}
