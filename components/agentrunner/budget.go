package agentrunner

import (
	"fmt"
	"math"
	"strconv"

	"github.com/symphony-oss/symphony/bus"
)

// Per-run caps (budget.per_run). A run's spend is its usage summed over
// its turns (addUsage) and its cost: claude's own figure, or codex's
// thread totals priced by the pricing table for the model thread/start
// named. The caps are enforced at three points:
//
//   - claude gets --max-budget-usd with what remains of the USD cap on
//     every turn: claude reports no usage until its result, so mid-turn
//     the CLI's own limit is the only one (its result is then the error
//     subtype claudeBudgetSubtype);
//   - codex reports the thread's absolute totals during the turn
//     (thread/tokenUsage/updated): the turn is stopped, by the cancel
//     path, as soon as they reach a cap (codexSession.await);
//   - after every turn the run's spend is checked: at a cap the run ends,
//     without a continuation.
//
// The issue's lifetime caps (budget.per_issue) are enforced the same
// way: the scheduler puts the caps and what the issue's earlier runs spent
// into the dispatch (bus.Dispatch.IssueBudget), and every check above
// takes the tighter of what remains of the per-run and of the issue's
// caps (overIssueCaps; --max-budget-usd gets the smaller remainder; the
// turn loop stops at the issue's remaining turns, and the scheduler parks
// the issue before its next dispatch).
//
// Either way the run ends budget_exceeded with the cap and the amounts in
// its error. What the agent spent after its last report is not seen: the
// spend can exceed a cap by what one report interval (codex) or one turn
// beyond --max-budget-usd's own overshoot (claude) costs.

// claudeBudgetSubtype is the result subtype of a claude turn that
// --max-budget-usd stopped.
const claudeBudgetSubtype = "error_max_budget_usd"

// minUSD is the smallest amount a USD cap is counted in: less than a
// micro-dollar left is none left (--max-budget-usd gets whole
// micro-dollars, rounded down, so claude is never allowed more than
// remains).
const minUSD = 1e-6

// overRunCaps says whether a run that used tokens (bus.Usage.BudgetTokens)
// and cost usd (priced: whether it has a figure at all) reached a per-run
// cap, and which, with the amounts: the run's error.
func overRunCaps(caps bus.BudgetCaps, tokens int64, usd float64, priced bool) (string, bool) {
	if caps.Tokens > 0 && tokens >= caps.Tokens {
		return fmt.Sprintf("budget.per_run.tokens reached: the run used %d tokens, the cap is %d", tokens, caps.Tokens), true
	}
	if caps.USD > 0 && priced && caps.USD-usd < minUSD {
		return fmt.Sprintf("budget.per_run.usd reached: the run cost $%s, the cap is $%s", usdText(usd), usdText(caps.USD)), true
	}
	return "", false
}

// overIssueCaps says whether a run that used tokens and cost usd carries
// the issue past a lifetime cap (budget.per_issue), given what its earlier
// runs spent; nil left: no per-issue cap.
func overIssueCaps(left *bus.IssueBudgetLeft, tokens int64, usd float64, priced bool) (string, bool) {
	if left == nil {
		return "", false
	}
	caps, spent := left.Caps, left.Spent
	if caps.Tokens > 0 && spent.Tokens+tokens >= caps.Tokens {
		return fmt.Sprintf("budget.per_issue.tokens reached: the issue's runs used %d tokens (this run %d), the cap is %d",
			spent.Tokens+tokens, tokens, caps.Tokens), true
	}
	if caps.USD > 0 && priced && caps.USD-(spent.USD+usd) < minUSD {
		return fmt.Sprintf("budget.per_issue.usd reached: the issue's runs cost $%s (this run $%s), the cap is $%s",
			usdText(spent.USD+usd), usdText(usd), usdText(caps.USD)), true
	}
	return "", false
}

// overCaps checks a run's spend against its per-run caps, then against
// what remains of its issue's lifetime caps.
func overCaps(caps bus.BudgetCaps, left *bus.IssueBudgetLeft, tokens int64, usd float64, priced bool) (string, bool) {
	if why, over := overRunCaps(caps, tokens, usd, priced); over {
		return why, true
	}
	return overIssueCaps(left, tokens, usd, priced)
}

