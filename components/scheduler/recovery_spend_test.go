package scheduler

import (
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// storeTurns records n turns of the run, each of 1000 input and 100 output
// tokens at $5.
func storeTurns(t *testing.T, w *world, runID string, issue bus.Issue, n int) {
	t.Helper()
	for turn := 1; turn <= n; turn++ {
		usd := 5.0
		ev := bus.RunEvent{RunID: runID, Event: bus.RunTurnFinished, At: time.Now(), Issue: issue.Ref(), Turn: turn, Agent: bus.AgentClaude,
			Usage: &bus.Usage{InputTokens: 1000, OutputTokens: 100}, CostUSD: &usd, BudgetUSD: &usd}
		if err := runlog.Record(t.Context(), w.b, ev, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// putClaim stores a claim of the run.
func putClaim(t *testing.T, w *world, cl bus.Claim) {
	t.Helper()
	k, _ := bus.Claims.Key(cl.IssueID)
	if _, err := bus.Put(t.Context(), w.b, k, cl); err != nil {
		t.Fatal(err)
	}
}

// TestKilledRunSpendCounted: after a kill -9 the run in flight has no
// stored end, only its turns: recovery sums them into the issue's
// lifetime spend and the day, and into the invented end, once even when
// recovered twice.
func TestKilledRunSpendCounted(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		one := 1
		issue := iss("K-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "K-1-run", IssueID: "K-1", Identifier: "K-1", Attempt: &one, At: time.Now()}
		storeTurns(t, w, cl.RunID, issue, 2)
		putClaim(t, w, cl)
		newTestActor(w).interrupted(t.Context(), "K-1", cl)
		newTestActor(w).interrupted(t.Context(), "K-1", cl) // a second restart before the retry ran
		sp := storedSpend(t, w.b, "K-1")
		if sp.USD != 10 || sp.Tokens != 2200 || sp.Turns != 2 {
			t.Errorf("lifetime spend %+v: want $10, 2200 tokens, 2 turns (the two stored turns)", sp)
		}
		day := storedDay(t, w.b, "2000-01-01")
		if day.USD != 10 || day.Tokens != 2200 || day.Runs != 1 || day.Outcomes[bus.RunInterrupted] != 1 {
			t.Errorf("day %+v: want $10, 2200 tokens, one interrupted run", day)
		}
		ends := storedEnds(t, w.b, cl.RunID)
		if len(ends) == 0 || ends[0].BudgetUSD == nil || *ends[0].BudgetUSD != 10 || ends[0].Usage == nil || ends[0].Usage.InputTokens != 2000 {
			t.Errorf("recorded end %+v: want the stored turns' sum", ends)
		}
	})
}

// TestInterruptedEndSpendCounted: at a clean stop the agent runner stores
// the run's end as interrupted, with what it spent; recovery counts it
// before queueing the retry.
func TestInterruptedEndSpendCounted(t *testing.T) { storedEndCounted(t, bus.RunInterrupted) }

// TestCanceledEndSpendCounted: a canceled end stored before the restart is
// counted before its claim is released.
func TestCanceledEndSpendCounted(t *testing.T) { storedEndCounted(t, bus.RunCanceled) }

// storedEndCounted: recovery counts a stored end of the status.
func storedEndCounted(t *testing.T, status bus.RunStatus) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		one := 1
		issue := iss("G-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "G-1-run", IssueID: "G-1", Identifier: "G-1", Attempt: &one, At: time.Now()}
		storeTurns(t, w, cl.RunID, issue, 2)
		total := 10.0
		end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Attempt: &one, Status: status,
			Agent: bus.AgentClaude, Turn: 2, Usage: &bus.Usage{InputTokens: 2000, OutputTokens: 200}, CostUSD: &total, BudgetUSD: &total}
		if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
			t.Fatal(err)
		}
		putClaim(t, w, cl)
		newTestActor(w).interrupted(t.Context(), "G-1", cl)
		sp := storedSpend(t, w.b, "G-1")
		if sp.USD != 10 || sp.Tokens != 2200 || sp.Turns != 2 {
			t.Errorf("lifetime spend %+v: want the stored end's $10, 2200 tokens, 2 turns", sp)
		}
		day := storedDay(t, w.b, "2000-01-01")
		if day.USD != 10 || day.Tokens != 2200 || day.Runs != 1 || day.Outcomes[status] != 1 {
			t.Errorf("day %+v: want $10, 2200 tokens, one %s run", day, status)
		}
	})
}

// TestLostRunSpendCounted: a run the agent runner no longer has (it
// restarted) gets an invented end carrying its stored turns' sum, counted
// into the issue and the day.
func TestLostRunSpendCounted(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		issue := iss("L-1", 1, "", "In Progress")
		storeTurns(t, w, "L-1-run", issue, 3)
		a := newTestActor(w)
		r := &running{runID: "L-1-run", issue: issue}
		a.running["L-1"] = r
		a.runGone(t.Context(), r, "test")
		sp := storedSpend(t, w.b, "L-1")
		if sp.USD != 15 || sp.Tokens != 3300 || sp.Turns != 3 {
			t.Errorf("lifetime spend %+v: want $15, 3300 tokens, 3 turns (the stored turns)", sp)
		}
		if day := storedDay(t, w.b, "2000-01-01"); day.USD != 15 || day.Runs != 1 {
			t.Errorf("day %+v: want $15 and one run", day)
		}
	})
}

// TestQueuedRetryClaimSpendCounted: a claim whose run is gone while a
// retry of the issue is stored (its dispatch timed out after the runner
// had taken it) keeps the retry, and what the run spent counts.
func TestQueuedRetryClaimSpendCounted(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		issue := iss("Q-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "Q-1-run", IssueID: "Q-1", Identifier: "Q-1", At: time.Now()}
		storeTurns(t, w, cl.RunID, issue, 1)
		a := newTestActor(w)
		a.c.opts.killRun = func(string) error { return nil }
		a.retries["Q-1"] = bus.RetryEntry{IssueID: "Q-1", Identifier: "Q-1", Attempt: 1, DueAt: time.Now()}
		a.recoverClaim(t.Context(), "Q-1", cl, map[string]bus.Dispatch{})
		if sp := storedSpend(t, w.b, "Q-1"); sp.USD != 5 || sp.Turns != 1 {
			t.Errorf("lifetime spend %+v: want the stored turn's $5", sp)
		}
		if _, ok := a.retries["Q-1"]; !ok {
			t.Error("the stored retry was dropped")
		}
	})
}
