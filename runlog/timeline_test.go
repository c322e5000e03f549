package runlog

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

func FuzzParseRunCursor(f *testing.F) {
	for _, s := range []string{"0.0.0", "1.2.3", "18446744073709551615.0.1", "", "1.2", "a.b.c", "1.2.3.4", "-1.0.0", " 1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error too long: %d bytes", len(err.Error()))
			}
			return
		}
		if back, err := ParseCursor(c.String()); err != nil || back != c {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, c, c.String(), back, err)
		}
	})
}

// TestFollowRunResumesAfterCursor: the timeline and its cursor, then
// Follow from that cursor delivers only what came after, live.
func TestFollowRunResumesAfterCursor(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	rec := func(kind bus.RunEventKind, turn int) {
		if err := Record(ctx, b, bus.RunEvent{RunID: "r1", Event: kind, At: time.Now(), Turn: turn, Issue: bus.IssueRef{ID: "i1", Identifier: "A-1"}}, fmt.Sprintf("r1-%s-%d", kind, turn)); err != nil {
			t.Fatal(err)
		}
	}
	turn := func(seq int64) {
		if _, err := bus.PublishDurable(ctx, b, bus.TurnEvents, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: time.Now(), Kind: bus.TurnText, Text: fmt.Sprint("t", seq)}, fmt.Sprint("r1-t", seq), "r1", "1"); err != nil {
			t.Fatal(err)
		}
	}
	rec(bus.RunDispatched, 0)
	rec(bus.RunTurnStarted, 1)
	turn(1)
	// Another run's events never show up.
	if err := Record(ctx, b, bus.RunEvent{RunID: "r2", Event: bus.RunDispatched, At: time.Now()}, "r2-d"); err != nil {
		t.Fatal(err)
	}
	events, cur, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || cur.Runs == 0 || cur.Turns == 0 || cur.Hooks != 0 {
		t.Fatalf("timeline %d events, cursor %v", len(events), cur)
	}
	if events[0].Run == nil || events[2].Turn == nil || events[0].Type == "" {
		t.Fatalf("events = %+v", events)
	}
	var line map[string]any
	raw, _ := json.Marshal(events[2])
	if err := json.Unmarshal(raw, &line); err != nil || line["stream"] != bus.StreamTurns || line["event"] == nil {
		t.Fatalf("JSONL form = %s", raw)
	}
	got := make(chan Event, 16)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- followFn(fctx, b, "r1", cur, func(ev Event) error { got <- ev; return nil })
	}()
	turn(2)
	rec(bus.RunFinished, 1)
	seen := map[string]bool{}
	for range 2 {
		select {
		case ev := <-got:
			seen[ev.Subject] = true
		case <-time.After(10 * time.Second):
			t.Fatal("no live event")
		}
	}
	if !seen[subjectOf(t, bus.TurnEvents, "r1", "1")] || !seen[subjectOf(t, bus.RunEvents, "r1", string(bus.RunFinished))] {
		t.Fatalf("live events = %v", seen)
	}
	select {
	case ev := <-got:
		t.Fatalf("unexpected extra event %s", ev.Subject)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestReadersLeaveNoConsumers: timelines and follows delete their
// consumers; End names the last stored event of each stream.
func TestReadersLeaveNoConsumers(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	for i, kind := range []bus.RunEventKind{bus.RunDispatched, bus.RunTurnStarted} {
		if err := Record(ctx, b, bus.RunEvent{RunID: "r1", Event: kind, At: time.Now()}, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := bus.PublishDurable(ctx, b, bus.TurnEvents, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: 1, At: time.Now(), Kind: bus.TurnText}, "t1", "r1", "1")
	if err != nil {
		t.Fatal(err)
	}
	end, err := End(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	_, cur, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if end != cur || end.Turns != ack.Seq || end.Hooks != 0 || !cur.Covers(end) {
		t.Fatalf("End %v, timeline cursor %v, turn ack %d", end, cur, ack.Seq)
	}
	if none, err := End(ctx, b, "nope"); err != nil || none != (Cursor{}) {
		t.Fatalf("End of an unknown run: %v, %v", none, err)
	}
	for range 3 {
		// The reader stops once it has everything (3 events), however
		// long its consumers take to set up.
		fctx, cancel := context.WithCancel(ctx)
		seen := 0
		if err := followFn(fctx, b, "r1", Cursor{}, func(Event) error {
			if seen++; seen == 3 {
				cancel()
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cancel()
		if seen != 3 {
			t.Fatalf("follow delivered %d of 3 events", seen)
		}
		if _, _, err := Timeline(ctx, b, "r1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{bus.StreamRuns, bus.StreamTurns, bus.StreamHooks} {
		s, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != 0 {
			t.Errorf("stream %s keeps %d consumers after the readers ended", name, info.State.Consumers)
		}
	}
}
