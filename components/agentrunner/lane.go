package agentrunner

import (
	"context"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// lifecycle publishes a run event durably, in order, without waiting for
// the store: the event goes to the run's lane (see lane), so the store's
// round trips (the event, then the summary's compare-and-set) overlap the
// work that follows — the workspace, the hooks, the agent's start — instead
// of preceding it. A failure is logged (the run goes on, the scheduler's
// stall detection covers a lost end). The claim that makes the run the
// issue's only one was stored by the scheduler before the dispatch; these
// events only describe the run.
func (w *run) lifecycle(ctx context.Context, ev bus.RunEvent) {
	// A lifecycle event follows the agent events before it in the store:
	// run_finished means every event of the run is stored.
	if err := w.flush(ctx); err != nil {
		w.log().Error("store agent events", "err", err)
	}
	w.lane <- laneItem{ev: ev}
}

// lifecycleStored is lifecycle, and stored is closed once the event is on
// record (or failed to be).
func (w *run) lifecycleStored(ctx context.Context, ev bus.RunEvent, stored chan struct{}) {
	if err := w.flush(ctx); err != nil {
		w.log().Error("store agent events", "err", err)
	}
	w.lane <- laneItem{ev: ev, stored: stored}
}

// laneItem is a lifecycle event to record, or a hold: the lane records
// nothing after a hold until its channel is closed, or laneHoldMax has
// passed. stored, when set, is closed once the event is recorded.
type laneItem struct {
	ev     bus.RunEvent
	hold   <-chan struct{}
	stored chan struct{}
}

// laneHoldMax bounds a hold: something slow on the way to the agent's
// start (a slow disk, a hook the dispatch did not expect) must not keep
// the run off the record.
const laneHoldMax = time.Second

// holdLane makes the lane wait, after what it has queued, until until is
// closed (at most laneHoldMax). The run holds it from its start until its
// first agent's start was tried when no hook stands in between: on a small
// machine the store's work for dispatched and workspace_ready (a publish
// and a compare-and-set each) would otherwise compete for the CPU with the
// workspace, the agent's exec and the components between them. The caller
// must close until on every path.
func (w *run) holdLane(until <-chan struct{}) {
	w.lane <- laneItem{hold: until}
}

// recordLifecycle stores one run event and updates the run's summary; it
// runs on the lane's goroutine.
func (w *run) recordLifecycle(ctx context.Context, ev bus.RunEvent) {
	id := fmt.Sprintf("%s-%s-%d", w.d.RunID, ev.Event, ev.Turn)
	if err := w.rec.Record(context.WithoutCancel(ctx), ev, id); err != nil {
		w.log().Error("publish run event", "err", err, "event", ev.Event)
	}
}

// laneDepth bounds the lifecycle events queued for the store; a run emits a
// handful per turn, so the run never waits on it in practice.
const laneDepth = 16

// startLane starts the goroutine that records the run's lifecycle events
// in the order they were queued. The returned function closes the lane and
// returns once every queued event is recorded.
func (w *run) startLane(ctx context.Context) (closeAndWait func()) {
	w.lane = make(chan laneItem, laneDepth)
	w.rec = runlog.NewRecorder(w.r.opts.Bus)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for it := range w.lane {
			if it.hold != nil {
				t := time.NewTimer(laneHoldMax)
				select {
				case <-it.hold:
				case <-t.C:
				}
				t.Stop()
				continue
			}
			w.recordLifecycle(ctx, it.ev)
			if it.stored != nil {
				close(it.stored)
			}
		}
	}()
	return func() {
		close(w.lane)
		<-done
	}
}

// record stores one turn event durably, in order. It joins the events
// appended since the last commit (everything read from the agent in one
// go is stored as one message; see runlog.Writer.AppendTurn); commit, or any
// lifecycle event, sends them, with at most a window of messages awaiting
// acknowledgement (back-pressure beyond that; nothing is dropped).
func (w *run) record(ctx context.Context, ev bus.TurnEvent) error {
	ev.RunID, ev.Turn, ev.Seq = w.d.RunID, w.turn, w.seq.Add(1)
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	if ev.SessionID == "" {
		ev.SessionID = w.session
	}
	w.outMu.Lock()
	err := w.out.AppendTurn(context.WithoutCancel(ctx), ev)
	w.outMu.Unlock()
	if err != nil {
		return err
	}
	// The monotonic clock: ev.At is wall time only (UTC), and a clock
	// stepping back must not stop progress.
	w.prog.note(ev, time.Now())
	return nil
}

// flush sends the agent events appended and waits until every one is
// stored.
func (w *run) flush(ctx context.Context) error {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	return w.out.Flush(context.WithoutCancel(ctx))
}

// sendTurns sends the agent events appended since the last send.
func (w *run) sendTurns(ctx context.Context) error {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	return w.out.SendTurns(context.WithoutCancel(ctx))
}
