package scheduler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// newYork is the zone of the rollover tests: the bubble's clock starts at
// 2000-01-01 00:00 UTC, which is 1999-12-31 19:00 there, so its midnight
// comes five hours later, not at the UTC one.
const newYork = "America/New_York"

// storedDay is the fleet's spend of a day in KV (zero: none).
func storedDay(t *testing.T, b *bus.Bus, day string) bus.DaySpend {
	t.Helper()
	k, _ := bus.DaySpends.Key(day)
	e, err := bus.Get(t.Context(), b, k)
	if err != nil {
		return bus.DaySpend{}
	}
	return e.Value
}

// turnFinished publishes a turn's end as the runner would, with its own
// tokens and cost.
func (w *world) turnFinished(d bus.Dispatch, turn int, tokens int64, usd float64) {
	w.t.Helper()
	ev := bus.RunEvent{RunID: d.RunID, Event: bus.RunTurnFinished, At: time.Now(), Issue: d.Issue.Ref(), Turn: turn, Agent: bus.AgentClaude,
		Usage: &bus.Usage{InputTokens: tokens}, BudgetUSD: &usd}
	if _, err := bus.PublishDurable(context.Background(), w.b, bus.RunEvents, ev, "", d.RunID, string(bus.RunTurnFinished)); err != nil {
		w.t.Fatal(err)
	}
}

// reconfigure stores a new version of the configuration (a reload).
func (w *world) reconfigure(mutate func(*bus.Config)) {
	w.t.Helper()
	cur, err := bus.Get(w.t.Context(), w.b, bus.ConfigCurrent)
	if err != nil {
		w.t.Fatal(err)
	}
	c := cur.Value.Config
	mutate(&c)
	w.cfg = c
	if _, err := bus.Put(w.t.Context(), w.b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: cur.Value.Version + 1, Config: c}); err != nil {
		w.t.Fatal(err)
	}
}

// dispatchOf is the last dispatch of the issue (ok false: none).
func (w *world) dispatchOf(id string) (bus.Dispatch, bool) {
	for _, d := range slices.Backward(w.dispatches) {
		if d.Issue.ID == id {
			return d, true
		}
	}
	return bus.Dispatch{}, false
}

