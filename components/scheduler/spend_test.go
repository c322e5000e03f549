package scheduler

import (
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// runSpend is what a fake run's end reports: tokens (input), cost (usd <
// 0: none, an unpriced run) and turns.
type runSpend struct {
	tokens int64
	usd    float64
	turns  int
}

// storedSpend is the issue's lifetime spend in KV (zero: none).
func storedSpend(t *testing.T, b *bus.Bus, id string) bus.IssueSpend {
	t.Helper()
	k, _ := bus.IssueSpends.Key(id)
	e, err := bus.Get(t.Context(), b, k)
	if err != nil {
		return bus.IssueSpend{}
	}
	return e.Value
}

// TestIssueBudgetParksAtALifetimeCap: each per_issue cap, counted over the
// issue's runs, lets the runs through while the spend stays under it, each
// dispatch carrying the caps and the spend so far, and parks the issue
// before the dispatch after the spend reached it, the cap and the amounts
// in the reason. The run cap counts dispatches and does not reset, unlike
// agent.max_runs_per_issue: a cleared park parks again.
func TestIssueBudgetParksAtALifetimeCap(t *testing.T) {
	for _, c := range []struct {
		name   string
		caps   bus.IssueBudget
		spend  runSpend
		runs   int
		reason string
	}{
		{"runs", bus.IssueBudget{Runs: 2}, runSpend{usd: -1}, 2, "budget.per_issue.runs reached: the issue had 2 runs, the cap is 2"},
		{"tokens", bus.IssueBudget{BudgetCaps: bus.BudgetCaps{Tokens: 1000}}, runSpend{tokens: 400, usd: -1}, 3,
			"budget.per_issue.tokens reached: the issue's runs used 1200 tokens, the cap is 1000"},
		{"usd", bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 1}}, runSpend{usd: 0.3}, 4,
			"budget.per_issue.usd reached: the issue's runs cost $1.2, the cap is $1"},
		{"turns", bus.IssueBudget{Turns: 5}, runSpend{turns: 2, usd: -1}, 3,
			"budget.per_issue.turns reached: the issue's runs had 6 turns, the cap is 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				w := newBubbleWorld(t, t.TempDir(), iss("P-1", 1, "", "Todo"))
				w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunSucceeded }
				w.spend = func(bus.Dispatch) runSpend { return c.spend }
				w.configure(func(cfg *bus.Config) { cfg.Agent.MaxRunsPerIssue = 50; cfg.Budget.PerIssue = c.caps })
				w.pollUntil("first run", func() bool { return len(w.dispatches) >= 1 })
				w.eventually("parked", func() bool {
					_, ok := storedBlock(t, w.b, "P-1")
					return ok
				})
				bl, _ := storedBlock(t, w.b, "P-1")
				if bl.Reason != "budget exceeded: "+c.reason {
					t.Errorf("reason %q, want %q", bl.Reason, "budget exceeded: "+c.reason)
				}
				w.mu.Lock()
				ds := append([]bus.Dispatch(nil), w.dispatches...)
				w.mu.Unlock()
				if len(ds) != c.runs {
					t.Fatalf("%d runs before the park, want %d", len(ds), c.runs)
				}
				for i, d := range ds {
					want := bus.IssueSpend{Runs: i, Tokens: c.spend.tokens * int64(i), Turns: c.spend.turns * i, USD: max(c.spend.usd, 0) * float64(i)}
					got := d.IssueBudget
					if got == nil || got.Caps != c.caps || got.Spent.Runs != want.Runs || got.Spent.Tokens != want.Tokens ||
						got.Spent.Turns != want.Turns || got.Spent.USD-want.USD > 1e-9 || want.USD-got.Spent.USD > 1e-9 {
						t.Errorf("dispatch %d carries %+v, want caps %+v and spent %+v", i+1, got, c.caps, want)
					}
				}
				if bl.RunID != ds[len(ds)-1].RunID {
					t.Errorf("parked by run %q, want the last, %q", bl.RunID, ds[len(ds)-1].RunID)
				}
				// Clearing the park does not reset the lifetime spend.
				if res := w.control(bus.Control{Action: bus.ControlClearBlocked, IssueID: "P-1"}); res.Message != "issue P-1 unblocked" {
					t.Fatalf("clear: %+v", res)
				}
				w.eventually("parked again", func() bool {
					_, ok := storedBlock(t, w.b, "P-1")
					return ok
				})
				if got := w.dispatchCount(); got != c.runs {
					t.Errorf("%d dispatches after the clear: the lifetime cap must hold", got)
				}
			})
		})
	}
}

