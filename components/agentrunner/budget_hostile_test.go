package agentrunner

import (
	"math"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// costRun runs the cost-env fake claude (each turn reports the cost and
// input tokens env says) under caps and returns the run's end and the
// --max-budget-usd of each turn.
func costRun(t *testing.T, caps bus.BudgetCaps, env ...string) (bus.RunEvent, []string) {
	t.Helper()
	h := newHarness(t, "cost-env", func(c *bus.Config) { c.Budget.PerRun = caps; c.Agent.MaxTurns = 4 }, env...)
	h.dispatch("run-hostile")
	end, all := h.finished()
	var flags []string
	for _, e := range all {
		if e.Event == bus.RunTurnStarted {
			flags = append(flags, flagValue(e.Command, "--max-budget-usd"))
		}
		if e.Event == bus.RunTurnFinished && e.Usage != nil {
			if u := *e.Usage; u.InputTokens < 0 || u.OutputTokens < 0 || (e.CostUSD != nil && *e.CostUSD < 0) || (e.BudgetUSD != nil && *e.BudgetUSD < 0) {
				t.Errorf("turn %d recorded negative figures: usage %+v cost %v budget %v", e.Turn, u, e.CostUSD, e.BudgetUSD)
			}
		}
	}
	return end, flags
}

// TestNegativeCostIsNone: a turn reporting a negative cost is charged
// nothing, not credited: the next turn's --max-budget-usd is not widened
// past the cap, and the run's cost is what the other turns reported.
func TestNegativeCostIsNone(t *testing.T) {
	end, flags := costRun(t, bus.BudgetCaps{USD: 1}, "COST1=-5", "COST2=0.9", "TOK1=10", "TOK2=10")
	if len(flags) < 2 || flags[1] != "1" {
		t.Errorf("--max-budget-usd per turn %q: the second must be 1 (a negative cost is none), not wider", flags)
	}
	if end.Status != bus.RunBudgetExceeded || end.BudgetUSD == nil || *end.BudgetUSD < 0.9 {
		t.Errorf("end %s %q budget %v: the second turn's $0.9 plus the third's reach the $1 cap", end.Status, end.Error, end.BudgetUSD)
	}
}

// TestNegativeTokensAreNone: negative tokens on one turn do not cancel an
// earlier turn's: 995 tokens, then 5 more (and -900 input) reach a
// 1000-token cap after the second turn.
func TestNegativeTokensAreNone(t *testing.T) {
	end, _ := costRun(t, bus.BudgetCaps{Tokens: 1000}, "COST1=0", "COST2=0", "TOK1=990", "TOK2=-900")
	if end.Status != bus.RunBudgetExceeded || end.Turn != 2 || end.Usage == nil || end.Usage.InputTokens != 990 {
		t.Errorf("end %s %q turn %d usage %+v: want budget_exceeded after turn 2 with the 990 input tokens kept", end.Status, end.Error, end.Turn, end.Usage)
	}
}

// TestTokenSumSaturates: a count near the int64 limit saturates the run's
// sum instead of wrapping it negative under the cap.
func TestTokenSumSaturates(t *testing.T) {
	end, _ := costRun(t, bus.BudgetCaps{Tokens: 1000}, "COST1=0", "COST2=0", "TOK1=9223372036854775806", "TOK2=10")
	if end.Status != bus.RunBudgetExceeded || end.Turn != 1 || end.Usage == nil || end.Usage.InputTokens < 0 {
		t.Errorf("end %s %q turn %d usage %+v: want budget_exceeded after turn 1", end.Status, end.Error, end.Turn, end.Usage)
	}
}

// TestHugeCostIsBounded: a cost above MaxTurnUSD counts as MaxTurnUSD.
func TestHugeCostIsBounded(t *testing.T) {
	evs, err := parseClaudeLine([]byte(`{"type":"result","is_error":false,"total_cost_usd":1e300,"usage":{"input_tokens":-5,"output_tokens":3,"cache_read_input_tokens":-9223372036854775808}}`))
	if err != nil || len(evs) != 1 || evs[0].Result == nil {
		t.Fatalf("%v %+v", err, evs)
	}
	r := evs[0].Result
	if r.CostUSD == nil || *r.CostUSD != MaxTurnUSD || r.Usage != (bus.Usage{OutputTokens: 3}) {
		t.Errorf("cost %v usage %+v: want the cost bounded and negative counts read as none", r.CostUSD, r.Usage)
	}
}

// TestUsageAddSaturates: bus.Usage.Add and BudgetTokens neither wrap nor
// let a negative count subtract.
func TestUsageAddSaturates(t *testing.T) {
	u := bus.Usage{InputTokens: math.MaxInt64 - 1}.Add(bus.Usage{InputTokens: 10, OutputTokens: -7})
	if u.InputTokens != math.MaxInt64 || u.OutputTokens != 0 {
		t.Errorf("Add: %+v", u)
	}
	all := bus.Usage{InputTokens: math.MaxInt64, OutputTokens: math.MaxInt64, CacheReadInputTokens: -1}
	if got := all.BudgetTokens(bus.AgentClaude); got != math.MaxInt64 {
		t.Errorf("BudgetTokens: %d", got)
	}
}
