package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// TestPlayKeepsScaledGaps replays events recorded 0 s, 10 s, 10 s, 70 s
// apart at speed 5 on a fake clock: they come out 0, 2, 0 and 12 s apart.
func TestPlayKeepsScaledGaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var events []runlog.Event
		for _, off := range []time.Duration{0, 10 * time.Second, 10 * time.Second, 70 * time.Second} {
			events = append(events, runlog.Event{At: base.Add(off)})
		}
		start := time.Now()
		var at []time.Duration
		if err := play(context.Background(), events, 5, func(runlog.Event) { at = append(at, time.Since(start)) }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(at) != "[0s 2s 2s 14s]" {
			t.Errorf("emitted at %v, want [0s 2s 2s 14s]", at)
		}
		// Speed 0: no waiting at all.
		start = time.Now()
		_ = play(context.Background(), events, 0, func(runlog.Event) {})
		if d := time.Since(start); d != 0 {
			t.Errorf("speed 0 waited %v", d)
		}
	})
}

// BenchmarkRunsList10k measures `symphony runs`' fold over 10,000 stored
// runs (five lifecycle events each).
func BenchmarkRunsList10k(b *testing.B) {
	store, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close(context.Background())
	base := time.Now().Add(-time.Hour)
	for i := range 10000 {
		id := fmt.Sprintf("run-%05d", i)
		ref := bus.IssueRef{ID: id, Identifier: fmt.Sprintf("B-%d", i)}
		for _, kind := range []bus.RunEventKind{bus.RunDispatched, bus.RunWorkspaceReady, bus.RunTurnStarted, bus.RunTurnFinished, bus.RunFinished} {
			ev := bus.RunEvent{RunID: id, Event: kind, At: base.Add(time.Duration(i) * time.Millisecond), Issue: ref, Turn: 1, Status: bus.RunSucceeded}
			if err := runlog.Record(context.Background(), store, ev, ""); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		runs, err := summarize(context.Background(), store)
		if err != nil || len(runs) != 10000 {
			b.Fatalf("%d runs, %v", len(runs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
}

// BenchmarkReplay100k measures reading and ordering a 100,000-event run
// (what `replay --speed 0` does before printing), each event stored in a
// message of its own, as an agent writing a line at a time is stored.
func BenchmarkReplay100k(b *testing.B) { benchReplay(b, 1) }

// BenchmarkReplay100kBatched is BenchmarkReplay100k with the events stored
// 64 to a message, as the runner stores a flooding agent's output.
func BenchmarkReplay100kBatched(b *testing.B) { benchReplay(b, 64) }

func benchReplay(b *testing.B, perMessage int) {
	store, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close(context.Background())
	base := time.Now().Add(-time.Hour)
	const n = 100000
	w := runlog.NewWriter(store, 0)
	for i := range n {
		ev := bus.TurnEvent{RunID: "big", Turn: 1, Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Millisecond), Kind: bus.TurnText, Text: "some assistant text of a usual length for one event"}
		if err := w.AppendTurn(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
		if (i+1)%perMessage == 0 {
			if err := w.SendTurns(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		events, _, err := runlog.Timeline(context.Background(), store, "big")
		if err != nil || len(events) != n {
			b.Fatalf("%d events, %v", len(events), err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestTranscriptLineOfTrackerTool: replay --print shows a tracker tool
// call as one readable line: the tool, ok or the failure's class with
// the rule that refused it, the duration, the error, the masked
// arguments (compacted, bounded), the rate-limit signal and the start of
// the output.
func TestTranscriptLineOfTrackerTool(t *testing.T) {
	at := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	line := func(text string, rec bus.ToolCallRecord) string {
		return transcriptLine(runlog.Event{At: at, Turn: &bus.TurnEvent{Turn: 2, At: at, Kind: bus.TurnTrackerTool, Text: text, TrackerTool: &rec}}, false)
	}
	clock := at.Local().Format("15:04:05.000")
	for _, c := range []struct {
		name string
		got  string
		want []string
	}{
		{"ok", line(`{"data":{"issueUpdate":{"success":true}}}`, bus.ToolCallRecord{Tool: "linear_graphql", OK: true, DurationMS: 212, OutputBytes: 41,
			Arguments: json.RawMessage("{\n  \"query\": \"mutation { issueUpdate(id: \\\"ABC-1\\\") { success } }\",\n  \"variables\": {\"key\": \"****\"}\n}"),
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-RateLimit-Requests-Remaining": "1499", "X-Complexity": "2"}}}),
			[]string{clock + ` turn 2 tracker tool linear_graphql ok 212 ms args {"query":"mutation { issueUpdate(id: \"ABC-1\") { success } }","variables":{"key":"****"}}` +
				` [rate limit X-Complexity=2 X-RateLimit-Requests-Remaining=1499] → 41 bytes {"data":{"issueUpdate":{"success":true}}}`}},
		{"refused", line("", bus.ToolCallRecord{Tool: "linear_graphql", Class: bus.ToolRefused, Rule: "own-issue", Error: "issueUpdate targets ABC-2, not this run's issue ABC-1", DurationMS: 3,
			Arguments: json.RawMessage(`{"query":"mutation { issueUpdate(id: \"ABC-2\") { success } }"}`)}),
			[]string{clock + ` turn 2 tracker tool linear_graphql refused (rule: own-issue) 3 ms: issueUpdate targets ABC-2, not this run's issue ABC-1 args {"query":`}},
		{"rate limited", line("", bus.ToolCallRecord{Tool: "linear_graphql", Class: bus.TrackerRateLimited, Error: "Linear answered 429", DurationMS: 40,
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"Retry-After": "30"}, Limited: true, RetryAfterMS: 30000}}),
			[]string{"tracker tool linear_graphql rate_limited 40 ms: Linear answered 429 [rate limited, retry after 30s]"}},
		{"failed without a class", line("", bus.ToolCallRecord{Tool: "set_state", Error: "no such state"}),
			[]string{"tracker tool set_state failed 0 ms: no such state"}},
		{"long arguments", line(strings.Repeat("o", 1000), bus.ToolCallRecord{Tool: "linear_graphql", OK: true,
			Arguments: json.RawMessage(`{"query":"` + strings.Repeat("x", 5000) + `"}`)}),
			[]string{`args {"query":"xxx`, "x… → ooo", "o…"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.got, w) {
				t.Errorf("%s: line\n%s\nlacks\n%s", c.name, c.got, w)
			}
		}
		if len(c.got) > 1200 || strings.Contains(c.got, "\n") {
			t.Errorf("%s: the line is %d bytes or spans lines: %q", c.name, len(c.got), c.got)
		}
	}
	// In colour, ok is green and a failure red.
	ok := transcriptLine(runlog.Event{At: at, Turn: &bus.TurnEvent{Kind: bus.TurnTrackerTool, TrackerTool: &bus.ToolCallRecord{Tool: "t", OK: true}}}, true)
	bad := transcriptLine(runlog.Event{At: at, Turn: &bus.TurnEvent{Kind: bus.TurnTrackerTool, TrackerTool: &bus.ToolCallRecord{Tool: "t", Class: "refused"}}}, true)
	if !strings.Contains(ok, "\x1b[32mok\x1b[0m") || !strings.Contains(bad, "\x1b[31mrefused\x1b[0m") {
		t.Errorf("colours: %q %q", ok, bad)
	}
}
