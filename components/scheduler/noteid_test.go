package scheduler

import (
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestIssueCapParkNotifiedOnce: a run stopped by a per-issue cap parks
// the issue and notifies; cleared by an operator without raising the cap,
// the issue is parked again before its next dispatch, with the same
// notification id: one occurrence (the issue at that cap after that run),
// delivered once.
func TestIssueCapParkNotifiedOnce(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		a.cfg.Config.Budget.PerIssue.USD = 5
		issue := iss("P-1", 1, "", "In Progress")
		a.running["P-1"] = &running{runID: "P-1-run", issue: issue}
		usd := 6.0
		a.onRunEvent(t.Context(), bus.RunEvent{RunID: "P-1-run", Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Status: bus.RunBudgetExceeded,
			Agent: bus.AgentClaude, Turn: 1, BudgetUSD: &usd, Error: "budget.per_issue.usd reached", BudgetCap: bus.CapIssueUSD, BudgetLimit: 5})
		first := <-a.notes.q
		a.releasePark(t.Context(), "P-1") // the operator clears it
		if _, _, ok := a.countIssueRun(t.Context(), issue, "P-1-next"); ok {
			t.Fatal("dispatched over the per-issue cap")
		}
		second := <-a.notes.q
		if first.Event != bus.NotifyBudgetExceeded || first.ID != second.ID {
			t.Errorf("notification ids %q (run end) and %q (re-park): want the same occurrence's id", first.ID, second.ID)
		}
	})
}