// TestIssueSpendSurvivesARestart: the lifetime spend is in KV: a
// scheduler restarted on the same store dispatches with what the runs
// before it spent, and parks at the cap counted across both. The fake
// runner records no run summaries at all (as if every run were pruned):
// the count does not come from them.
func TestIssueSpendSurvivesARestart(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		dir := t.TempDir()
		caps := bus.IssueBudget{BudgetCaps: bus.BudgetCaps{Tokens: 1000}}
		w := newBubbleWorld(t, dir, iss("S-1", 1, "", "Todo"))
		w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunSucceeded }
		w.spend = func(bus.Dispatch) runSpend { return runSpend{tokens: 400, usd: -1, turns: 1} }
		w.configure(func(cfg *bus.Config) { cfg.Budget.PerIssue = caps })
		w.pollUntil("first run", func() bool { return len(w.dispatches) >= 1 })
		w.eventually("first run counted", func() bool { return storedSpend(t, w.b, "S-1").Tokens == 400 })
		if sums, _ := bus.All(t.Context(), w.b, bus.RunSummaries); len(sums) != 0 {
			t.Fatalf("the fake runner stored summaries: %v", sums)
		}
		w.stop() // its continuation is queued in KV

		w2 := newBubbleWorld(t, dir, iss("S-1", 1, "", "Todo"))
		w2.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunSucceeded }
		w2.spend = func(bus.Dispatch) runSpend { return runSpend{tokens: 400, usd: -1, turns: 1} }
		w2.configure(func(cfg *bus.Config) { cfg.Budget.PerIssue = caps })
		w2.eventually("re-dispatched", func() bool { return len(w2.dispatches) >= 1 })
		w2.mu.Lock()
		d := w2.dispatches[0]
		w2.mu.Unlock()
		if d.IssueBudget == nil || d.IssueBudget.Spent.Runs != 1 || d.IssueBudget.Spent.Tokens != 400 {
			t.Errorf("the dispatch after the restart carries %+v, want 1 run and 400 tokens spent before it", d.IssueBudget)
		}
		w2.eventually("parked", func() bool {
			_, ok := storedBlock(t, w2.b, "S-1")
			return ok
		})
		if sp := storedSpend(t, w2.b, "S-1"); sp.Runs != 3 || sp.Tokens != 1200 || sp.Turns != 3 {
			t.Errorf("spend %+v, want 3 runs, 1200 tokens, 3 turns", sp)
		}
	})
}

// TestStoredEndCountedOnce: a run's end handled again — a restart's
// recovery of a claim whose end the scheduler before it had already
// counted — is not added to the issue's spend twice.
func TestStoredEndCountedOnce(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		one, usd := 1, 0.25
		issue := iss("D-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "D-1-run", IssueID: "D-1", Identifier: "D-1", Attempt: &one, At: time.Now()}
		end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Attempt: &one, Status: bus.RunSucceeded,
			Agent: bus.AgentClaude, Turn: 3, Usage: &bus.Usage{InputTokens: 100, CacheReadInputTokens: 50, OutputTokens: 10}, BudgetUSD: &usd}
		if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
			t.Fatal(err)
		}
		k, _ := bus.Claims.Key("D-1")
		for i := range 2 { // two schedulers in turn, each recovering the claim
			if _, err := bus.Put(t.Context(), w.b, k, cl); err != nil {
				t.Fatal(err)
			}
			newTestActor(w).interrupted(t.Context(), "D-1", cl)
			sp := storedSpend(t, w.b, "D-1")
			if sp.Tokens != 160 || sp.Turns != 3 || sp.USD != 0.25 || len(sp.Counted) != 1 {
				t.Errorf("after recovery %d: spend %+v, want the run counted once (160 tokens, 3 turns, $0.25)", i+1, sp)
			}
		}
	})
}

// TestCountedRunsBounded: the ids kept against double counting stay
// bounded however many runs an issue has.
func TestCountedRunsBounded(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		ref := bus.IssueRef{ID: "C-1", Identifier: "C-1"}
		for i := range bus.MaxCountedRuns + 5 {
			a.countSpend(t.Context(), ref, bus.RunEvent{RunID: "C-1-" + strings.Repeat("x", i), Turn: 1})
		}
		sp := storedSpend(t, w.b, "C-1")
		if len(sp.Counted) != bus.MaxCountedRuns || sp.Turns != bus.MaxCountedRuns+5 {
			t.Errorf("%d ids kept, %d turns: want %d ids, %d turns", len(sp.Counted), sp.Turns, bus.MaxCountedRuns, bus.MaxCountedRuns+5)
		}
	})
}
