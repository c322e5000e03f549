package scheduler

import (
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestNoParkForAnEndedDay: a run dispatched before midnight that the
// runner stops at the day's remainder after midnight names a day that has
// ended: the issue is not parked (the day's cap no longer holds), and is
// dispatched again, not held until the next midnight.
func TestNoParkForAnEndedDay(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("A-1", 1, "", "Todo"))
		w.configure(func(c *bus.Config) {
			c.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 10}}
		})
		time.Sleep(23*time.Hour + 59*time.Minute)
		w.pollUntil("a run", func() bool { return len(w.dispatches) == 1 })
		w.mu.Lock()
		a, _ := w.dispatchOf("A-1")
		delete(w.live, a.RunID)
		w.mu.Unlock()
		time.Sleep(5 * time.Minute) // past midnight: the rollover fires
		w.settle()
		ev := bus.RunEvent{RunID: a.RunID, Event: bus.RunFinished, At: time.Now(), Issue: a.Issue.Ref(), Status: bus.RunBudgetExceeded,
			Error: "budget.per_day.usd reached", BudgetCap: bus.CapDayUSD, BudgetLimit: 10, BudgetDay: "2000-01-01"}
		if _, err := bus.PublishDurable(t.Context(), w.b, bus.RunEvents, ev, "", a.RunID, string(bus.RunFinished)); err != nil {
			t.Fatal(err)
		}
		w.pollUntil("dispatched again on the new day", func() bool { return len(w.dispatches) == 2 })
		if bl, ok := storedBlock(t, w.b, "A-1"); ok {
			t.Errorf("parked %+v: want no park for a day that has ended", bl)
		}
	})
}
