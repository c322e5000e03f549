package runlog

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

func TestRunSummaryFoldsEventsWithCompareAndSet(t *testing.T) {
	b := openTest(t, bus.Options{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ref := bus.IssueRef{ID: "i", Identifier: "S-1"}
	if err := Record(t.Context(), b, bus.RunEvent{RunID: "r1", Event: bus.RunDispatched, At: start, Issue: ref}, "r1-d"); err != nil {
		t.Fatal(err)
	}
	// Concurrent recorders (the runner and the scheduler) never lose an
	// update: each turn's event lands in the summary.
	var wg sync.WaitGroup
	for turn := 1; turn <= 8; turn++ {
		wg.Go(func() {
			if err := Record(t.Context(), b, bus.RunEvent{RunID: "r1", Event: bus.RunTurnFinished, At: start.Add(time.Minute), Issue: ref, Turn: turn, Workspace: "/ws"}, ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u := bus.Usage{InputTokens: 5}
	cost := 1.5
	end := bus.RunEvent{RunID: "r1", Event: bus.RunFinished, At: start.Add(time.Hour), Issue: ref, Status: bus.RunFailed, Error: "boom", Usage: &u, CostUSD: &cost}
	for range 2 { // a retried publish with the same id applies once
		if err := Record(t.Context(), b, end, "r1-end"); err != nil {
			t.Fatal(err)
		}
	}
	list, err := Summaries(t.Context(), b)
	if err != nil || len(list) != 1 {
		t.Fatalf("summaries: %v %v", list, err)
	}
	s := list[0]
	if s.Turns != 8 || s.Status != bus.RunFailed || s.Error != "boom" || s.Workspace != "/ws" || s.Usage.InputTokens != 5 ||
		*s.CostUSD != 1.5 || !s.Started.Equal(start) || s.Ended == nil || !s.Ended.Equal(start.Add(time.Hour)) {
		t.Errorf("summary %+v", s)
	}
	if _, err := Purge(t.Context(), b, "r1"); err != nil {
		t.Fatal(err)
	}
	if list, _ := Summaries(t.Context(), b); len(list) != 0 {
		t.Errorf("summary left after purge: %v", list)
	}
}

// TestRunRecorderKeepsCompareAndSet: a run's recorder writes the summary
// from its own last copy, without reading it first, and still loses no
// update made by anyone else meanwhile: the compare-and-set fails, and it
// reads the summary and applies its event on top. The first event of a run
// whose summary exists already (a run id used before) is folded in too.
func TestRunRecorderKeepsCompareAndSet(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ref := bus.IssueRef{ID: "i", Identifier: "R-1"}
	k, _ := bus.RunSummaries.Key("rr")
	rec := NewRecorder(b)
	ev := func(kind bus.RunEventKind, turn int) bus.RunEvent {
		return bus.RunEvent{RunID: "rr", Event: kind, At: start.Add(time.Duration(turn) * time.Minute), Issue: ref, Turn: turn}
	}
	if err := rec.Record(ctx, ev(bus.RunDispatched, 0), "rr-d"); err != nil {
		t.Fatal(err)
	}
	first, err := bus.Get(ctx, b, k)
	if err != nil || first.Value.Status != "running" || !first.Value.Started.Equal(start) {
		t.Fatalf("after dispatched: %+v %v", first.Value, err)
	}
	if err := rec.Record(ctx, ev(bus.RunTurnStarted, 1), "rr-ts1"); err != nil {
		t.Fatal(err)
	}
	// Someone else (the scheduler, say) updates the summary behind the
	// recorder's back.
	u := bus.Usage{InputTokens: 7}
	if err := Record(ctx, b, bus.RunEvent{RunID: "rr", Event: bus.RunTurnFinished, At: start, Issue: ref, Turn: 1, Usage: &u, SessionID: "s-1"}, "other"); err != nil {
		t.Fatal(err)
	}
	if err := rec.Record(ctx, ev(bus.RunTurnStarted, 2), "rr-ts2"); err != nil {
		t.Fatal(err)
	}
	// A retried publish changes nothing.
	if err := rec.Record(ctx, ev(bus.RunTurnStarted, 2), "rr-ts2"); err != nil {
		t.Fatal(err)
	}
	if err := rec.Record(ctx, bus.RunEvent{RunID: "rr", Event: bus.RunFinished, At: start.Add(time.Hour), Issue: ref, Status: bus.RunSucceeded}, "rr-f"); err != nil {
		t.Fatal(err)
	}
	e, err := bus.Get(ctx, b, k)
	if err != nil {
		t.Fatal(err)
	}
	s := e.Value
	if s.Turns != 2 || s.SessionID != "s-1" || s.Usage.InputTokens != 7 || s.Status != bus.RunSucceeded || s.Ended == nil || !s.Started.Equal(start) {
		t.Errorf("summary %+v", s)
	}
	// Five writes: dispatched, turn_started 1, the other's turn_finished,
	// turn_started 2, run_finished; the duplicate wrote nothing.
	if e.Revision-first.Revision != 4 {
		t.Errorf("%d summary writes after the first, want 4", e.Revision-first.Revision)
	}
	// A new recorder for a run whose summary exists: its create fails, and
	// it folds its event into what is there.
	again := NewRecorder(b)
	if err := again.Record(ctx, bus.RunEvent{RunID: "rr", Event: bus.RunTurnStarted, At: start, Issue: ref, Turn: 3}, "rr-ts3"); err != nil {
		t.Fatal(err)
	}
	if e, err := bus.Get(ctx, b, k); err != nil || e.Value.Turns != 3 || e.Value.Status != bus.RunSucceeded || e.Value.SessionID != "s-1" {
		t.Errorf("after a second recorder: %+v %v", e.Value, err)
	}
}

// TestWriterStoresEverythingInOrder: pipelined writes are all stored, in
// order, and a resend of an id is stored once.
func TestWriterStoresEverythingInOrder(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	w := NewWriter(b, 8)
	const n = 1000
	for i := range n {
		ev := bus.TurnEvent{RunID: "w1", Turn: 1, Seq: int64(i + 1), Kind: bus.TurnText, Text: fmt.Sprint(i)}
		if err := WriteDurable(ctx, w, bus.TurnEvents, ev, fmt.Sprint("w1-", i), "w1", "1"); err != nil {
			t.Fatal(err)
		}
		if w.Pending() > 8 {
			t.Fatalf("%d pending, window 8", w.Pending())
		}
	}
	// The same id again: stored once.
	if err := WriteDurable(ctx, w, bus.TurnEvents, bus.TurnEvent{RunID: "w1", Seq: 1}, "w1-0", "w1", "1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for m, err := range bus.History(ctx, b, bus.TurnEvents, "w1") {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, m.Data.Seq)
	}
	if len(seqs) != n {
		t.Fatalf("%d stored, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("event %d has seq %d: out of order", i, s)
		}
	}
	if err := WriteDurable(ctx, w, bus.TurnEvents, bus.TurnEvent{}, "", "w1", "1"); err == nil {
		t.Error("a write without a message id was accepted")
	}
}

// TestWriterStopsAtARefusalBeforeItsWindowFills: a message the store
// refused (here a TURNS stream that takes no new message) is sent again as
// soon as the refusal arrives, at the next write, and the writer fails
// there once the resend is refused too. Before, a refusal was seen only when
// the window filled or at Flush: a turn of fewer messages than the window
// went on as if stored.
func TestWriterStopsAtARefusalBeforeItsWindowFills(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	s, err := b.JetStream().Stream(ctx, bus.StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	if _, err := b.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(b, 1<<20) // a window no test fills
	deadline := time.Now().Add(testTimeout)
	var werr error
	for i := 0; werr == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes and no error from a store that refuses every message after the first", i)
		}
		ev := bus.TurnEvent{RunID: "refused", Turn: 1, Seq: int64(i + 1), Kind: bus.TurnText, Text: fmt.Sprint(i)}
		werr = WriteDurable(ctx, w, bus.TurnEvents, ev, fmt.Sprint("refused-", i), "refused", "1")
		if werr == nil && i > 0 {
			time.Sleep(time.Millisecond) // lets the refusals arrive
		}
	}
	if !strings.Contains(werr.Error(), "maximum messages") {
		t.Errorf("error %q does not say the store refused the message", werr)
	}
	if err := w.Flush(ctx); err == nil {
		t.Error("Flush after a refused message reports no error")
	}
}

// TestWriterLetsGoOfAcknowledgedMessages: a message whose acknowledgement
// arrived is not kept until the window fills or Flush. An agent writing an
// event at a time kept a window of stored messages per run in memory.
func TestWriterLetsGoOfAcknowledgedMessages(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	w := NewWriter(b, 256)
	for i := range 100 {
		ev := bus.TurnEvent{RunID: "ack", Turn: 1, Seq: int64(i + 1), Kind: bus.TurnText, Text: fmt.Sprint(i)}
		if err := WriteDurable(ctx, w, bus.TurnEvents, ev, fmt.Sprint("ack-", i), "ack", "1"); err != nil {
			t.Fatal(err)
		}
	}
	// Every one of them is stored once the stream holds them all.
	deadline := time.Now().Add(testTimeout)
	for {
		info, err := b.JetStream().Stream(ctx, bus.StreamTurns)
		if err != nil {
			t.Fatal(err)
		}
		if info.CachedInfo().State.Msgs == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 stored", info.CachedInfo().State.Msgs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The next write lets go of those whose acknowledgement arrived; the
	// acknowledgements follow the stores, so wait for them, not for a
	// fixed time.
	for {
		if err := WriteDurable(ctx, w, bus.TurnEvents, bus.TurnEvent{RunID: "ack", Turn: 1, Seq: 101, Kind: bus.TurnText}, "ack-100", "ack", "1"); err != nil {
			t.Fatal(err)
		}
		if w.Pending() <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still kept after all 100 were stored", w.Pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestEnsureSummaryEnded: a run_finished stored without its summary update
// (a crash between the two) is applied to the summary once, and a summary
// that already shows an end is left alone.
func TestEnsureSummaryEnded(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	at := time.Now().UTC()
	if err := Record(ctx, b, bus.RunEvent{RunID: "crashed", Event: bus.RunDispatched, At: at}, "crashed-d"); err != nil {
		t.Fatal(err)
	}
	end := bus.RunEvent{RunID: "crashed", Event: bus.RunFinished, At: at.Add(time.Second), Status: bus.RunSucceeded}
	// Stored, but the process died before the summary was updated.
	if _, err := bus.PublishDurable(ctx, b, bus.RunEvents, end, "crashed-f", "crashed", string(bus.RunFinished)); err != nil {
		t.Fatal(err)
	}
	k, _ := bus.RunSummaries.Key("crashed")
	if e, err := bus.Get(ctx, b, k); err != nil || e.Value.Ended != nil {
		t.Fatalf("before the repair: %+v %v", e.Value, err)
	}
	if err := EnsureEnded(ctx, b, end); err != nil {
		t.Fatal(err)
	}
	e, err := bus.Get(ctx, b, k)
	if err != nil || e.Value.Ended == nil || e.Value.Status != bus.RunSucceeded {
		t.Fatalf("after the repair: %+v %v", e.Value, err)
	}
	// Once ended, nothing changes: not even a different end.
	other := end
	other.Status = bus.RunFailed
	if err := EnsureEnded(ctx, b, other); err != nil {
		t.Fatal(err)
	}
	again, err := bus.Get(ctx, b, k)
	if err != nil || again.Revision != e.Revision || again.Value.Status != bus.RunSucceeded {
		t.Fatalf("an ended summary changed: %+v (revision %d → %d) %v", again.Value, e.Revision, again.Revision, err)
	}
	if err := EnsureEnded(ctx, b, bus.RunEvent{RunID: "crashed", Event: bus.RunDispatched}); err == nil {
		t.Fatal("a non-final event was accepted")
	}
}
