package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// The issue's lifetime caps (budget.per_issue). The scheduler keeps what
// an issue spent over all its runs, ever, in KV symphony_state
// (bus.IssueSpends, spend.<issue_id>), and never deletes it: a release, a
// cleared park and the pruning of the runs leave it, and a restart reads
// it back. Runs grows at each dispatch, stored before the agent runner is
// asked (as agent.max_runs_per_issue's count); USD, tokens and turns grow
// when the scheduler handles a run's end, once per run (IssueSpend.Counted
// remembers the last runs added, so an end handled again after a restart
// is not added twice). Every change is a compare-and-set.
//
// Before a dispatch or a retry an issue whose spend reached a cap is
// parked (the blocked mechanism, the cap and the amounts in its reason)
// instead of started; a dispatched run gets the caps and the spend so far
// (bus.Dispatch.IssueBudget), and the agent runner stops it where the
// issue's remainder runs out: it ends budget_exceeded, which parks the
// issue (runs.go). A run without a USD figure (codex with no pricing entry
// for its model) adds nothing to USD: it is counted in Unpriced, and the
// USD cap does not see it.

// spendTries bounds the compare-and-set retries of one spend update:
// only the scheduler writes the key, so a conflict is rare.
const spendTries = 5

// issueSpend is the issue's stored lifetime spend and its revision (0:
// none stored).
func (a *actor) issueSpend(ctx context.Context, id string) (bus.IssueSpend, uint64, error) {
	k, err := bus.IssueSpends.Key(id)
	if err != nil {
		return bus.IssueSpend{}, 0, err
	}
	e, err := bus.Get(ctx, a.b, k)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return bus.IssueSpend{IssueID: id}, 0, nil
	}
	if err != nil {
		return bus.IssueSpend{}, 0, fmt.Errorf("read the lifetime spend of %s: %w", id, err)
	}
	return e.Value, e.Revision, nil
}

// updateSpend folds change into the issue's stored spend with a
// compare-and-set, trying again when the key changed meanwhile; change
// returns false to leave it as it is. It returns the spend as stored.
func (a *actor) updateSpend(ctx context.Context, iss bus.IssueRef, change func(*bus.IssueSpend) bool) (bus.IssueSpend, error) {
	k, err := bus.IssueSpends.Key(iss.ID)
	if err != nil {
		return bus.IssueSpend{}, err
	}
	return foldKey(ctx, a.b, k, "the lifetime spend of "+iss.ID, bus.IssueSpend{IssueID: iss.ID}, func(sp *bus.IssueSpend) bool {
		if !change(sp) {
			return false
		}
		sp.IssueID, sp.Updated = iss.ID, time.Now().UTC()
		if iss.Identifier != "" {
			sp.Identifier = iss.Identifier
		}
		return true
	})
}

// countSpend adds a run's end to its issue's lifetime spend, once.
func (a *actor) countSpend(ctx context.Context, iss bus.IssueRef, ev bus.RunEvent) {
	_, err := a.updateSpend(ctx, iss, func(sp *bus.IssueSpend) bool {
		if slices.Contains(sp.Counted, ev.RunID) {
			return false
		}
		if ev.Usage != nil {
			kind := ev.Agent
			if kind == "" {
				kind = a.cfg.Config.Agent.Kind
			}
			sp.Tokens += ev.Usage.BudgetTokens(kind)
		}
		switch {
		case ev.BudgetUSD != nil:
			sp.USD += *ev.BudgetUSD
		case ev.CostUSD != nil:
			sp.USD += *ev.CostUSD
		case ev.Usage != nil && (ev.Usage.InputTokens > 0 || ev.Usage.OutputTokens > 0):
			sp.Unpriced++
		}
		sp.Turns += max(ev.Turn, 0)
		sp.Counted = append(sp.Counted, ev.RunID)
		if n := len(sp.Counted); n > bus.MaxCountedRuns {
			sp.Counted = slices.Clone(sp.Counted[n-bus.MaxCountedRuns:])
		}
		return true
	})
	if err != nil {
		a.log.Error("run's spend not added to its issue's lifetime spend (budget.per_issue)", "err", err,
			"run_id", ev.RunID, "issue_id", iss.ID, "issue_identifier", iss.Identifier)
	}
}

