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
	return overRunCaps(cfg.Budget.PerRun, w.usage.BudgetTokens(cfg.Agent.Kind), usd, priced)
}

// remainingUSD is what --max-budget-usd gets for the next claude turn: the
// per-run USD cap minus the run's cost so far, rounded down to the
// micro-dollar; "" without a USD cap.
func (w *run) remainingUSD() string {
	limit := w.snap.Config.Budget.PerRun.USD
	if limit <= 0 {
		return ""
	}
	spent, _ := w.spentUSD()
	// Rounded down, but not for the float error of the subtraction
	// (0.0025-0.002 is 0.00049999…): a thousandth of a micro-dollar.
	left := math.Floor((limit-spent)*1e6+1e-3) / 1e6
	return strconv.FormatFloat(max(left, minUSD), 'f', -1, 64)
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
	}
	return out
}
