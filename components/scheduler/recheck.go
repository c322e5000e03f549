package scheduler

import (
	"context"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// A reload re-checks the parks made by a cap (BlockedEntry.Cap): each is
// released when the new configuration removes that cap or raises it above
// what parked the issue — for a per-issue cap above the issue's stored
// lifetime spend, for a daily cap above today's spend (a park of an ended
// day is released anyway), for a per-run cap and agent.max_runs_per_issue
// above the value that parked it. Released issues are dispatched at the
// next tick. A park without a cap (a run that asked for a human, an
// operator's cancel) is left alone. A daily cap lowered to or below
// today's spend stops every run in flight (stopAtDayCap).

// recheckParks releases the parks the current configuration no longer
// holds, and re-checks the daily caps (a raised one resumes dispatch, a
// lowered one already reached stops the runs in flight).
func (a *actor) recheckParks(ctx context.Context) {
	released := 0
	for id, bl := range a.blocked {
		if bl.Cap == "" || !a.capLifted(ctx, bl) {
			continue
		}
		a.releasePark(ctx, id)
		released++
		a.log.Info("park released: the reloaded configuration raised or removed its cap", "issue_id", id,
			"issue_identifier", bl.Identifier, "cap", bl.Cap, "limit", bl.Limit)
	}
	wasHeld := a.heldToday()
	held := a.dayHeld(ctx)
	if held {
		// A lowered cap today's spend has already reached stops the runs
		// in flight now, as a turn taking the day over it would.
		a.stopAtDayCap(ctx)
	} else {
		a.armRetryTimer()
	}
	if released > 0 || wasHeld && !held {
		a.queueRefresh()
	}
}

// capLifted says whether the current configuration no longer holds the
// cap that parked bl.
func (a *actor) capLifted(ctx context.Context, bl bus.BlockedEntry) bool {
	b := a.cfg.Config.Budget
	above := func(v float64) bool { return v <= 0 || v > bl.Limit }
	switch bl.Cap {
	case bus.CapRunUSD:
		return above(b.PerRun.USD)
	case bus.CapRunTokens:
		return above(float64(b.PerRun.Tokens))
	case bus.CapMaxRuns:
		return above(float64(a.cfg.Config.Agent.MaxRunsPerIssue))
	case bus.CapIssueUSD, bus.CapIssueTokens, bus.CapIssueRuns, bus.CapIssueTurns:
		sp, _, err := a.issueSpend(ctx, bl.IssueID)
		if err != nil {
			a.log.Error("re-check a park: the issue's lifetime spend cannot be read; it stays parked", "err", err, "issue_id", bl.IssueID)
			return false
		}
		return issueCapLifted(bl.Cap, b.PerIssue, sp)
	case bus.CapDayUSD, bus.CapDayTokens:
		if bl.Day != "" && bl.Day < a.dayOf(time.Now()) {
			return true
		}
		sp := a.todaySpend(ctx)
		if bl.Cap == bus.CapDayTokens {
			return b.PerDay.Tokens <= 0 || sp.Tokens < b.PerDay.Tokens
		}
		return b.PerDay.USD <= 0 || b.PerDay.USD-sp.USD >= 1e-6
	}
	return false
}

// issueCapLifted says whether the per-issue cap key of caps is absent or
// above the issue's spend.
func issueCapLifted(key string, caps bus.IssueBudget, sp bus.IssueSpend) bool {
	switch key {
	case bus.CapIssueUSD:
		return caps.USD <= 0 || caps.USD-sp.USD >= 1e-6
	case bus.CapIssueTokens:
		return caps.Tokens <= 0 || sp.Tokens < caps.Tokens
	case bus.CapIssueRuns:
		return caps.Runs <= 0 || sp.Runs < caps.Runs
	case bus.CapIssueTurns:
		return caps.Turns <= 0 || sp.Turns < caps.Turns
	}
	return false
}
