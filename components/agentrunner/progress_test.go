package agentrunner

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestProgressCoalesces: the first event goes out at once, a burst inside
// one period becomes one more message carrying the latest event and the
// rate-limit signal seen in between, and a flush sends what is left.
func TestProgressCoalesces(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	sub, err := bus.Subscribe(t.Context(), b, bus.AgentProgress, "run-p")
	if err != nil {
		t.Fatal(err)
	}
	next := func() bus.RunProgress {
		t.Helper()
		select {
		case m := <-sub.C():
			return m.Data
		case <-time.After(10 * time.Second):
			t.Fatal("no progress message")
			return bus.RunProgress{}
		}
	}
	const period = time.Hour // only note's leading edge and flush send
	pr := newProgress(b, "run-p", period)
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	ev := func(seq int64, kind bus.TurnEventKind, text string) bus.TurnEvent {
		return bus.TurnEvent{RunID: "run-p", Turn: 2, Seq: seq, At: t0.Add(time.Duration(seq) * time.Millisecond), Kind: kind, Text: text}
	}
	pr.note(ev(1, bus.TurnText, "first"), t0)
	if p := next(); p.Events != 1 || p.New != 1 || p.Last.Text != "first" || p.Turn != 2 || p.RateLimit != nil {
		t.Fatalf("first progress: %+v", p)
	}
	pr.note(ev(2, bus.TurnAPIRetry, "attempt 1/10 (HTTP 429)"), t0.Add(time.Millisecond))
	for i := int64(3); i <= 500; i++ {
		pr.note(ev(i, bus.TurnText, strings.Repeat("x", 5000)), t0.Add(time.Duration(i)*time.Millisecond))
	}
	pr.flush(t0.Add(time.Second))
	p := next()
	if p.Events != 500 || p.New != 499 || p.Last.Seq != 500 || p.RateLimit == nil || p.RateLimit.Kind != bus.TurnAPIRetry {
		t.Fatalf("coalesced progress: events %d, last %d, rate limit %+v", p.Events, p.Last.Seq, p.RateLimit)
	}
	if len(p.Last.Text) > bus.ProgressTextBytes+len("…") {
		t.Fatalf("progress text not cut: %d bytes", len(p.Last.Text))
	}
	select {
	case m := <-sub.C():
		t.Fatalf("a burst inside one period sent more than one message: %+v", m.Data)
	case <-time.After(100 * time.Millisecond):
	}
	pr.flush(t0.Add(2 * time.Second)) // nothing new: nothing sent
	select {
	case m := <-sub.C():
		t.Fatalf("flush without news sent %+v", m.Data)
	case <-time.After(100 * time.Millisecond):
	}
	// Codex's rate-limit snapshot is the run's latest rate-limit signal.
	pr.note(ev(501, bus.TurnRateLimit, "account/rateLimits/updated"), t0.Add(3*time.Second))
	pr.flush(t0.Add(4 * time.Second))
	if p := next(); p.RateLimit == nil || p.RateLimit.Kind != bus.TurnRateLimit {
		t.Fatalf("codex rate limits: progress rate limit %+v", p.RateLimit)
	}
}

// TestProgressTicks: with a short period, the trailing edge reaches a
// reader without a flush.
func TestProgressTicks(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	sub, err := bus.Subscribe(t.Context(), b, bus.AgentProgress, "run-t")
	if err != nil {
		t.Fatal(err)
	}
	pr := newProgress(b, "run-t", 20*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); pr.run(ctx) }()
	defer func() { cancel(); <-done }()
	now := time.Now()
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 1, Kind: bus.TurnText}, now)
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 2, Kind: bus.TurnText}, now)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-sub.C():
			if m.Data.Events == 2 {
				return
			}
		case <-deadline:
			t.Fatal("the latest event never reached the reader")
		}
	}
}

func TestProgressPeriodFollowsTheStallTimeout(t *testing.T) {
	for _, c := range []struct{ stall, want time.Duration }{
		{0, bus.ProgressPeriod}, {time.Minute, bus.ProgressPeriod}, {100 * time.Millisecond, 25 * time.Millisecond}, {time.Millisecond, 10 * time.Millisecond},
	} {
		if got := progressPeriod(c.stall); got != c.want {
			t.Errorf("progressPeriod(%v) = %v, want %v", c.stall, got, c.want)
		}
	}
}