// issueCap is a lifetime cap an issue's spend reached: its key, its value,
// the spend, and the reason of the park with the amounts.
type issueCap struct {
	cap          string
	limit, spent float64
	why          string
}

// overIssueBudget says which lifetime cap the issue's spend reached, with
// the amounts: the reason of its park.
func overIssueBudget(caps bus.IssueBudget, sp bus.IssueSpend) (issueCap, bool) {
	switch {
	case caps.Runs > 0 && sp.Runs >= caps.Runs:
		return issueCap{bus.CapIssueRuns, float64(caps.Runs), float64(sp.Runs),
			fmt.Sprintf("budget.per_issue.runs reached: the issue had %d runs, the cap is %d", sp.Runs, caps.Runs)}, true
	case caps.Turns > 0 && sp.Turns >= caps.Turns:
		return issueCap{bus.CapIssueTurns, float64(caps.Turns), float64(sp.Turns),
			fmt.Sprintf("budget.per_issue.turns reached: the issue's runs had %d turns, the cap is %d", sp.Turns, caps.Turns)}, true
	case caps.Tokens > 0 && sp.Tokens >= caps.Tokens:
		return issueCap{bus.CapIssueTokens, float64(caps.Tokens), float64(sp.Tokens),
			fmt.Sprintf("budget.per_issue.tokens reached: the issue's runs used %d tokens, the cap is %d", sp.Tokens, caps.Tokens)}, true
	case caps.USD > 0 && caps.USD-sp.USD < 1e-6:
		return issueCap{bus.CapIssueUSD, caps.USD, sp.USD,
			fmt.Sprintf("budget.per_issue.usd reached: the issue's runs cost $%s, the cap is $%s", usdText(sp.USD), usdText(caps.USD))}, true
	}
	return issueCap{}, false
}

// usdText is an amount in dollars, to the micro-dollar.
func usdText(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// countIssueRun checks the issue's lifetime caps before runID is
// dispatched and counts the run: ok is false when the issue was parked
// instead. left is what the dispatch carries (nil without per-issue
// caps); undo takes the run back, for a dispatch the runner never took.
func (a *actor) countIssueRun(ctx context.Context, iss bus.Issue, runID string) (left *bus.IssueBudgetLeft, undo func(), ok bool) {
	caps := a.cfg.Config.Budget.PerIssue
	var hit issueCap
	sp, err := a.updateSpend(ctx, iss.Ref(), func(sp *bus.IssueSpend) bool {
		if c, over := overIssueBudget(caps, *sp); over {
			hit = c
			return false
		}
		sp.Runs++
		return true
	})
	if err != nil {
		// Not counted is not worth not running, as for the run count.
		a.issueLog(iss).Error("run not counted towards budget.per_issue", "err", err, "run_id", runID)
		return nil, func() {}, true
	}
	if hit.cap != "" {
		last := ""
		if n := len(sp.Counted); n > 0 {
			last = sp.Counted[n-1]
		}
		reason := "budget exceeded: " + hit.why
		a.release(ctx, iss.ID)
		a.park(ctx, iss, last, reason, bus.BlockedEntry{Cap: hit.cap, Limit: hit.limit})
		// The occurrence is the issue at this cap after its last counted
		// run: parked again with nothing spent since, it is the same one.
		a.notify(bus.Notification{ID: issueCapNoteID(iss.ID, hit.cap, last), Event: bus.NotifyBudgetExceeded,
			At: time.Now().UTC(), IssueID: iss.ID, Identifier: iss.Identifier, State: iss.State, RunID: last, Reason: reason,
			Cap: hit.cap, Limit: hit.limit, Spent: hit.spent})
		a.issueLog(iss).Warn("issue parked: it reached a budget.per_issue cap; waiting for an operator (raise the cap) or a state change", "reason", hit.why)
		return nil, nil, false
	}
	undo = func() {
		if _, err := a.updateSpend(ctx, iss.Ref(), func(sp *bus.IssueSpend) bool {
			sp.Runs = max(sp.Runs-1, 0)
			return true
		}); err != nil {
			a.issueLog(iss).Error("take back a run not dispatched from budget.per_issue", "err", err, "run_id", runID)
		}
	}
	if caps.Capped() {
		// Runs is the runs before this one in what the runner sees.
		before := sp
		before.Runs--
		before.Counted = nil
		left = &bus.IssueBudgetLeft{Caps: caps, Spent: before}
	}
	return left, undo, true
}
