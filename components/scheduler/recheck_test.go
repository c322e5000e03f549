package scheduler

import (
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// putKV stores v under k, failing the test on an error.
func putKV[T any](t *testing.T, b *bus.Bus, k bus.Key[T], v T) {
	t.Helper()
	if _, err := bus.Put(t.Context(), b, k, v); err != nil {
		t.Fatal(err)
	}
}

// TestReloadReleasesParksItsCapsNoLongerHold: an issue parked by a cap
// (stored before the scheduler starts, as a restart finds it) is released
// by a reload that raises that cap above what parked it — for a per-issue
// cap above the issue's stored spend, for a daily cap above today's spend,
// for a per-run cap and agent.max_runs_per_issue above the value — or
// removes it, and is dispatched at the next tick; a reload that leaves the
// cap where it was, or raises it but not above the spend, keeps the park.
// A park without a cap (the agent asked for a human) is never released by
// a reload.
func TestReloadReleasesParksItsCapsNoLongerHold(t *testing.T) {
	type setup struct {
		cap   string
		limit float64
		spend bus.IssueSpend
		day   bus.DaySpend
		start func(*bus.Config)
		keep  func(*bus.Config)
		raise func(*bus.Config)
	}
	cases := map[string]setup{
		"per_run usd": {cap: bus.CapRunUSD, limit: 1,
			start: func(c *bus.Config) { c.Budget.PerRun.USD = 1 }, keep: func(c *bus.Config) { c.Budget.PerRun.USD = 0.5 },
			raise: func(c *bus.Config) { c.Budget.PerRun.USD = 1.5 }},
		"per_run tokens removed": {cap: bus.CapRunTokens, limit: 100,
			start: func(c *bus.Config) { c.Budget.PerRun.Tokens = 100 }, keep: func(c *bus.Config) { c.Budget.PerRun.Tokens = 100 },
			raise: func(c *bus.Config) { c.Budget.PerRun.Tokens = 0 }},
		"per_issue usd": {cap: bus.CapIssueUSD, limit: 1, spend: bus.IssueSpend{USD: 1.2},
			start: func(c *bus.Config) { c.Budget.PerIssue.USD = 1 }, keep: func(c *bus.Config) { c.Budget.PerIssue.USD = 1.2 },
			raise: func(c *bus.Config) { c.Budget.PerIssue.USD = 2 }},
		"per_issue tokens": {cap: bus.CapIssueTokens, limit: 1000, spend: bus.IssueSpend{Tokens: 1500},
			start: func(c *bus.Config) { c.Budget.PerIssue.Tokens = 1000 }, keep: func(c *bus.Config) { c.Budget.PerIssue.Tokens = 1400 },
			raise: func(c *bus.Config) { c.Budget.PerIssue.Tokens = 2000 }},
		"per_issue runs": {cap: bus.CapIssueRuns, limit: 3, spend: bus.IssueSpend{Runs: 3},
			start: func(c *bus.Config) { c.Budget.PerIssue.Runs = 3 }, keep: func(c *bus.Config) { c.Budget.PerIssue.Runs = 3 },
			raise: func(c *bus.Config) { c.Budget.PerIssue.Runs = 4 }},
		"per_issue turns": {cap: bus.CapIssueTurns, limit: 10, spend: bus.IssueSpend{Turns: 12},
			start: func(c *bus.Config) { c.Budget.PerIssue.Turns = 10 }, keep: func(c *bus.Config) { c.Budget.PerIssue.Turns = 12 },
			raise: func(c *bus.Config) { c.Budget.PerIssue.Turns = 13 }},
		"per_day usd": {cap: bus.CapDayUSD, limit: 5, day: bus.DaySpend{USD: 5.5},
			start: func(c *bus.Config) { c.Budget.PerDay.USD = 5 }, keep: func(c *bus.Config) { c.Budget.PerDay.USD = 5.5 },
			raise: func(c *bus.Config) { c.Budget.PerDay.USD = 10 }},
		"per_day tokens": {cap: bus.CapDayTokens, limit: 100, day: bus.DaySpend{Tokens: 120},
			start: func(c *bus.Config) { c.Budget.PerDay.Tokens = 100 }, keep: func(c *bus.Config) { c.Budget.PerDay.Tokens = 110 },
			raise: func(c *bus.Config) { c.Budget.PerDay.Tokens = 0 }},
		"max runs": {cap: bus.CapMaxRuns, limit: 3,
			start: func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 3 }, keep: func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 3 },
			raise: func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 5 }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				w := newBubbleWorld(t, t.TempDir(), iss("K-1", 1, "", "Todo"), iss("H-1", 2, "", "Todo"))
				const today = "2000-01-01"
				park := bus.BlockedEntry{IssueID: "K-1", Identifier: "K-1", State: "Todo", RunID: "K-1-old", Reason: "budget exceeded: …", At: time.Now(),
					Cap: c.cap, Limit: c.limit}
				if strings.HasPrefix(c.cap, "budget.per_day") {
					park.Day = today
				}
				k, _ := bus.Blocks.Key("K-1")
				putKV(t, w.b, k, park)
				human, _ := bus.Blocks.Key("H-1")
				putKV(t, w.b, human, bus.BlockedEntry{IssueID: "H-1", Identifier: "H-1", State: "Todo", Reason: "the agent asked for a human", At: time.Now()})
				sk, _ := bus.IssueSpends.Key("K-1")
				c.spend.IssueID = "K-1"
				putKV(t, w.b, sk, c.spend)
				dk, _ := bus.DaySpends.Key(today)
				c.day.Day = today
				putKV(t, w.b, dk, c.day)
				w.configure(func(cfg *bus.Config) { c.start(cfg) })
				w.tickNow()
				w.reconfigure(c.keep)
				w.tickNow()
				if _, ok := storedBlock(t, w.b, "K-1"); !ok || w.dispatchCount() != 0 {
					t.Fatalf("a reload that does not lift %s released the park (%d dispatches)", c.cap, w.dispatchCount())
				}
				w.reconfigure(c.raise)
				w.eventually("released and dispatched", func() bool { return w.dispatchesOf("K-1") == 1 })
				if _, ok := storedBlock(t, w.b, "K-1"); ok {
					t.Errorf("K-1 still parked")
				}
				if _, ok := storedBlock(t, w.b, "H-1"); !ok || w.dispatchesOf("H-1") != 0 {
					t.Errorf("a park without a cap was released by a reload")
				}
			})
		})
	}
}