// TestProgressCarriesTrackerToolCalls: a tracker tool call reaches the
// progress readers (the overview's latest activity) with its record — the
// arguments dropped when large, as a tool's input is — and a rate-limited
// call is not the agent's model API rate limit (it is the tracker's quota,
// which the tracker itself reports).
func TestProgressCarriesTrackerToolCalls(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	sub, err := bus.Subscribe(t.Context(), b, bus.AgentProgress, "run-tt")
	if err != nil {
		t.Fatal(err)
	}
	pr := newProgress(b, "run-tt", time.Hour)
	rec := &bus.ToolCallRecord{Tool: "linear_graphql", Class: bus.TrackerRateLimited, Error: "HTTP 429", DurationMS: 40,
		Arguments: json.RawMessage(`{"query":"` + strings.Repeat("x", bus.ProgressTextBytes) + `"}`),
		RateLimit: &bus.ToolRateLimit{Limited: true, RetryAfterMS: 30000}}
	pr.note(bus.TurnEvent{RunID: "run-tt", Turn: 1, Seq: 1, Kind: bus.TurnTrackerTool, TrackerTool: rec}, time.Now())
	select {
	case m := <-sub.C():
		p := m.Data
		got := p.Last.TrackerTool
		if p.Last.Kind != bus.TurnTrackerTool || got == nil || got.Tool != "linear_graphql" || got.OK || got.Class != bus.TrackerRateLimited ||
			got.DurationMS != 40 || got.RateLimit == nil || got.RateLimit.RetryAfterMS != 30000 {
			t.Fatalf("progress of a tracker tool call: %+v", got)
		}
		if got.Arguments != nil || p.RateLimit != nil {
			t.Errorf("progress kept %d bytes of arguments, agent rate limit %+v", len(got.Arguments), p.RateLimit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no progress message")
	}
	if len(rec.Arguments) == 0 {
		t.Error("the stored event's arguments were cut")
	}
}

// TestProgressKeepsTheLiveTotals: a mid-turn token total (codex's) rides
// on every later progress message, though later events are the latest,
// and codex's rate-limit snapshot keeps its payload.
func TestProgressKeepsTheLiveTotals(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	sub, err := bus.Subscribe(t.Context(), b, bus.AgentProgress, "run-t")
	if err != nil {
		t.Fatal(err)
	}
	next := func() bus.RunProgress {
		t.Helper()
		select {
		case m := <-sub.C():
			return m.Data
		case <-time.After(10 * time.Second):
			t.Fatal("no progress message")
			return bus.RunProgress{}
		}
	}
	pr := newProgress(b, "run-t", time.Hour)
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 1, Kind: bus.TurnText, Text: "a"}, t0)
	if p := next(); p.Totals != nil {
		t.Fatalf("totals before any were reported: %+v", p.Totals)
	}
	raw := json.RawMessage(`{"rateLimits":{"limitId":"codex","primary":null}}`)
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 2, Kind: bus.TurnSystem, Totals: &bus.Usage{InputTokens: 120, OutputTokens: 30, CacheReadInputTokens: 100}}, t0)
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 3, Kind: bus.TurnRateLimit, Raw: raw}, t0)
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 4, Kind: bus.TurnText, Text: "b"}, t0)
	pr.flush(t0.Add(time.Second))
	p := next()
	if p.Totals == nil || p.Totals.InputTokens != 120 || p.Totals.OutputTokens != 30 || p.Last.Seq != 4 {
		t.Fatalf("live totals not carried: %+v (last %d)", p.Totals, p.Last.Seq)
	}
	if p.RateLimit == nil || string(p.RateLimit.Raw) != string(raw) {
		t.Fatalf("codex's rate-limit snapshot lost its payload: %+v", p.RateLimit)
	}
	pr.note(bus.TurnEvent{RunID: "run-t", Seq: 5, Kind: bus.TurnText, Text: "c"}, t0.Add(2*time.Hour))
	if p := next(); p.Totals == nil || p.Totals.InputTokens != 120 {
		t.Fatalf("live totals dropped by a later message: %+v", p.Totals)
	}
}