// stored lists the notifications of an event in the NOTIFY stream.
func storedNotes(t *testing.T, b *bus.Bus, ev bus.NotifyEvent) []bus.Notification {
	t.Helper()
	var out []bus.Notification
	for m, err := range bus.History(t.Context(), b, bus.Notifications, string(ev)) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

// TestDailyCapStopsTheFleetUntilTheRollover: with budget.per_day.usd $1 in
// New York, two runs in flight spend $0.6 and $0.5 in a turn each; the
// second turn's end takes the day over the cap, and both runs are stopped
// budget_exceeded, their issues parked with the cap and the day. Nothing
// new starts — not a new issue, not a queued retry, whose due time passes
// — until New York's midnight (five hours on, not UTC's): then the parks
// are released, dispatch resumes with the new day's budget, and the retry
// fires. The day's spend, its runs and outcomes are in KV under the New
// York day; the cap's notification is published once, with its id.
func TestDailyCapStopsTheFleetUntilTheRollover(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("A-1", 1, "", "Todo"), iss("B-1", 2, "", "Todo"), iss("C-1", 3, "", "Todo"))
		w.configure(func(c *bus.Config) {
			c.Agent.MaxConcurrentAgents = 4
			c.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 1}, TimeZone: newYork}
		})
		w.pollUntil("three runs", func() bool { return len(w.dispatches) == 3 })
		const day = "1999-12-31"
		w.mu.Lock()
		a, _ := w.dispatchOf("A-1")
		b, _ := w.dispatchOf("B-1")
		c, _ := w.dispatchOf("C-1")
		w.mu.Unlock()
		for _, d := range []bus.Dispatch{a, b, c} {
			if db := d.DayBudget; db == nil || db.Day != day || db.Caps.USD != 1 || db.USD != 0 {
				t.Fatalf("dispatch of %s carries the day's budget %+v, want %s, cap $1, none spent", d.Issue.ID, db, day)
			}
		}
		// C-1 fails: its retry is due in 10 s, while the cap will hold.
		w.finish(c, bus.RunFailed)
		w.waitRetry("C-1", 1, time.Now().Add(RetryDelay(1, 300000)))
		w.turnFinished(a, 1, 100, 0.6)
		w.eventually("A's turn counted", func() bool { return storedDay(t, w.b, day).USD == 0.6 })
		if got := w.cancels; len(got) != 0 {
			t.Fatalf("runs stopped under the cap: %+v", got)
		}
		w.turnFinished(b, 1, 50, 0.5)
		w.eventually("both runs parked", func() bool {
			_, pa := storedBlock(t, w.b, "A-1")
			_, pb := storedBlock(t, w.b, "B-1")
			return pa && pb
		})
		for _, id := range []string{"A-1", "B-1"} {
			bl, _ := storedBlock(t, w.b, id)
			if bl.Cap != bus.CapDayUSD || bl.Limit != 1 || bl.Day != day {
				t.Errorf("%s parked with cap %q limit %v day %q, want %s 1 %s", id, bl.Cap, bl.Limit, bl.Day, bus.CapDayUSD, day)
			}
			if want := "budget exceeded: budget.per_day.usd reached: the fleet's turns on 1999-12-31 cost $1.1, the cap is $1; the run was stopped"; bl.Reason != want {
				t.Errorf("%s reason %q, want %q", id, bl.Reason, want)
			}
		}
		w.mu.Lock()
		for _, cr := range w.cancels {
			if cr.Status != bus.RunBudgetExceeded || cr.BudgetCap != bus.CapDayUSD || cr.BudgetDay != day {
				t.Errorf("cancel %+v, want budget_exceeded naming %s of %s", cr, bus.CapDayUSD, day)
			}
		}
		w.mu.Unlock()
		sp := storedDay(t, w.b, day)
		if sp.USD != 1.1 || sp.Tokens != 150 || sp.Runs != 3 || sp.Outcomes[bus.RunBudgetExceeded] != 2 || sp.Outcomes[bus.RunFailed] != 1 ||
			sp.Capped == nil || sp.Capped.Cap != bus.CapDayUSD || sp.TimeZone != newYork {
			t.Errorf("day's spend %+v (capped %+v)", sp, sp.Capped)
		}
		// A new issue and the retry's due time: nothing starts.
		w.mu.Lock()
		w.iss["D-1"] = iss("D-1", 4, "", "Todo")
		w.mu.Unlock()
		w.tickNow()
		time.Sleep(time.Minute)
		w.tickNow()
		if n := w.dispatchCount(); n != 3 {
			t.Fatalf("%d dispatches at the daily cap, want the 3 before it", n)
		}
		if _, ok := w.retries("C-1"); !ok {
			t.Errorf("the retry was dropped at the daily cap; it must keep its place")
		}
		// Just before New York's midnight: still nothing.
		time.Sleep(time.Until(time.Date(2000, 1, 1, 4, 59, 0, 0, time.UTC)))
		w.settle()
		if n := w.dispatchCount(); n != 3 {
			t.Fatalf("%d dispatches before the rollover", n)
		}
		time.Sleep(2 * time.Minute)
		w.pollUntil("every issue dispatched after the rollover", func() bool {
			return w.dispatchesOf("A-1") == 2 && w.dispatchesOf("B-1") == 2 && w.dispatchesOf("C-1") == 2 && w.dispatchesOf("D-1") == 1
		})
		if _, ok := storedBlock(t, w.b, "A-1"); ok {
			t.Errorf("A-1 still parked after the rollover")
		}
		w.mu.Lock()
		d, _ := w.dispatchOf("D-1")
		w.mu.Unlock()
		if db := d.DayBudget; db == nil || db.Day != "2000-01-01" || db.USD != 0 {
			t.Errorf("dispatch after the rollover carries %+v, want the new day, none spent", db)
		}
		w.eventually("the cap's notification", func() bool { return len(storedNotes(t, w.b, bus.NotifyDailyCap)) > 0 })
		notes := storedNotes(t, w.b, bus.NotifyDailyCap)
		if len(notes) != 1 || notes[0].ID != "daily_cap_reached/1999-12-31/budget.per_day.usd" || notes[0].Day != day || notes[0].Limit != 1 {
			t.Errorf("daily cap notifications %+v, want one with id daily_cap_reached/1999-12-31/budget.per_day.usd", notes)
		}
		stopped := storedNotes(t, w.b, bus.NotifyBudgetExceeded)
		ids := []string{}
		for _, n := range stopped {
			ids = append(ids, n.ID)
		}
		slices.Sort(ids)
		if want := []string{"budget_exceeded/" + a.RunID, "budget_exceeded/" + b.RunID}; !slices.Equal(ids, want) {
			t.Errorf("budget_exceeded notifications %q, want one per stopped run %q", ids, want)
		}
	})
}

// retries is the issue's queued retry in KV.
func (w *world) retries(id string) (bus.RetryEntry, bool) {
	k, _ := bus.Retries.Key(id)
	e, err := bus.Get(w.t.Context(), w.b, k)
	return e.Value, err == nil
}

