package scheduler

import (
	"context"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// A run after its dispatch: its progress (what stall detection measures
// from), its end (which decides what comes next: a continuation check, a
// retry with backoff, a block, a release) and its cancel, asked again
// until the agent runner no longer has the run.

// cancelGrace is, beyond the hook timeout, the time a canceled run is given
// to end before the scheduler asks the agent runner again: the runner's
// kill grace (agentrunner.KillGrace, 5 s), its output drain cap (8 s) and
// the slack of its after_run request (30 s), with room to spare. Asking
// again is safe whenever it comes: nothing is dispatched while the runner
// still has the run.
const cancelGrace = time.Minute

// onRunEvent follows runs; run_finished decides what comes next.
func (a *actor) onRunEvent(ctx context.Context, ev bus.RunEvent) {
	r, ok := a.running[ev.Issue.ID]
	if !ok {
		// The run of a dispatch whose answer never came (unanswered.go).
		r = a.adoptByEvent(ctx, ev)
		ok = r != nil
	}
	if !ok || r.runID != ev.RunID {
		return
	}
	if ev.Event != bus.RunFinished {
		r.lastEvent = time.Now()
		if ev.Event == bus.RunTurnFinished {
			// Into the day's spend (day.go); a turn that took the day over
			// a daily cap stops every run in flight.
			a.countDayTurn(ctx, ev)
			a.stopAtDayCap(ctx)
		}
		return
	}
	delete(a.running, ev.Issue.ID)
	a.lastEnd[ev.Issue.ID] = time.Now()
	a.lastStatus[ev.Issue.ID] = ev.Status
	// Into the issue's lifetime spend and the day's before anything else
	// (spend.go, day.go): the next dispatch checks them.
	a.countEnd(ctx, r.issue.Ref(), ev)
	log := a.issueLog(r.issue).With("run_id", ev.RunID, "status", ev.Status)
	if ev.SessionID != "" {
		log = log.With("session_id", ev.SessionID) // SPEC §13.1: every line of a run once known
	}
	defer a.checkOnce()
	switch {
	case r.release || r.removeWorkspace:
		if r.removeWorkspace {
			a.removeWorkspace(ctx, r.issue)
		}
		a.release(ctx, r.issue.ID)
		if r.holdReason != "" {
			a.block(ctx, r.issue, ev.RunID, r.holdReason)
			log.Info("run canceled by the operator; issue held until cleared or its state changes")
			break
		}
		log.Info("run stopped by reconciliation; issue released")
	case a.c.opts.Once && ev.Status != bus.RunBlocked && ev.Status != bus.RunBudgetExceeded:
		a.release(ctx, r.issue.ID)
		log.Info("run finished (once mode: no retry)", "err", ev.Error)
	case ev.Status == bus.RunSucceeded:
		// The worker finished cleanly: check back shortly (spec §7.1).
		a.queueRetry(ctx, bus.RetryEntry{IssueID: r.issue.ID, Identifier: r.issue.Identifier, Attempt: 1, DueAt: time.Now().Add(ContinuationDelay)})
	case ev.Status == bus.RunBlocked:
		a.release(ctx, r.issue.ID)
		a.block(ctx, r.issue, ev.RunID, ev.Error)
		a.notifyRun(bus.NotifyRunBlocked, r.issue, ev, ev.Error, bus.BlockedEntry{})
		log.Warn("run blocked; waiting for an operator or a state change", "err", ev.Error)
	case ev.Status == bus.RunBudgetExceeded:
		// A cap was reached: a retry would spend again. Parked with the
		// cap and the amounts (the run's error) until an operator clears
		// it, raises the cap, the day rolls over (a daily cap), or the
		// issue's state changes.
		a.release(ctx, r.issue.ID)
		c := budgetCap(r, ev)
		a.park(ctx, r.issue, ev.RunID, "budget exceeded: "+ev.Error, c)
		a.notifyRun(bus.NotifyBudgetExceeded, r.issue, ev, "budget exceeded: "+ev.Error, c)
		log.Warn("run exceeded its budget; issue parked until an operator clears it or its state changes", "err", ev.Error, "cap", c.Cap)
	default:
		next := 1
		if r.attempt != nil {
			next = *r.attempt + 1
		}
		a.queueRetry(ctx, bus.RetryEntry{IssueID: r.issue.ID, Identifier: r.issue.Identifier, Attempt: next,
			DueAt: time.Now().Add(RetryDelay(next, a.cfg.Config.Agent.MaxRetryBackoffMS)), Error: ev.Error})
		log.Warn("run failed; retry queued", "err", ev.Error, "attempt", next)
	}
	a.armRetryTimer()
}

// cancel asks the agent runner to stop the run. Once the runner has
// acknowledged it, the run's end is awaited on the run event subscription,
// and the runner is asked again after cancelWait (reconcile): the run's end
// may never come (a failed publish, an overflowing subscription).
func (a *actor) cancel(ctx context.Context, r *running, status bus.RunStatus, reason string) {
	again := r.cancelSent
	cctx, cancel := a.ask(ctx)
	req := bus.CancelRun{RunID: r.runID, Reason: reason, Status: status}
	if status == bus.RunBudgetExceeded && r.budget != nil {
		req.BudgetCap, req.BudgetLimit, req.BudgetDay = r.budget.Cap, r.budget.Limit, r.budget.Day
	}
	res, err := bus.Ask(cctx, a.b, bus.AgentCancel, req)
	cancel()
	log := a.issueLog(r.issue).With("run_id", r.runID)
	if err != nil {
		log.Warn("cancel did not reach the agent runner; will try again", "err", err)
		return
	}
	r.cancelSent, r.cancelAt, r.cancelStatus, r.cancelReason = true, time.Now(), status, reason
	switch {
	case res.Found && again:
		log.Warn("the agent runner still has the canceled run; asking again later", "canceled_for", a.cancelWait())
	case res.Found:
		log.Info("run canceled", "status", status, "reason", reason)
	default:
		a.runGone(ctx, r, reason)
	}
}

// runGone follows up a run the agent runner no longer has. Its end on
// record is used; without one (the runner restarted, say), the run is
// recorded as interrupted. Either is applied here, not left to the run
// event subscription, which may have lost it; the copy the subscription
// may still bring is ignored (the issue no longer runs that run). When
// neither can be had, the run stays and the runner is asked again later.
func (a *actor) runGone(ctx context.Context, r *running, reason string) {
	log := a.issueLog(r.issue).With("run_id", r.runID)
	if end := a.storedEnd(ctx, r.runID); end != nil {
		if err := runlog.EnsureEnded(ctx, a.b, *end); err != nil {
			log.Error("repair the summary of a finished run", "err", err)
		}
		log.Info("cancel found the run already ended")
		a.onRunEvent(ctx, *end)
		return
	}
	if a.endRecorded(ctx, r.runID) {
		// A second, "interrupted" end must never overwrite a recorded one.
		log.Warn("the run's end is recorded but could not be read; asking again later")
		return
	}
	end := bus.RunEvent{RunID: r.runID, Event: bus.RunFinished, At: time.Now().UTC(), Issue: r.issue.Ref(), Attempt: r.attempt,
		Status: bus.RunInterrupted, Error: "the agent runner no longer has this run (" + reason + ")"}
	// What it spent is in its stored turns (counted by onRunEvent).
	end = a.withStoredTurns(ctx, end)
	if err := runlog.Record(ctx, a.b, end, r.runID+"-lost"); err != nil {
		log.Error("record lost run; asking again later", "err", err)
		return
	}
	log.Warn("run lost by the agent runner; recorded as interrupted")
	a.onRunEvent(ctx, end)
}

// cancelWait is how long a canceled run may take to end before the agent
// runner is asked again whether it still has it: the hook timeout (its
// after_run) plus cancelGrace.
func (a *actor) cancelWait() time.Duration {
	return a.cfg.Config.Hooks.Timeout() + cancelGrace
}

// endRecorded reports whether the run's summary already has its end: a
// second, "interrupted" end must never overwrite a recorded one.
func (a *actor) endRecorded(ctx context.Context, runID string) bool {
	k, err := bus.RunSummaries.Key(runID)
	if err != nil {
		return false
	}
	e, err := bus.Get(ctx, a.b, k)
	return err == nil && e.Value.Ended != nil
}

// onProgress notes an agent's activity: it is what stall detection
// (reconcile) measures from.
func (a *actor) onProgress(p bus.RunProgress) {
	for _, r := range a.running {
		if r.runID == p.RunID {
			r.lastEvent = time.Now()
		}
	}
}

// budgetCap is the cap that ended a budget_exceeded run: the one its end
// names (the agent runner's own check, or the cancel that carried it),
// else the one the scheduler's cancel named (r.budget). Unknown (a run
// recorded before the runner named caps) leaves the park without a cap:
// only an operator or a state change clears it.
func budgetCap(r *running, ev bus.RunEvent) bus.BlockedEntry {
	if ev.BudgetCap != "" {
		return bus.BlockedEntry{Cap: ev.BudgetCap, Limit: ev.BudgetLimit, Day: ev.BudgetDay}
	}
	if r.budget != nil {
		return *r.budget
	}
	return bus.BlockedEntry{}
}