// issueUSDLeft is what remains of the issue's lifetime USD cap before the
// run (ok false without one).
func issueUSDLeft(left *bus.IssueBudgetLeft) (float64, bool) {
	if left == nil || left.Caps.USD <= 0 {
		return 0, false
	}
	return left.Caps.USD - left.Spent.USD, true
}

// issueTurnsLeft bounds a run's turns by what remains of the issue's
// lifetime turns cap (at least one: the scheduler does not dispatch an
// issue that has none left).
func issueTurnsLeft(left *bus.IssueBudgetLeft, maxTurns int) int {
	if left == nil || left.Caps.Turns <= 0 {
		return maxTurns
	}
	return max(min(maxTurns, left.Caps.Turns-left.Spent.Turns), 1)
}

// usdText is an amount in dollars, to the micro-dollar.
func usdText(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// spentUSD is the run's cost so far: claude's summed figure, else the
// backend's pricing of the run (codex with a price for its model); priced
// is false when there is neither.
func (w *run) spentUSD() (usd float64, priced bool) {
	switch {
	case w.cost != nil:
		return *w.cost, true
	case w.priced != nil:
		return *w.priced, true
	}
	return 0, false
}

// overBudget checks the run's spend so far against the per-run caps.
func (w *run) overBudget() (string, bool) {
	cfg := w.snap.Config
	usd, priced := w.spentUSD()
	return overCaps(cfg.Budget.PerRun, w.d.IssueBudget, w.usage.BudgetTokens(cfg.Agent.Kind), usd, priced)
}

// remainingUSD is what --max-budget-usd gets for the next claude turn: the
// tighter of the per-run USD cap and what remained of the issue's, minus
// the run's cost so far, rounded down to the micro-dollar; "" without a
// USD cap.
func (w *run) remainingUSD() string {
	limit, ok := w.usdLimit()
	if !ok {
		return ""
	}
	spent, _ := w.spentUSD()
	// Rounded down, but not for the float error of the subtraction
	// (0.0025-0.002 is 0.00049999…): a thousandth of a micro-dollar.
	left := math.Floor((limit-spent)*1e6+1e-3) / 1e6
	return strconv.FormatFloat(max(left, minUSD), 'f', -1, 64)
}

// usdLimit is the most the run may cost: the per-run USD cap or what
// remained of the issue's, whichever is smaller; ok false without either.
func (w *run) usdLimit() (limit float64, ok bool) {
	run := w.snap.Config.Budget.PerRun.USD
	issue, capped := issueUSDLeft(w.d.IssueBudget)
	switch {
	case capped && (run <= 0 || issue < run):
		return issue, true
	case run > 0:
		return run, true
	}
	return 0, false
}

// budgetEnd turns a turn's end into budget_exceeded when the run's spend
// reached a per-run cap: after a turn that succeeded or failed (a claude
// turn stopped by --max-budget-usd fails with claudeBudgetSubtype), not
// after a cancel, a stall or a shutdown, whose reason stands.
func (w *run) budgetEnd(out turnOutcome) turnOutcome {
	if out.status != bus.RunSucceeded && out.status != bus.RunFailed {
		return out
	}
	if why, over := w.overBudget(); over {
		out.status, out.err = bus.RunBudgetExceeded, why
		return out
	}
	if out.status == bus.RunFailed && out.result != nil && out.result.Subtype == claudeBudgetSubtype {
		usd, _ := w.spentUSD()
		out.status = bus.RunBudgetExceeded
		out.err = fmt.Sprintf("budget.per_run.usd reached: claude stopped at --max-budget-usd; the run cost $%s, the cap is $%s",
			usdText(usd), usdText(w.snap.Config.Budget.PerRun.USD))
		if left := w.d.IssueBudget; left != nil {
			if issue, capped := issueUSDLeft(left); capped && (w.snap.Config.Budget.PerRun.USD <= 0 || issue < w.snap.Config.Budget.PerRun.USD) {
				out.err = fmt.Sprintf("budget.per_issue.usd reached: claude stopped at --max-budget-usd; the issue's runs cost $%s (this run $%s), the cap is $%s",
					usdText(left.Spent.USD+usd), usdText(usd), usdText(left.Caps.USD))
			}
		}
	}
	return out
}
