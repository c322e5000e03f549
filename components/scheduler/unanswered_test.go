package scheduler

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// slowWorld is a world whose runner stand-in answers the first dispatch
// only after the scheduler's ask timed out, and runs it anyway.
func slowWorld(t *testing.T) *world {
	w := newBubbleWorld(t, t.TempDir(), iss("S-1", 1, "", "Todo"))
	var first atomic.Bool
	first.Store(true)
	w.mu.Lock()
	w.oneRunPerIssue = true
	w.slowDispatch = func(bus.Dispatch) time.Duration {
		if first.CompareAndSwap(true, false) {
			return requestTimeout + time.Minute
		}
		return 0
	}
	w.spend = func(bus.Dispatch) runSpend { return runSpend{tokens: 1000, usd: 9, turns: 1} }
	w.mu.Unlock()
	w.configure(func(c *bus.Config) {
		c.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 100}}
		c.Budget.PerIssue = bus.IssueBudget{Runs: 5}
	})
	return w
}

// firstRun waits for the slow dispatch's ask to time out.
func firstRun(w *world) bus.Dispatch {
	w.t.Helper()
	w.pollUntil("the slow dispatch taken", func() bool { return len(w.dispatches) >= 1 })
	time.Sleep(requestTimeout + time.Second)
	w.settle()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dispatches[0]
}

// TestTimedOutDispatchAdoptedAtRetry: a dispatch whose ask timed out but
// which the runner still started keeps its counts; the retry, refused
// with CodeAlreadyRunning, adopts the run, so its turns and end count.
func TestTimedOutDispatchAdoptedAtRetry(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := slowWorld(t)
		d1 := firstRun(w)
		time.Sleep(10 * time.Minute) // the retry fires and is refused
		w.tickNow()
		w.settle()
		if n := w.dispatchCount(); n != 1 {
			t.Fatalf("%d runs started: want the slow one only", n)
		}
		w.turnFinished(d1, 1, 1000, 9)
		w.eventually("the adopted run's turn counted", func() bool { return storedDay(t, w.b, "2000-01-01").USD == 9 })
		w.finish(d1, bus.RunFailed)
		w.eventually("the adopted run's end counted", func() bool { return storedDay(t, w.b, "2000-01-01").Runs == 1 })
		if sp := storedSpend(t, w.b, "S-1"); sp.Runs != 1 || sp.Turns != 1 || sp.USD != 9 {
			t.Errorf("lifetime spend %+v: want the one run that started, with its turn", sp)
		}
	})
}

// TestTimedOutDispatchAdoptedByItsEvents: the run of a timed-out dispatch
// that ends before the retry fires is adopted by its own events: its turn
// and end count, and its end decides what comes next.
func TestTimedOutDispatchAdoptedByItsEvents(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := slowWorld(t)
		d1 := firstRun(w)
		w.turnFinished(d1, 1, 1000, 9)
		w.eventually("the turn counted", func() bool { return storedDay(t, w.b, "2000-01-01").USD == 9 })
		w.finish(d1, bus.RunFailed)
		w.eventually("the end counted", func() bool { return storedDay(t, w.b, "2000-01-01").Runs == 1 })
		if sp := storedSpend(t, w.b, "S-1"); sp.Runs != 1 || sp.USD != 9 {
			t.Errorf("lifetime spend %+v: want the run and its $9", sp)
		}
		time.Sleep(2 * time.Minute) // the stand-in's late answer, before the world closes
	})
}
