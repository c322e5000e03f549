package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Operator commands (pause, resume, refresh, cancel, clear a block) are
// requests on the bus, applied in the actor's goroutine like every other
// change to the state. A pause is stored in KV so that it survives a
// restart; refreshes within RefreshWindow share one tick.

// control is an operator command on its way into the actor.
type control struct {
	req   bus.Control
	reply chan bus.ControlResult
}

// control applies one operator command.
func (a *actor) control(ctx context.Context, req bus.Control) bus.ControlResult {
	res := func(format string, args ...any) bus.ControlResult {
		return bus.ControlResult{Message: fmt.Sprintf(format, args...), Paused: a.paused}
	}
	switch req.Action {
	case bus.ControlRefresh:
		r := res("refresh queued")
		r.Coalesced = !a.queueRefresh()
		return r
	case bus.ControlPause:
		a.paused = true
		a.storePause(ctx, req.Reason)
		a.log.Info("dispatch paused by the operator; running agents continue")
		return res("paused: nothing new starts; %d running", len(a.running))
	case bus.ControlResume:
		a.paused = false
		a.storePause(ctx, req.Reason)
		a.log.Info("dispatch resumed by the operator")
		a.queueRefresh()
		a.armRetryTimer()
		return res("resumed")
	case bus.ControlClearBlocked:
		if _, ok := a.blocked[req.IssueID]; !ok {
			return res("issue %s is not blocked", req.IssueID)
		}
		a.clearBlocked(ctx, req.IssueID)
		a.queueRefresh()
		return res("issue %s unblocked", req.IssueID)
	case bus.ControlResetSpend:
		return res("%s", a.resetSpend(ctx, req.IssueID))
	case bus.ControlCancel:
		for _, r := range a.running {
			if r.issue.ID == req.IssueID || (req.RunID != "" && r.runID == req.RunID) {
				reason := req.Reason
				if reason == "" {
					reason = "canceled by the operator"
				}
				r.release, r.holdReason = true, reason
				// The hold is stored now, not only when the run's end
				// arrives: a restart in between (its end then reaches
				// no scheduler) must not start the issue again.
				a.block(ctx, r.issue, r.runID, reason)
				a.cancel(ctx, r, bus.RunCanceled, reason)
				return res("run %s of %s canceled; the issue is held until cleared or its state changes", r.runID, r.issue.Identifier)
			}
		}
		return res("no running run matches issue %q run %q", req.IssueID, req.RunID)
	}
	return res("unknown action %q", req.Action)
}

// RefreshWindow is the least time between two operator refreshes: one
// after a quiet spell runs at once; requests within the window after it
// join a single tick at the window's end.
const RefreshWindow = 50 * time.Millisecond

// queueRefresh coalesces operator refreshes into one tick; it reports
// whether this call queued it (false: it joined one already queued).
func (a *actor) queueRefresh() bool {
	if a.refreshQ {
		return false
	}
	a.refreshQ = true
	a.refreshT.Reset(max(RefreshWindow-time.Since(a.lastRefresh), 0))
	return true
}

// storePause records the pause state in KV so it survives a restart and
// dashboards see it.
func (a *actor) storePause(ctx context.Context, reason string) {
	if _, err := bus.Put(ctx, a.b, bus.DispatchPause, bus.PauseState{Paused: a.paused, At: time.Now().UTC(), Reason: reason}); err != nil {
		a.log.Error("store pause state; it will not survive a restart", "paused", a.paused, "err", err)
	}
}

// refreshNow polls the tracker directly and runs a tick with its answer,
// which is not waited for here.
func (a *actor) refreshNow(ctx context.Context) {
	a.lastRefresh = time.Now()
	states, version := a.cfg.Config.Tracker.ActiveStates, a.cfg.Version
	goAsk(ctx, a, requestTimeout, func(rctx context.Context) (bus.IssueList, error) {
		return bus.Ask(rctx, a.b, bus.TrackerCandidates, bus.IssuesByStates{States: states, Outline: true})
	}, func(ctx context.Context, list bus.IssueList, err error) {
		if err != nil {
			a.log.Warn("refresh: candidates unavailable", "err", err)
			return
		}
		a.tick(ctx, bus.CandidateSnapshot{IssueList: list, States: states, ConfigVersion: version})
	})
}

// serveControls serves operator commands on the bus until ctx ends
// (served is closed then), handing each to the actor's loop on controls
// and its answer back.
func (a *actor) serveControls(ctx context.Context, cl *bus.Client) (controls chan control, err error) {
	controls = make(chan control)
	_, err = bus.ServeN(ctx, cl, bus.SchedulerControl, 16, func(hctx context.Context, _ string, req bus.Control) (bus.ControlResult, error) {
		c := control{req: req, reply: make(chan bus.ControlResult, 1)}
		select {
		case controls <- c:
		case <-hctx.Done():
			return bus.ControlResult{}, hctx.Err()
		}
		select {
		case res := <-c.reply:
			return res, nil
		case <-hctx.Done():
			return bus.ControlResult{}, hctx.Err()
		}
	})
	return controls, err
}

// resetSpend sets the issue's lifetime spend (budget.per_issue) back to
// zero and clears its park: the operator's way to give one issue a fresh
// budget. The ids of the runs already counted stay (Counted), so a run's
// end handled again after the reset is not added again. The answer, and
// the log, give the amounts before.
func (a *actor) resetSpend(ctx context.Context, id string) string {
	if id == "" {
		return "reset_spend needs an issue id"
	}
	var prev bus.IssueSpend
	_, err := a.updateSpend(ctx, bus.IssueRef{ID: id}, func(sp *bus.IssueSpend) bool {
		prev = *sp
		sp.USD, sp.Unpriced, sp.Tokens, sp.Runs, sp.Turns = 0, 0, 0, 0, 0
		return true
	})
	if err != nil {
		a.log.Error("reset the issue's lifetime spend", "err", err, "issue_id", id)
		return fmt.Sprintf("issue %s: the lifetime spend could not be reset: %v", id, err)
	}
	was := fmt.Sprintf("$%s, %d tokens, %d runs, %d turns", usdText(prev.USD), prev.Tokens, prev.Runs, prev.Turns)
	if prev.Unpriced > 0 {
		was += fmt.Sprintf(", %d runs without a USD figure", prev.Unpriced)
	}
	a.log.Info("issue's lifetime spend reset by the operator", "issue_id", id, "issue_identifier", prev.Identifier,
		"usd", prev.USD, "tokens", prev.Tokens, "runs", prev.Runs, "turns", prev.Turns, "unpriced", prev.Unpriced)
	msg := fmt.Sprintf("issue %s: lifetime spend reset to zero (it was %s)", id, was)
	if _, parked := a.blocked[id]; parked {
		a.clearBlocked(ctx, id)
		a.queueRefresh()
		msg += "; its park is cleared"
	}
	return msg
}
