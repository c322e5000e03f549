package main

import (
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// A codex run has no cost of its own: the table shows the figure the
// budget priced, marked as priced; a run that reached a cap shows its
// status and, under the table, the cap and the amounts.
func TestRunsTableShowsPricedCostAndBudgetExceeded(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	end := start.Add(90 * time.Second)
	own, priced := 0.25, 0.0123
	list := []*bus.RunSummary{
		{RunID: "run-b", Issue: bus.IssueRef{Identifier: "BBB-2"}, Status: bus.RunBudgetExceeded, Started: start, Ended: &end, Turns: 3,
			BudgetUSD: &priced, Error: "budget.per_issue.usd reached: the issue's runs cost $1.1 (this run $0.5), the cap is $1"},
		{RunID: "run-a", Issue: bus.IssueRef{Identifier: "AAA-1"}, Status: bus.RunSucceeded, Started: start, Ended: &end, CostUSD: &own, BudgetUSD: &own},
		{RunID: "run-c", Issue: bus.IssueRef{Identifier: "CCC-3"}, Status: bus.RunFailed, Started: start, Ended: &end},
	}
	var out strings.Builder
	if err := writeRunsTable(&out, list); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], "budget_exceeded") || !strings.Contains(lines[1], "$0.0123 (priced)") {
		t.Errorf("codex run over its cap: %q", lines[1])
	}
	if !strings.Contains(lines[2], "$0.2500") || strings.Contains(lines[2], "priced") {
		t.Errorf("claude run with its own cost: %q", lines[2])
	}
	counted := 2.25
	var est strings.Builder
	if err := writeRunsTable(&est, []*bus.RunSummary{{RunID: "run-e", Issue: bus.IssueRef{Identifier: "EEE-5"}, Status: bus.RunTimedOut,
		Started: start, Ended: &end, CostUSD: &own, BudgetUSD: &counted, BudgetEstimated: true}}); err != nil {
		t.Fatal(err)
	}
	if l := strings.Split(est.String(), "\n")[1]; !strings.Contains(l, "$2.2500 (estimated)") {
		t.Errorf("a run charged an estimate: %q", l)
	}
	if !strings.Contains(lines[3], "unknown") {
		t.Errorf("run without a cost: %q", lines[3])
	}
	if !strings.Contains(out.String(), "Budget exceeded") || !strings.Contains(out.String(), "run-b BBB-2: budget.per_issue.usd reached: the issue's runs cost $1.1") {
		t.Errorf("no account of the cap under the table:\n%s", out.String())
	}
}

// `symphony replay --print` shows a run's end with its cost, the priced
// figure marked when the agent reported none.
func TestReplayLineShowsThePricedCost(t *testing.T) {
	priced := 0.0123
	line := transcriptLine(runlog.Event{Stream: bus.StreamRuns, At: time.Now(), Run: &bus.RunEvent{RunID: "r", Event: bus.RunFinished,
		Status: bus.RunBudgetExceeded, BudgetUSD: &priced, Error: "budget.per_run.tokens reached"}}, false)
	if !strings.Contains(line, "run run_finished budget_exceeded cost $0.0123 (priced): budget.per_run.tokens reached") {
		t.Errorf("replay line: %q", line)
	}
}
