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
//     every turn: claude reports its cost only in its result, so mid-turn
//     the CLI's own limit is the USD one (its result is then the error
//     subtype claudeBudgetSubtype); its assistant messages carry their
//     token usage as they stream, so the turn is stopped, as a cancel
//     stops it, once those tokens reach a token cap (run.overStreamed);
//   - a claude turn that ends without its result line (timed out,
//     stalled, canceled, stopped at a cap, crashed) is charged an
//     estimate (claudeEstimate): the tokens its messages streamed, and
//     those tokens at the pricing table's price for its model, else the
//     whole --max-budget-usd it was given; the turn's and the run's ends
//     say so (bus.RunEvent.BudgetEstimated);
//   - codex reports the thread's absolute totals during the turn
//     (thread/tokenUsage/updated): the turn is stopped, by the cancel
//     path, as soon as they reach a cap (codexSession.await);
//   - after every turn the run's spend is checked: at a cap the run ends,
//     without a continuation.
//
// The issue's lifetime caps (budget.per_issue) and the fleet's daily caps
// (budget.per_day) are enforced the same way: the scheduler puts the caps
// and what the issue's earlier runs, and today's turns, had spent into the
// dispatch (bus.Dispatch.IssueBudget, DayBudget), and every check above
// takes the tightest of what remains of the per-run, the issue's and the
// day's caps (overCaps; --max-budget-usd gets the smallest remainder; the
// turn loop stops at the issue's remaining turns, and the scheduler parks
// the issue before its next dispatch). The day's remainder is the one at
// the dispatch: runs in flight together each see it whole, and the
// scheduler stops them all when a turn's end takes the day over its cap.
//
// Either way the run ends budget_exceeded with the cap and the amounts in
// its error, and the cap's key on its end (bus.RunEvent.BudgetCap). What the agent spent after its last report is not seen: the
// spend can exceed a cap by what one report interval costs (codex's
// totals; claude's streamed messages, whose output counts lag), plus
// --max-budget-usd's own overshoot (claude finishes the model call that
// passes it). The agent's figures are read clamped (bounds.go: no
// negative count or cost, a turn's cost at most MaxTurnUSD) and codex's
// totals only grow (highWater).

// claudeBudgetSubtype is the result subtype of a claude turn that
// --max-budget-usd stopped.
const claudeBudgetSubtype = "error_max_budget_usd"

// minUSD is the smallest amount a USD cap is counted in: less than a
// micro-dollar left is none left (--max-budget-usd gets whole
// micro-dollars, rounded down, so claude is never allowed more than
// remains).
const minUSD = 1e-6

// capHit is a cap a run's spend reached: its key (bus.Cap*), its value,
// the calendar day of a daily cap, and the account with the amounts (the
// run's error). The run's end carries the key, the value and the day
// (bus.RunEvent.BudgetCap), so its park says which cap made it.
type capHit struct {
	cap   string
	limit float64
	day   string
	why   string
}

// spend is what a run used so far: tokens (bus.Usage.BudgetTokens) and
// usd, priced when it has a figure at all.
type spend struct {
	tokens int64
	usd    float64
	priced bool
}

// overRunCaps says whether a run's spend reached a per-run cap.
func overRunCaps(caps bus.BudgetCaps, sp spend) (capHit, bool) {
	if caps.Tokens > 0 && sp.tokens >= caps.Tokens {
		return capHit{cap: bus.CapRunTokens, limit: float64(caps.Tokens),
			why: fmt.Sprintf("budget.per_run.tokens reached: the run used %d tokens, the cap is %d", sp.tokens, caps.Tokens)}, true
	}
	if caps.USD > 0 && sp.priced && caps.USD-sp.usd < minUSD {
		return capHit{cap: bus.CapRunUSD, limit: caps.USD,
			why: fmt.Sprintf("budget.per_run.usd reached: the run cost $%s, the cap is $%s", usdText(sp.usd), usdText(caps.USD))}, true
	}
	return capHit{}, false
}

// overIssueCaps says whether a run's spend carries the issue past a
// lifetime cap (budget.per_issue), given what its earlier runs spent; nil
// left: no per-issue cap.
func overIssueCaps(left *bus.IssueBudgetLeft, sp spend) (capHit, bool) {
	if left == nil {
		return capHit{}, false
	}
	caps, spent := left.Caps, left.Spent
	if caps.Tokens > 0 && spent.Tokens+sp.tokens >= caps.Tokens {
		return capHit{cap: bus.CapIssueTokens, limit: float64(caps.Tokens),
			why: fmt.Sprintf("budget.per_issue.tokens reached: the issue's runs used %d tokens (this run %d), the cap is %d",
				spent.Tokens+sp.tokens, sp.tokens, caps.Tokens)}, true
	}
	if caps.USD > 0 && sp.priced && caps.USD-(spent.USD+sp.usd) < minUSD {
		return capHit{cap: bus.CapIssueUSD, limit: caps.USD,
			why: fmt.Sprintf("budget.per_issue.usd reached: the issue's runs cost $%s (this run $%s), the cap is $%s",
				usdText(spent.USD+sp.usd), usdText(sp.usd), usdText(caps.USD))}, true
	}
	return capHit{}, false
}