// TestResetSpend: reset_spend sets the issue's lifetime spend to zero,
// keeping the ids of the runs counted (a re-handled end is not added
// again), clears its park, answers with the amounts before, and the issue
// runs again.
func TestResetSpend(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("Z-1", 1, "", "Todo"))
		sk, _ := bus.IssueSpends.Key("Z-1")
		putKV(t, w.b, sk, bus.IssueSpend{IssueID: "Z-1", Identifier: "Z-1", USD: 2.5, Tokens: 900, Runs: 4, Turns: 11, Unpriced: 1, Counted: []string{"Z-1-a", "Z-1-b"}})
		w.configure(func(c *bus.Config) { c.Budget.PerIssue.USD = 2 })
		w.pollUntil("parked at the cap", func() bool {
			bl, ok := storedBlock(t, w.b, "Z-1")
			return ok && bl.Cap == bus.CapIssueUSD
		})
		res := w.control(bus.Control{Action: bus.ControlResetSpend, IssueID: "Z-1"})
		want := "issue Z-1: lifetime spend reset to zero (it was $2.5, 900 tokens, 4 runs, 11 turns, 1 runs without a USD figure); its park is cleared"
		if res.Message != want {
			t.Errorf("answer %q, want %q", res.Message, want)
		}
		w.eventually("dispatched after the reset", func() bool { return len(w.dispatches) == 1 })
		sp := storedSpend(t, w.b, "Z-1")
		if sp.USD != 0 || sp.Tokens != 0 || sp.Turns != 0 || sp.Unpriced != 0 || sp.Runs != 1 || len(sp.Counted) != 2 {
			t.Errorf("spend after the reset %+v, want zero but the new run, the counted ids kept", sp)
		}
		w.mu.Lock()
		d := w.dispatches[0]
		w.mu.Unlock()
		if d.IssueBudget == nil || d.IssueBudget.Spent.USD != 0 {
			t.Errorf("the dispatch after the reset carries %+v", d.IssueBudget)
		}
		if res := w.control(bus.Control{Action: bus.ControlResetSpend}); !strings.Contains(res.Message, "needs an issue id") {
			t.Errorf("reset without an id: %q", res.Message)
		}
	})
}

// TestReloadLoweringDayCapStopsRunsInFlight: a reload that lowers the
// daily cap below today's spend stops every run in flight at once (the
// cancel path, budget_exceeded, parked with the day), as a turn that took
// the day over the cap would: none runs on until its next turn's end.
func TestReloadLoweringDayCapStopsRunsInFlight(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("A-1", 1, "", "Todo"), iss("B-1", 2, "", "Todo"))
		w.configure(func(c *bus.Config) {
			c.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 10}}
		})
		w.pollUntil("two runs", func() bool { return len(w.dispatches) == 2 })
		w.mu.Lock()
		a, _ := w.dispatchOf("A-1")
		w.mu.Unlock()
		w.turnFinished(a, 1, 100, 5)
		w.eventually("turn counted", func() bool { return storedDay(t, w.b, "2000-01-01").USD == 5 })
		w.reconfigure(func(c *bus.Config) { c.Budget.PerDay.USD = 1 })
		w.eventually("both runs stopped", func() bool { return len(w.cancels) >= 2 })
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, c := range w.cancels {
			if c.Status != bus.RunBudgetExceeded || c.BudgetCap != bus.CapDayUSD || c.BudgetDay != "2000-01-01" {
				t.Errorf("cancel %+v: want budget_exceeded naming budget.per_day.usd and the day", c)
			}
		}
	})
}
