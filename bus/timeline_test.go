package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func FuzzParseRunCursor(f *testing.F) {
	for _, s := range []string{"0.0.0", "1.2.3", "18446744073709551615.0.1", "", "1.2", "a.b.c", "1.2.3.4", "-1.0.0", " 1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseRunCursor(s)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error too long: %d bytes", len(err.Error()))
			}
			return
		}
		if back, err := ParseRunCursor(c.String()); err != nil || back != c {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, c, c.String(), back, err)
		}
	})
}

// TestFollowRunResumesAfterCursor: the timeline and its cursor, then
// FollowRun from that cursor delivers only what came after, live.
func TestFollowRunResumesAfterCursor(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	rec := func(kind RunEventKind, turn int) {
		if err := RecordRunEvent(ctx, b, RunEvent{RunID: "r1", Event: kind, At: time.Now(), Turn: turn, Issue: IssueRef{ID: "i1", Identifier: "A-1"}}, fmt.Sprintf("r1-%s-%d", kind, turn)); err != nil {
			t.Fatal(err)
		}
	}
	turn := func(seq int64) {
		if _, err := PublishDurable(ctx, b, TurnEvents, TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: time.Now(), Kind: TurnText, Text: fmt.Sprint("t", seq)}, fmt.Sprint("r1-t", seq), "r1", "1"); err != nil {
			t.Fatal(err)
		}
	}
	rec(RunDispatched, 0)
	rec(RunTurnStarted, 1)
	turn(1)
	// Another run's events never show up.
	if err := RecordRunEvent(ctx, b, RunEvent{RunID: "r2", Event: RunDispatched, At: time.Now()}, "r2-d"); err != nil {
		t.Fatal(err)
	}
	events, cur, err := RunTimeline(ctx, b, "r1")
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
	if err := json.Unmarshal(raw, &line); err != nil || line["stream"] != StreamTurns || line["event"] == nil {
		t.Fatalf("JSONL form = %s", raw)
	}
	got := make(chan StoredEvent, 16)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- FollowRun(fctx, b, "r1", cur, func(ev StoredEvent) error { got <- ev; return nil })
	}()
	turn(2)
	rec(RunFinished, 1)
	seen := map[string]bool{}
	for range 2 {
		select {
		case ev := <-got:
			seen[ev.Subject] = true
		case <-time.After(10 * time.Second):
			t.Fatal("no live event")
		}
	}
	if !seen["symphony.turn.r1.1"] || !seen["symphony.run.r1.run_finished"] {
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

// TestWatchSetSeesPutsAndDeletes: initial values, Ready, then changes.
func TestWatchSetSeesPutsAndDeletes(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	k1, _ := Blocks.Key("i1")
	if _, err := Put(ctx, b, k1, BlockedEntry{IssueID: "i1", Identifier: "A-1"}); err != nil {
		t.Fatal(err)
	}
	// A key of another family in the same bucket is not seen.
	if _, err := Put(ctx, b, DispatchPause, PauseState{Paused: true}); err != nil {
		t.Fatal(err)
	}
	ch, err := WatchSet(ctx, b, Blocks)
	if err != nil {
		t.Fatal(err)
	}
	next := func() SetEvent[BlockedEntry] {
		select {
		case e := <-ch.C():
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
		}
		return SetEvent[BlockedEntry]{}
	}
	if e := next(); e.ID != "i1" || e.Value.Identifier != "A-1" || e.Deleted {
		t.Fatalf("initial = %+v", e)
	}
	if e := next(); !e.Ready {
		t.Fatalf("want Ready, got %+v", e)
	}
	k2, _ := Blocks.Key("i2")
	if _, err := Put(ctx, b, k2, BlockedEntry{IssueID: "i2", Identifier: "A-2"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.ID != "i2" || e.Deleted {
		t.Fatalf("put = %+v", e)
	}
	if err := Delete(ctx, b, k1); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.ID != "i1" || !e.Deleted {
		t.Fatalf("delete = %+v", e)
	}
}

// TestReadersLeaveNoConsumers: timelines and follows delete their
// consumers; RunEnd names the last stored event of each stream.
func TestReadersLeaveNoConsumers(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	for i, kind := range []RunEventKind{RunDispatched, RunTurnStarted} {
		if err := RecordRunEvent(ctx, b, RunEvent{RunID: "r1", Event: kind, At: time.Now()}, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := PublishDurable(ctx, b, TurnEvents, TurnEvent{RunID: "r1", Turn: 1, Seq: 1, At: time.Now(), Kind: TurnText}, "t1", "r1", "1")
	if err != nil {
		t.Fatal(err)
	}
	end, err := RunEnd(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	_, cur, err := RunTimeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if end != cur || end.Turns != ack.Seq || end.Hooks != 0 || !cur.Covers(end) {
		t.Fatalf("RunEnd %v, timeline cursor %v, turn ack %d", end, cur, ack.Seq)
	}
	if none, err := RunEnd(ctx, b, "nope"); err != nil || none != (RunCursor{}) {
		t.Fatalf("RunEnd of an unknown run: %v, %v", none, err)
	}
	for range 3 {
		// The reader stops once it has everything (3 events), however
		// long its consumers take to set up.
		fctx, cancel := context.WithCancel(ctx)
		seen := 0
		if err := FollowRun(fctx, b, "r1", RunCursor{}, func(StoredEvent) error {
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
		if _, _, err := RunTimeline(ctx, b, "r1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{StreamRuns, StreamTurns, StreamHooks} {
		s, err := b.js.Stream(ctx, name)
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
