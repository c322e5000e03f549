package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// The continuation loop's end (agent.max_runs_per_issue). A run that
// succeeds while its issue stays active is followed by another (spec §7.1),
// each with a fresh agent.max_turns, and a failing one by a retry: without
// a bound an issue the agent never hands off runs forever. The scheduler
// counts the runs of an issue in KV symphony_state (bus.RunCounts), one
// per dispatch — first run, continuation, retry, the re-dispatch of a run
// a restart interrupted — stored before the agent runner is asked, so a
// kill -9 at any point never loses a run that may have started. The count
// is one stretch of the scheduler's hold on the issue: it is deleted when
// the scheduler lets go of it (release: the issue left the active states,
// became ineligible, vanished or went terminal; or its run was canceled)
// and when the issue's park is cleared (an operator's clear_blocked, or
// its tracker state changing). The dispatch that would start run max+1
// parks the issue instead, as a blocked run does (bus.BlockedEntry), with
// the cap in its reason; the park is in KV, so a restart keeps it.

// runCount is the issue's stored run count (0 when none, or when it
// cannot be read: a store that fails that read fails the claim too).
func (a *actor) runCount(ctx context.Context, id string) bus.RunCount {
	k, err := bus.RunCounts.Key(id)
	if err != nil {
		return bus.RunCount{}
	}
	e, err := bus.Get(ctx, a.b, k)
	if err != nil {
		if !errors.Is(err, bus.ErrKeyNotFound) {
			a.log.Error("read the issue's run count", "err", err, "issue_id", id)
		}
		return bus.RunCount{}
	}
	return e.Value
}

// putRunCount stores the issue's run count.
func (a *actor) putRunCount(ctx context.Context, c bus.RunCount) error {
	k, err := bus.RunCounts.Key(c.IssueID)
	if err != nil {
		return err
	}
	if _, err := bus.Put(ctx, a.b, k, c); err != nil {
		return fmt.Errorf("store the run count of %s: %w", c.IssueID, err)
	}
	return nil
}

// resetRuns forgets the issue's run count: the scheduler let go of it.
func (a *actor) resetRuns(ctx context.Context, id string) {
	if k, err := bus.RunCounts.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.log.Error("delete the issue's run count", "err", err, "issue_id", id)
		}
	}
}

// countRun checks the cap before runID is dispatched and counts it: ok is
// false when the issue was parked instead. undo takes the count back, for
// a dispatch the agent runner never took.
func (a *actor) countRun(ctx context.Context, iss bus.Issue, runID string) (undo func(), ok bool) {
	c := a.runCount(ctx, iss.ID)
	if limit := a.cfg.Config.Agent.MaxRunsPerIssue; limit > 0 && c.Runs >= limit {
		reason := fmt.Sprintf("agent.max_runs_per_issue reached: the issue had %d runs while it stayed active (the cap is %d); "+
			"clear it to allow %d more, or change its state", c.Runs, limit, limit)
		a.release(ctx, iss.ID)
		a.park(ctx, iss, c.LastRunID, reason, bus.BlockedEntry{Cap: bus.CapMaxRuns, Limit: float64(limit)})
		a.notifyMaxRuns(ctx, iss, c, limit, reason)
		a.issueLog(iss).Warn("issue parked: it reached agent.max_runs_per_issue; waiting for an operator or a state change", "runs", c.Runs, "cap", limit)
		return nil, false
	}
	prev := c
	if c.Runs == 0 {
		c = bus.RunCount{IssueID: iss.ID, Identifier: iss.Identifier, Since: time.Now().UTC()}
	}
	c.Runs++
	c.LastRunID = runID
	if err := a.putRunCount(ctx, c); err != nil {
		// Not counted is not worth not running: the cap may let one more
		// run through, which the log says.
		a.issueLog(iss).Error("run not counted towards agent.max_runs_per_issue", "err", err, "run_id", runID)
	}
	return func() {
		if prev.Runs == 0 {
			a.resetRuns(ctx, iss.ID)
			return
		}
		_ = a.putRunCount(ctx, prev)
	}, true
}