// overDayCaps says whether a run's spend carries the fleet past a daily
// cap (budget.per_day), given what today's turns had spent when the run
// was dispatched; nil left: no daily cap. Other runs' spend since the
// dispatch is not seen here: the scheduler stops the runs in flight when
// a turn's end takes the day over its cap.
func overDayCaps(left *bus.DayBudgetLeft, sp spend) (capHit, bool) {
	if left == nil {
		return capHit{}, false
	}
	caps := left.Caps
	if caps.Tokens > 0 && left.Tokens+sp.tokens >= caps.Tokens {
		return capHit{cap: bus.CapDayTokens, limit: float64(caps.Tokens), day: left.Day,
			why: fmt.Sprintf("budget.per_day.tokens reached: the fleet's turns on %s used %d tokens (this run %d), the cap is %d",
				left.Day, left.Tokens+sp.tokens, sp.tokens, caps.Tokens)}, true
	}
	if caps.USD > 0 && sp.priced && caps.USD-(left.USD+sp.usd) < minUSD {
		return capHit{cap: bus.CapDayUSD, limit: caps.USD, day: left.Day,
			why: fmt.Sprintf("budget.per_day.usd reached: the fleet's turns on %s cost $%s (this run $%s), the cap is $%s",
				left.Day, usdText(left.USD+sp.usd), usdText(sp.usd), usdText(caps.USD))}, true
	}
	return capHit{}, false
}

// overCaps checks a run's spend against its per-run caps, then against
// what remains of its issue's lifetime caps, then of the fleet's day.
func overCaps(caps bus.BudgetCaps, issue *bus.IssueBudgetLeft, day *bus.DayBudgetLeft, sp spend) (capHit, bool) {
	if hit, over := overRunCaps(caps, sp); over {
		return hit, true
	}
	if hit, over := overIssueCaps(issue, sp); over {
		return hit, true
	}
	return overDayCaps(day, sp)
}

// issueUSDLeft is what remains of the issue's lifetime USD cap before the
// run (ok false without one).
func issueUSDLeft(left *bus.IssueBudgetLeft) (float64, bool) {
	if left == nil || left.Caps.USD <= 0 {
		return 0, false
	}
	return left.Caps.USD - left.Spent.USD, true
}

// dayUSDLeft is what remained of the fleet's daily USD cap when the run
// was dispatched (ok false without one).
func dayUSDLeft(left *bus.DayBudgetLeft) (float64, bool) {
	if left == nil || left.Caps.USD <= 0 {
		return 0, false
	}
	return left.Caps.USD - left.USD, true
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
	case w.cost != nil || w.estUSDSet:
		// claude's reported costs, and the dollars charged for its turns
		// that reported none (chargeEstimate).
		if w.cost != nil {
			usd = *w.cost
		}
		return usd + w.estUSD, true
	case w.priced != nil:
		return *w.priced, true
	}
	return 0, false
}

// overStreamed checks the run's spend, with a claude turn's streamed
// tokens so far added, against every token cap: claude reports its
// result's usage only at the turn's end, but its assistant messages carry
// their usage as they stream, so a turn is stopped once they reach a cap
// (dollars mid-turn are --max-budget-usd's to stop).
func (w *run) overStreamed(streamed bus.Usage) (capHit, bool) {
	sp := w.spend()
	sp.tokens = bus.SatAdd(sp.tokens, streamed.BudgetTokens(w.snap.Config.Agent.Kind))
	sp.priced = false
	return overCaps(w.snap.Config.Budget.PerRun, w.d.IssueBudget, w.d.DayBudget, sp)
}

// spend is the run's spend so far.
func (w *run) spend() spend {
	usd, priced := w.spentUSD()
	return spend{tokens: w.usage.BudgetTokens(w.snap.Config.Agent.Kind), usd: usd, priced: priced}
}

// overBudget checks the run's spend so far against every cap it has.
func (w *run) overBudget() (capHit, bool) {
	return overCaps(w.snap.Config.Budget.PerRun, w.d.IssueBudget, w.d.DayBudget, w.spend())
}

