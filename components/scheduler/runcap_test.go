package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// storedBlock is the issue's park in KV (ok false: none).
func storedBlock(t *testing.T, b *bus.Bus, id string) (bus.BlockedEntry, bool) {
	t.Helper()
	k, _ := bus.Blocks.Key(id)
	e, err := bus.Get(t.Context(), b, k)
	return e.Value, err == nil
}

// storedRuns is the issue's run count in KV (0: none).
func storedRuns(t *testing.T, b *bus.Bus, id string) int {
	t.Helper()
	k, _ := bus.RunCounts.Key(id)
	e, err := bus.Get(t.Context(), b, k)
	if err != nil {
		return 0
	}
	return e.Value.Runs
}

// TestMaxRunsPerIssueParksTheIssue: with agent.max_runs_per_issue 3, an
// issue that stays active gets three runs — a retry after a failure and
// continuations after clean exits alike — and is then parked with the cap
// in its reason instead of a fourth; a restarted scheduler keeps it
// parked; the operator's clear gives it its runs anew.
func TestMaxRunsPerIssueParksTheIssue(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		dir := t.TempDir()
		w := newBubbleWorld(t, dir, iss("M-1", 1, "", "Todo"))
		w.outcome = func(d bus.Dispatch) bus.RunStatus {
			if len(w.dispatches) == 1 {
				return bus.RunFailed
			}
			return bus.RunSucceeded
		}
		w.configure(func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 3 })
		w.pollUntil("first run", func() bool { return len(w.dispatches) >= 1 })
		w.eventually("parked", func() bool {
			_, ok := storedBlock(t, w.b, "M-1")
			return ok
		})
		bl, _ := storedBlock(t, w.b, "M-1")
		if want := "agent.max_runs_per_issue reached: the issue had 3 runs while it stayed active (the cap is 3)"; !strings.HasPrefix(bl.Reason, want) {
			t.Errorf("reason %q, want it to start %q", bl.Reason, want)
		}
		w.mu.Lock()
		n, last := len(w.dispatches), w.dispatches[len(w.dispatches)-1]
		w.mu.Unlock()
		if n != 3 || bl.RunID != last.RunID {
			t.Fatalf("%d runs before the park (want 3), parked by run %q (want the last, %q)", n, bl.RunID, last.RunID)
		}
		k, _ := bus.Claims.Key("M-1")
		if _, err := bus.Get(t.Context(), w.b, k); err == nil {
			t.Error("the parked issue is still claimed")
		}
		time.Sleep(time.Hour)
		w.tickNow()
		if got := w.dispatchCount(); got != 3 {
			t.Fatalf("%d dispatches: a parked issue ran again", got)
		}
		w.stop()

		w2 := newBubbleWorld(t, dir, iss("M-1", 1, "", "Todo"))
		w2.outcome = func(bus.Dispatch) bus.RunStatus { return "" }
		w2.configure(func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 3 })
		w2.tickNow()
		w2.tickNow()
		if got := w2.dispatchCount(); got != 0 {
			t.Fatalf("%d dispatches after the restart: the park must hold", got)
		}
		if _, ok := storedBlock(t, w2.b, "M-1"); !ok {
			t.Fatal("the park is gone after the restart")
		}
		if res := w2.control(bus.Control{Action: bus.ControlClearBlocked, IssueID: "M-1"}); res.Message != "issue M-1 unblocked" {
			t.Fatalf("clear: %+v", res)
		}
		w2.pollUntil("dispatched after the clear", func() bool { return len(w2.dispatches) == 1 })
		w2.eventually("counted from one again", func() bool { return storedRuns(t, w2.b, "M-1") == 1 })
	})
}

// TestRunCountSurvivesARestart: the count is stored at each dispatch, so
// a scheduler killed mid-run (the run re-dispatched as interrupted) goes
// on counting: with a cap of 2 the re-dispatch is the last run.
func TestRunCountSurvivesARestart(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		dir := t.TempDir()
		w := newBubbleWorld(t, dir, iss("N-1", 1, "", "Todo"))
		w.configure(func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 2 })
		w.pollUntil("first run", func() bool { return len(w.dispatches) == 1 })
		if got := storedRuns(t, w.b, "N-1"); got != 1 {
			t.Fatalf("stored count %d after the first dispatch", got)
		}
		w.stop() // as a kill: the run is in flight, its claim and count in KV

		w2 := newBubbleWorld(t, dir, iss("N-1", 1, "", "Todo"))
		w2.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunFailed }
		w2.configure(func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 2 })
		w2.eventually("re-dispatched", func() bool { return len(w2.dispatches) == 1 })
		w2.eventually("parked after the second run", func() bool {
			_, ok := storedBlock(t, w2.b, "N-1")
			return ok
		})
		if got := w2.dispatchCount(); got != 1 {
			t.Errorf("%d runs after the restart, want 1 (one before it)", got)
		}
	})
}

// TestRunCountResetsWhenTheIssueLeaves: an issue that leaves the active
// states is let go, and its count with it: back in an active state it
// gets its runs anew.
func TestRunCountResetsWhenTheIssueLeaves(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("R-1", 1, "", "Todo"))
		w.configure(func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 2 })
		w.pollUntil("first run", func() bool { return len(w.dispatches) == 1 })
		w.mu.Lock()
		first := w.dispatches[0]
		w.mu.Unlock()
		w.setState("R-1", "Human Review")
		w.finish(first, bus.RunSucceeded)
		// The continuation check finds it no longer active: released.
		w.eventually("released", func() bool { return storedRuns(t, w.b, "R-1") == 0 && len(w.retriesStored()) == 0 })
		w.setState("R-1", "Todo")
		w.pollUntil("dispatched again", func() bool { return len(w.dispatches) == 2 })
		if got := storedRuns(t, w.b, "R-1"); got != 1 {
			t.Errorf("count %d, want 1: counted anew", got)
		}
	})
}

// retriesStored lists the retries in KV.
func (w *world) retriesStored() map[string]bus.RetryEntry {
	m, _ := bus.All(context.Background(), w.b, bus.Retries)
	return m
}

// TestBudgetExceededParksTheIssue: a run that ends budget_exceeded is not
// retried: its issue is parked with the cap and the amounts.
func TestBudgetExceededParksTheIssue(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("B-1", 1, "", "Todo"))
	w.configure(nil)
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	w.mu.Lock()
	d := w.dispatches[0]
	delete(w.live, d.RunID)
	w.mu.Unlock()
	why := "budget.per_run.usd reached: the run cost $2.6, the cap is $2.5"
	ev := bus.RunEvent{RunID: d.RunID, Event: bus.RunFinished, At: time.Now(), Issue: d.Issue.Ref(), Status: bus.RunBudgetExceeded, Error: why}
	if _, err := bus.PublishDurable(t.Context(), w.b, bus.RunEvents, ev, "", d.RunID, string(bus.RunFinished)); err != nil {
		t.Fatal(err)
	}
	w.eventually("parked", func() bool {
		_, ok := storedBlock(t, w.b, "B-1")
		return ok
	})
	if bl, _ := storedBlock(t, w.b, "B-1"); bl.Reason != "budget exceeded: "+why || bl.RunID != d.RunID {
		t.Errorf("park %+v", bl)
	}
	if r := w.retriesStored(); len(r) != 0 {
		t.Errorf("retries %v: a run over its budget must not be retried", r)
	}
	w.tickNow()
	if got := w.dispatchCount(); got != 1 {
		t.Errorf("%d dispatches: the parked issue ran again", got)
	}
}
