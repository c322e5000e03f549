package runlog

import (
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// The figure the budget counted (codex priced from the pricing table)
// reaches the summary: summed over the turns while the run is live,
// replaced by the run's total at its end, and kept when an end from a
// runner without budgets carries none.
func TestApplyFoldsTheBudgetCost(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := func(v float64) *float64 { return &v }
	var s bus.RunSummary
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunDispatched, At: at})
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunTurnFinished, At: at, Turn: 1, Usage: &bus.Usage{InputTokens: 10}, BudgetUSD: f(0.25)})
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunTurnFinished, At: at, Turn: 2, Usage: &bus.Usage{InputTokens: 10}, BudgetUSD: f(0.5)})
	if s.BudgetUSD == nil || *s.BudgetUSD != 0.75 || s.CostUSD != nil {
		t.Fatalf("after two priced turns: budget %v cost %v", s.BudgetUSD, s.CostUSD)
	}
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunFinished, At: at, Status: bus.RunSucceeded, BudgetUSD: f(0.8)})
	if s.BudgetUSD == nil || *s.BudgetUSD != 0.8 {
		t.Fatalf("run_finished's total: %v", s.BudgetUSD)
	}
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunFinished, At: at, Status: bus.RunSucceeded})
	if s.BudgetUSD == nil || *s.BudgetUSD != 0.8 {
		t.Fatalf("an end without a figure dropped it: %v", s.BudgetUSD)
	}
}

// A turn charged an estimate (stopped before the agent reported) marks
// the run's summary estimated, whether the turn's event or only the run's
// end says so; an ordinary run is not marked.
func TestApplyMarksAnEstimatedCharge(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := func(v float64) *float64 { return &v }
	var s bus.RunSummary
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunTurnFinished, At: at, Turn: 1, Usage: &bus.Usage{InputTokens: 10}, CostUSD: f(0.1), BudgetUSD: f(0.1)})
	if s.BudgetEstimated {
		t.Fatal("a reported turn marked the run estimated")
	}
	Apply(&s, bus.RunEvent{RunID: "r1", Event: bus.RunTurnFinished, At: at, Turn: 2, Usage: &bus.Usage{InputTokens: 10}, BudgetUSD: f(2), BudgetEstimated: true})
	if !s.BudgetEstimated {
		t.Fatal("a turn charged an estimate did not mark the run")
	}
	var end bus.RunSummary
	Apply(&end, bus.RunEvent{RunID: "r2", Event: bus.RunFinished, At: at, Status: bus.RunTimedOut, BudgetUSD: f(2), BudgetEstimated: true})
	if !end.BudgetEstimated {
		t.Fatal("the run's end alone did not mark it")
	}
}