// remainingUSD is what --max-budget-usd gets for the next claude turn: the
// tightest of the per-run USD cap, what remained of the issue's and what
// remained of the day's, minus the run's cost so far, rounded down to the
// micro-dollar; "" without a USD cap.
func (w *run) remainingUSD() string {
	limit, ok := w.usdLimit()
	if !ok {
		return ""
	}
	spent, _ := w.spentUSD()
	// Rounded down, but not for the float error of the subtraction
	// (0.0025-0.002 is 0.00049999…): a thousandth of a micro-dollar.
	left := math.Floor((limit.amount-spent)*1e6+1e-3) / 1e6
	return strconv.FormatFloat(max(left, minUSD), 'f', -1, 64)
}

// usdBound is the most a run may cost and the cap that says so.
type usdBound struct {
	amount float64
	cap    string
}

// usdLimit is the most the run may cost: the per-run USD cap, what
// remained of the issue's or of the day's, whichever is smallest; ok
// false without any.
func (w *run) usdLimit() (usdBound, bool) {
	var b usdBound
	ok := false
	take := func(amount float64, cap string, set bool) {
		if set && (!ok || amount < b.amount) {
			b, ok = usdBound{amount: amount, cap: cap}, true
		}
	}
	run := w.snap.Config.Budget.PerRun.USD
	take(run, bus.CapRunUSD, run > 0)
	issue, capped := issueUSDLeft(w.d.IssueBudget)
	take(issue, bus.CapIssueUSD, capped)
	day, capped := dayUSDLeft(w.d.DayBudget)
	take(day, bus.CapDayUSD, capped)
	return b, ok
}

// budgetEnd turns a turn's end into budget_exceeded when the run's spend
// reached a cap: after a turn that succeeded or failed (a claude turn
// stopped by --max-budget-usd fails with claudeBudgetSubtype), not after
// a cancel, a stall or a shutdown, whose reason stands. A turn codex
// stopped mid-turn comes with its hit already.
func (w *run) budgetEnd(out turnOutcome) turnOutcome {
	if out.status == bus.RunBudgetExceeded && out.hit != nil {
		w.hit = out.hit
		return out
	}
	if out.status != bus.RunSucceeded && out.status != bus.RunFailed {
		return out
	}
	if hit, over := w.overBudget(); over {
		out.status, out.err, out.hit, w.hit = bus.RunBudgetExceeded, hit.why, &hit, &hit
		return out
	}
	if out.status == bus.RunFailed && out.result != nil && out.result.Subtype == claudeBudgetSubtype {
		hit := w.claudeBudgetHit()
		out.status, out.err, out.hit, w.hit = bus.RunBudgetExceeded, hit.why, &hit, &hit
	}
	return out
}

// claudeBudgetHit names the cap of a claude turn --max-budget-usd
// stopped: the one whose remainder the flag was given.
func (w *run) claudeBudgetHit() capHit {
	usd, _ := w.spentUSD()
	bound, _ := w.usdLimit()
	switch bound.cap {
	case bus.CapIssueUSD:
		left := w.d.IssueBudget
		return capHit{cap: bus.CapIssueUSD, limit: left.Caps.USD,
			why: fmt.Sprintf("budget.per_issue.usd reached: claude stopped at --max-budget-usd; the issue's runs cost $%s (this run $%s), the cap is $%s",
				usdText(left.Spent.USD+usd), usdText(usd), usdText(left.Caps.USD))}
	case bus.CapDayUSD:
		left := w.d.DayBudget
		return capHit{cap: bus.CapDayUSD, limit: left.Caps.USD, day: left.Day,
			why: fmt.Sprintf("budget.per_day.usd reached: claude stopped at --max-budget-usd; the fleet's turns on %s cost $%s (this run $%s), the cap is $%s",
				left.Day, usdText(left.USD+usd), usdText(usd), usdText(left.Caps.USD))}
	}
	return capHit{cap: bus.CapRunUSD, limit: w.snap.Config.Budget.PerRun.USD,
		why: fmt.Sprintf("budget.per_run.usd reached: claude stopped at --max-budget-usd; the run cost $%s, the cap is $%s",
			usdText(usd), usdText(w.snap.Config.Budget.PerRun.USD))}
}

// endHit is the cap a run that ends with status was ended by: its own
// check's, else a budget_exceeded cancel's; nil for any other end.
func (w *run) endHit(status bus.RunStatus) *capHit {
	if status != bus.RunBudgetExceeded {
		return nil
	}
	if w.hit != nil {
		return w.hit
	}
	return w.cancelHit.Load()
}
