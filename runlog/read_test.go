package runlog

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus"
)

// TestRunTimelineMoreThanABatch: a run with more turn events than one
// pull request asks for, with lifecycle and hook events between them,
// comes back whole and in time order, with the cursor at the last event
// of each stream.
func TestRunTimelineMoreThanABatch(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	base := time.Now().Add(-time.Hour)
	// More than one of ReadStored's pulls (readBatch in bus/read.go).
	const readBatch = 16384
	n := readBatch + 10
	publishTurns(t, b, "other", 3, base)
	seqs := publishTurns(t, b, "big", n, base)
	var runSeq, hookSeq uint64
	for i, at := range []time.Duration{-time.Second, 2000 * time.Millisecond, time.Duration(n) * time.Millisecond} {
		kind := []bus.RunEventKind{bus.RunDispatched, bus.RunTurnStarted, bus.RunFinished}[i]
		ack, err := bus.PublishDurable(ctx, b, bus.RunEvents, bus.RunEvent{RunID: "big", Event: kind, At: base.Add(at)}, "", "big", string(kind))
		if err != nil {
			t.Fatal(err)
		}
		runSeq = ack.Seq
	}
	ack, err := bus.PublishDurable(ctx, b, bus.WorkspaceHookEvents, bus.HookEvent{RunID: "big", Hook: "before_run", Phase: bus.HookStarted, At: base.Add(1500 * time.Millisecond)}, "", "big", "before_run")
	if err != nil {
		t.Fatal(err)
	}
	hookSeq = ack.Seq
	events, cur, err := Timeline(ctx, b, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n+4 {
		t.Fatalf("%d events, want %d", len(events), n+4)
	}
	if !slices.IsSortedFunc(events, compareTimeline) {
		t.Fatal("timeline out of time order")
	}
	var turns []int64
	for _, ev := range events {
		if ev.Turn != nil {
			turns = append(turns, ev.Turn.Seq)
		}
	}
	if !slices.Equal(turns, oneTo(n)) {
		t.Fatalf("turn events out of order or missing: %d of %d", len(turns), n)
	}
	if events[0].Run == nil || events[0].Run.Event != bus.RunDispatched || events[len(events)-1].Run == nil || events[len(events)-1].Run.Event != bus.RunFinished {
		t.Fatalf("first %+v, last %+v", events[0], events[len(events)-1])
	}
	if want := (Cursor{Runs: runSeq, Turns: seqs[n-1], Hooks: hookSeq}); cur != want {
		t.Fatalf("cursor %v, want %v", cur, want)
	}
}

// TestMergeTimelineIsStableSort: merging per-stream parts gives exactly
// Sort of their concatenation, equal times and unsorted parts
// included.
func TestMergeTimelineIsStableSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now()
	for round := range 200 {
		var parts [][]Event
		var all []Event
		for _, stream := range []string{bus.StreamRuns, bus.StreamTurns, bus.StreamHooks} {
			var p []Event
			for i := range rng.IntN(20) {
				p = append(p, Event{Stream: stream, Seq: uint64(i + 1), At: base.Add(time.Duration(rng.IntN(8)) * time.Second)})
			}
			if round%2 == 0 {
				slices.SortStableFunc(p, compareTimeline)
			}
			all = append(all, p...)
			parts = append(parts, slices.Clone(p))
		}
		Sort(all)
		got := mergeTimeline(parts...)
		if !slices.EqualFunc(got, all, func(a, b Event) bool { return a.Stream == b.Stream && a.Seq == b.Seq }) {
			t.Fatalf("round %d: merge differs from the stable sort", round)
		}
	}
}

// TestSummariesKeepLastValues: Summaries reads the bucket unfiltered; it
// returns each run's current summary once, and none for a purged run.
func TestSummariesKeepLastValues(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	for _, id := range []string{"r1", "r2", "r3"} {
		for _, kind := range []bus.RunEventKind{bus.RunDispatched, bus.RunTurnStarted, bus.RunFinished} {
			ev := bus.RunEvent{RunID: id, Event: kind, At: time.Now(), Turn: 1, Status: bus.RunSucceeded}
			if err := Record(ctx, b, ev, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := Purge(ctx, b, "r2"); err != nil {
		t.Fatal(err)
	}
	// r1 runs again after the purge: its summary is replaced, not doubled.
	if err := Record(ctx, b, bus.RunEvent{RunID: "r1", Event: bus.RunTurnStarted, At: time.Now(), Turn: 2}, ""); err != nil {
		t.Fatal(err)
	}
	list, err := Summaries(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bus.RunSummary{}
	for _, s := range list {
		if _, dup := got[s.RunID]; dup {
			t.Fatalf("run %s listed twice", s.RunID)
		}
		got[s.RunID] = s
	}
	if len(got) != 2 || got["r1"].Turns != 2 || got["r3"].Status != bus.RunSucceeded {
		t.Fatalf("summaries %+v", list)
	}
}

// TestReadStoredEmpty: an empty stream, and a filter nothing matches in a
// stream that has messages, read nothing and no error.
func TestReadStoredEmpty(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	calls := 0
	count := func(*nats.Msg, bus.StoredMeta) error { calls++; return nil }
	if err := bus.ReadStored(ctx, b, bus.StreamHooks, "", count); err != nil || calls != 0 {
		t.Fatalf("empty stream: %d messages, %v", calls, err)
	}
	publishTurns(t, b, "a", 3, time.Now())
	subject, _ := bus.TurnEvents.Filter("nope")
	if err := bus.ReadStored(ctx, b, bus.StreamTurns, subject, count); err != nil || calls != 0 {
		t.Fatalf("nothing matching: %d messages, %v", calls, err)
	}
	events, cur, err := Timeline(ctx, b, "nope")
	if err != nil || len(events) != 0 || cur != (Cursor{}) {
		t.Fatalf("timeline of an unknown run: %d events, %v, %v", len(events), cur, err)
	}
	list, err := Summaries(ctx, b)
	if err != nil || len(list) != 0 {
		t.Fatalf("summaries of an empty bucket: %v, %v", list, err)
	}
}
