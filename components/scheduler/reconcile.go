package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// reconcile stops stalled runs and runs whose issues are no longer
// routable (spec §8.5), and follows up canceled runs whose end is late. The
// tracker's answer about the issues held is not waited for here
// (refreshHeld, reconcile.go). A failed refresh keeps every worker running.
func (a *actor) reconcile(ctx context.Context) {
	cfg := a.cfg.Config
	// A canceled run whose end has not come in time: ask the runner again
	// (its end may have been lost on the way), whatever the tracker says.
	for _, r := range a.running {
		if r.cancelSent && time.Now().Sub(r.cancelAt) >= a.cancelWait() {
			a.cancel(ctx, r, r.cancelStatus, r.cancelReason)
		}
	}
	stall := time.Duration(cfg.Claude.StallTimeoutMS) * time.Millisecond
	if cfg.Agent.Kind == bus.AgentCodex {
		stall = time.Duration(cfg.Codex.StallTimeoutMS) * time.Millisecond
	}
	if stall > 0 {
		for _, r := range a.running {
			if idle := time.Now().Sub(r.lastEvent); idle > stall && !r.cancelSent {
				a.cancel(ctx, r, bus.RunStalled, fmt.Sprintf("no agent event for %s (stall_timeout_ms)", idle.Round(time.Second)))
			}
		}
	}
	if len(a.running) == 0 && len(a.blocked) == 0 {
		return
	}
	a.refreshHeld(ctx)
}

// refreshHeld asks the tracker about the issues the scheduler holds (those
// running and those blocked) without waiting for the answer, which
// reconciled applies. While one such refresh is in flight no other is
// asked: its answer serves the ticks that come meanwhile.
func (a *actor) refreshHeld(ctx context.Context) {
	if a.reconciling {
		return
	}
	// What was asked about: each running issue with its run (an answer
	// applies to that run only), and each blocked issue. Blocked issues
	// are refreshed too: any state change (or their disappearance) clears
	// them, candidate or not.
	asked := make(map[string]string, len(a.running)+len(a.blocked))
	ids := make([]string, 0, len(a.running)+len(a.blocked))
	for id, r := range a.running {
		asked[id] = r.runID
		ids = append(ids, id)
	}
	for id := range a.blocked {
		if _, ok := asked[id]; !ok {
			asked[id] = ""
			ids = append(ids, id)
		}
	}
	at := time.Now()
	a.reconciling = true
	goAsk(ctx, a, requestTimeout,
		func(rctx context.Context) (bus.IssueList, error) {
			return bus.Ask(rctx, a.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: ids, Outline: true})
		},
		func(ctx context.Context, list bus.IssueList, err error) {
			a.reconciling = false
			a.reconciled(ctx, asked, at, list, err)
		})
}

// reconciled applies the tracker's answer about the issues held when it was
// asked (at): a run that has ended since, or a block made since, is left
// alone (the answer may predate what changed it); an issue held since was
// not asked about, and its absence from the answer says nothing.
func (a *actor) reconciled(ctx context.Context, asked map[string]string, at time.Time, list bus.IssueList, err error) {
	if err != nil {
		a.log.Warn("reconcile: refresh failed; workers keep running", "err", err)
		return
	}
	cfg := a.cfg.Config
	found := map[string]bus.Issue{}
	for _, iss := range list.Issues {
		found[iss.ID] = iss
	}
	for id, bl := range a.blocked {
		if _, ok := asked[id]; !ok || bl.At.After(at) {
			continue
		}
		if iss, ok := found[id]; !ok || a.blockedStateChanged(ctx, bl, iss.State) {
			a.clearBlocked(ctx, id)
			a.log.Info("blocked issue cleared: its state changed", "issue_id", id, "issue_identifier", bl.Identifier)
		}
	}
	for id, r := range a.running {
		if runID, ok := asked[id]; !ok || runID != r.runID || r.cancelSent {
			continue
		}
		iss, ok := found[id]
		if !ok {
			r.release = true
			a.cancel(ctx, r, bus.RunCanceled, "the issue no longer exists in the tracker")
			continue
		}
		// The rules dispatch applies to the issue itself (Routable): what
		// would not be dispatched now does not keep its agent either.
		switch why := Routable(cfg, iss); {
		case inStates(iss.State, cfg.Tracker.TerminalStates):
			r.release, r.removeWorkspace = true, true
			a.cancel(ctx, r, bus.RunCanceled, "the issue moved to "+iss.State)
		case why == NotActive:
			r.release = true
			a.cancel(ctx, r, bus.RunCanceled, "the issue is no longer active ("+iss.State+")")
		case why != Eligible:
			// Unroutable but not terminal (a required label removed, say:
			// an operator taking the issue away from automation): the
			// workspace is kept, as for a state that is not active.
			r.release = true
			a.cancel(ctx, r, bus.RunCanceled, "the issue is no longer eligible: "+string(why))
		default:
			// Per-state slots count the issue's current state.
			r.issue, r.state = iss, normState(iss.State)
		}
	}
}
