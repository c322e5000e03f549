package scheduler

import (
	"context"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Blocked issues. A run that ended blocked (it asked for a human) or
// budget_exceeded, an operator's cancel, or agent.max_runs_per_issue
// (runcap.go) parks its issue here and in KV symphony_state: no poll
// starts it again until an operator clears it or its tracker state
// changes (reconciled, dispatchFrom).

// block parks the issue, blocked by its run for reason.
func (a *actor) block(ctx context.Context, iss bus.Issue, runID, reason string) {
	a.park(ctx, iss, runID, reason, bus.BlockedEntry{})
}

// park parks the issue for reason, by the cap c names (c.Cap, c.Limit,
// c.Day; none for a run that asked for a human or an operator's cancel):
// a reload that raises or removes that cap releases it (recheckParks), and
// a daily cap's park ends with its day (day.go); one naming a day that
// has already ended is not made.
func (a *actor) park(ctx context.Context, iss bus.Issue, runID, reason string, c bus.BlockedEntry) {
	if c.Day != "" && c.Day < a.today() {
		// A daily cap of a day that has ended holds nothing: a park would
		// wait for the next midnight (a run that crossed midnight, an end
		// followed up after a restart). The issue is left to the next poll.
		a.issueLog(iss).Info("not parked: the daily cap that stopped the run was of a day that has ended", "run_id", runID, "day", c.Day, "cap", c.Cap)
		return
	}
	a.putBlocked(ctx, bus.BlockedEntry{IssueID: iss.ID, Identifier: iss.Identifier, State: iss.State, RunID: runID, Reason: reason,
		At: time.Now().UTC(), Cap: c.Cap, Limit: c.Limit, Day: c.Day})
}

// releasePark forgets a park whose cap no longer holds (a reload raised
// it, its day ended), here and in KV; the next tick may dispatch the
// issue. The issue's run count was reset when it was parked (release),
// so a park by agent.max_runs_per_issue released by a raised cap gives
// the issue the new cap's runs, as clearing it would.
func (a *actor) releasePark(ctx context.Context, id string) {
	delete(a.blocked, id)
	if k, err := bus.Blocks.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.log.Error("delete a released park", "err", err, "issue_id", id)
		}
	}
}

// putBlocked stores a block, here and in KV.
func (a *actor) putBlocked(ctx context.Context, e bus.BlockedEntry) {
	a.blocked[e.IssueID] = e
	if k, err := bus.Blocks.Key(e.IssueID); err == nil {
		if _, err := bus.Put(ctx, a.b, k, e); err != nil {
			a.log.Error("store blocked issue", "err", err, "issue_id", e.IssueID)
		}
	}
}

// blockedStateChanged reports whether a blocked issue's tracker state has
// changed since it was blocked, which clears the block. A block stored
// without a state (at start-up, from a run that ended blocked before the
// restart: the state it then had is not known, only the dispatch's) takes
// the first state seen instead.
func (a *actor) blockedStateChanged(ctx context.Context, bl bus.BlockedEntry, state string) bool {
	if bl.State == "" {
		bl.State = state
		a.putBlocked(ctx, bl)
		return false
	}
	return normState(bl.State) != normState(state)
}

// clearBlocked forgets a block, here and in KV, and the issue's run
// count with it: an issue parked by agent.max_runs_per_issue gets its
// runs anew.
func (a *actor) clearBlocked(ctx context.Context, id string) {
	delete(a.blocked, id)
	a.resetRuns(ctx, id)
	if k, err := bus.Blocks.Key(id); err == nil {
		_ = bus.Delete(ctx, a.b, k)
	}
}