// TestDaySpendCountedOnceAcrossRestarts: a run's turns and end handled
// again — two schedulers in turn recovering the same stored end, whose
// turns neither saw live — are added to the day once: the turns are read
// back from the stream, the day's Counted keeps them from a second add
// (once the end is counted, the run's id stands for its turns).
func TestDaySpendCountedOnceAcrossRestarts(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		one := 1
		issue := iss("R-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "R-1-run", IssueID: "R-1", Identifier: "R-1", Attempt: &one, At: time.Now()}
		for turn, usd := range []float64{0.25, 0.5} {
			ev := bus.RunEvent{RunID: cl.RunID, Event: bus.RunTurnFinished, At: time.Now(), Issue: issue.Ref(), Turn: turn + 1, Agent: bus.AgentClaude,
				Usage: &bus.Usage{InputTokens: 10, CacheReadInputTokens: 5}, CostUSD: &usd}
			if err := runlog.Record(t.Context(), w.b, ev, ""); err != nil {
				t.Fatal(err)
			}
		}
		total := 0.75
		end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Attempt: &one, Status: bus.RunSucceeded,
			Agent: bus.AgentClaude, Turn: 2, Usage: &bus.Usage{InputTokens: 20, CacheReadInputTokens: 10}, BudgetUSD: &total}
		if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
			t.Fatal(err)
		}
		k, _ := bus.Claims.Key("R-1")
		for i := range 2 {
			if _, err := bus.Put(t.Context(), w.b, k, cl); err != nil {
				t.Fatal(err)
			}
			newTestActor(w).interrupted(t.Context(), "R-1", cl)
			sp := storedDay(t, w.b, "2000-01-01")
			if sp.USD != 0.75 || sp.Tokens != 30 || sp.Runs != 1 || sp.Outcomes[bus.RunSucceeded] != 1 || len(sp.Counted) != 1 {
				t.Errorf("after recovery %d: day %+v, want the run and its two turns counted once ($0.75, 30 tokens, 1 run)", i+1, sp)
			}
		}
	})
}

// TestDaySpendSurvivesARestart: the day's spend is in KV; a scheduler
// restarted on the same store checks the cap against what the runs before
// it spent, and the dispatch after the restart carries it.
func TestDaySpendSurvivesARestart(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		dir := t.TempDir()
		caps := bus.DayBudget{BudgetCaps: bus.BudgetCaps{Tokens: 1000}}
		w := newBubbleWorld(t, dir, iss("S-1", 1, "", "Todo"))
		w.configure(func(c *bus.Config) { c.Budget.PerDay = caps })
		w.pollUntil("first run", func() bool { return len(w.dispatches) == 1 })
		w.mu.Lock()
		d := w.dispatches[0]
		w.mu.Unlock()
		w.turnFinished(d, 1, 600, 0.1)
		w.eventually("turn counted", func() bool { return storedDay(t, w.b, "2000-01-01").Tokens == 600 })
		w.finish(d, bus.RunFailed)
		w.waitRetry("S-1", 1, time.Now().Add(RetryDelay(1, 300000)))
		w.stop()

		w2 := newBubbleWorld(t, dir, iss("S-1", 1, "", "Todo"))
		w2.configure(func(c *bus.Config) { c.Budget.PerDay = caps })
		w2.eventually("retried after the restart", func() bool { return len(w2.dispatches) == 1 })
		w2.mu.Lock()
		d2 := w2.dispatches[0]
		w2.mu.Unlock()
		if db := d2.DayBudget; db == nil || db.Tokens != 600 || db.Caps.Tokens != 1000 {
			t.Fatalf("the dispatch after the restart carries %+v, want 600 tokens spent today", db)
		}
		w2.turnFinished(d2, 1, 500, 0.1)
		w2.eventually("stopped at the cap counted across both", func() bool {
			bl, ok := storedBlock(t, w2.b, "S-1")
			return ok && bl.Cap == bus.CapDayTokens
		})
		if sp := storedDay(t, w2.b, "2000-01-01"); sp.Tokens != 1100 || sp.Runs != 2 {
			t.Errorf("day %+v, want 1100 tokens and 2 runs", sp)
		}
	})
}

// TestOldDaysPruned: a scheduler's start deletes the days older than
// bus.DaySpendKeepDays and keeps the rest.
func TestOldDaysPruned(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		keep, old := "1999-11-01", "1999-10-01"
		for _, day := range []string{keep, old} {
			k, _ := bus.DaySpends.Key(day)
			if _, err := bus.Put(t.Context(), w.b, k, bus.DaySpend{Day: day, USD: 1}); err != nil {
				t.Fatal(err)
			}
		}
		w.configure(nil)
		w.barrier()
		if storedDay(t, w.b, keep).Day != keep || storedDay(t, w.b, old).Day != "" {
			t.Errorf("kept %+v, pruned %+v: want the day 61 days old kept, 92 days old gone", storedDay(t, w.b, keep), storedDay(t, w.b, old))
		}
	})
}
