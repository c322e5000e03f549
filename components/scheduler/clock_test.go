package scheduler

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// TestBackoffSequenceOnTheClock steps a failing issue through its retries
// on the bubble's fake clock: 10 s, 20 s, 40 s, then the cap, exactly.
func TestBackoffSequenceOnTheClock(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("K-1", 1, "", "Todo"))
		w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunFailed }
		w.configure(func(c *bus.Config) { c.Agent.MaxRetryBackoffMS = 50000 })
		w.pollUntil("first dispatch", func() bool { return len(w.dispatches) >= 1 })
		for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 50 * time.Second, 50 * time.Second} {
			n := i + 1
			// Wait for the failed run's retry to be queued at now+wait.
			w.waitRetry("K-1", n, time.Now().Add(wait))
			time.Sleep(wait - time.Millisecond)
			w.barrier()
			w.mu.Lock()
			if got := len(w.dispatches); got != n {
				t.Fatalf("retry %d fired early: %d dispatches", n, got)
			}
			w.mu.Unlock()
			time.Sleep(time.Millisecond)
			w.eventually("retry "+itoa(n)+" dispatched", func() bool {
				return len(w.dispatches) == n+1 && w.dispatches[n].Attempt != nil && *w.dispatches[n].Attempt == n
			})
		}
	})
}

// TestStallOnTheClock: a run with no agent event for stall_timeout_ms is
// canceled as stalled, not a moment earlier.
func TestStallOnTheClock(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("L-1", 1, "", "Todo"))
		w.configure(func(c *bus.Config) { c.Claude.StallTimeoutMS = 300000; c.Polling.IntervalMS = 1000 })
		w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
		for range 299 {
			time.Sleep(time.Second)
		}
		w.barrier()
		w.mu.Lock()
		if len(w.cancels) != 0 {
			t.Fatalf("canceled before the stall timeout: %v", w.cancels)
		}
		w.mu.Unlock()
		time.Sleep(2 * time.Second)
		w.eventually("stalled", func() bool { return len(w.cancels) == 1 && w.cancels[0].Status == bus.RunStalled })
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCanceledRunWithLostEndIsAskedAgain: a run canceled (here: stalled)
// whose end never comes is not held forever. After cancelWait the runner is
// asked again; while it still has the run nothing changes; once it no
// longer has it, the run is recorded as interrupted and retried, exactly
// once, never dispatched again while the old run might be alive.
func TestCanceledRunWithLostEndIsAskedAgain(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("Q-1", 1, "", "Todo"))
		w.mu.Lock()
		w.lostEnds = true
		w.mu.Unlock()
		w.configure(func(c *bus.Config) {
			c.Claude.StallTimeoutMS = 10000
			c.Polling.IntervalMS = 1000
			c.Hooks.TimeoutMS = 5000
		})
		wait := 5*time.Second + cancelGrace
		w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
		w.mu.Lock()
		old := w.dispatches[0]
		w.mu.Unlock()
		time.Sleep(11 * time.Second)
		w.eventually("stall cancel", func() bool { return len(w.cancels) == 1 && w.cancels[0].Status == bus.RunStalled })
		w.barrier() // the cancel's acknowledgement is in: the wait starts
		// Not asked again before the wait is over.
		time.Sleep(wait - time.Second)
		w.barrier()
		w.mu.Lock()
		if len(w.cancels) != 1 {
			t.Fatalf("%d cancels before the wait was over", len(w.cancels))
		}
		w.mu.Unlock()
		// Asked again while the runner still has the run: it keeps its claim.
		time.Sleep(time.Second)
		w.eventually("asked again", func() bool { return len(w.cancels) == 2 && w.cancels[1].RunID == old.RunID })
		w.barrier()
		k, _ := bus.Claims.Key("Q-1")
		if e, err := bus.Get(t.Context(), w.b, k); err != nil || e.Value.RunID != old.RunID {
			t.Fatalf("claim %+v, %v while the runner still has the run", e.Value, err)
		}
		// The runner ends the run, and its end is lost.
		w.mu.Lock()
		delete(w.live, old.RunID)
		w.mu.Unlock()
		time.Sleep(wait)
		w.eventually("asked a third time", func() bool { return len(w.cancels) == 3 })
		w.waitRetry("Q-1", 1, time.Now().Add(RetryDelay(1, 300000)))
		ends := storedEnds(t, w.b, old.RunID)
		for _, e := range ends {
			if e.Status != bus.RunInterrupted {
				t.Errorf("end %+v, want interrupted", e)
			}
		}
		if len(ends) != 1 {
			t.Errorf("%d ends recorded for the lost run", len(ends))
		}
		w.mu.Lock()
		if len(w.dispatches) != 1 {
			t.Fatalf("%d dispatches before the retry was due", len(w.dispatches))
		}
		w.mu.Unlock()
		time.Sleep(RetryDelay(1, 300000))
		w.eventually("retried", func() bool { return len(w.dispatches) == 2 })
		w.tickNow()
		w.barrier()
		w.mu.Lock()
		defer w.mu.Unlock()
		if d := w.dispatches[1]; len(w.dispatches) != 2 || d.Attempt == nil || *d.Attempt != 1 {
			t.Errorf("dispatches %+v: want one retry, attempt 1", w.dispatches)
		}
	})
}

// TestCanceledGoneRunUsesItsStoredEnd: when the runner no longer has a
// canceled run whose end is stored (its delivery to the scheduler lost),
// that end is followed up at once: no second, "interrupted" end.
func TestCanceledGoneRunUsesItsStoredEnd(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir()) // its runner stand-in does not know the run
		a := newTestActor(w)
		one := 1
		r := &running{runID: "S-1-old", issue: iss("S-1", 1, "", "Todo"), attempt: &one}
		a.running["S-1"] = r
		end := bus.RunEvent{RunID: r.runID, Event: bus.RunFinished, At: time.Now(), Issue: r.issue.Ref(), Attempt: &one, Status: bus.RunFailed, Error: "exit 1"}
		if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
			t.Fatal(err)
		}
		a.cancel(t.Context(), r, bus.RunStalled, "stalled")
		if len(a.running) != 0 {
			t.Fatal("the gone run still counts as running")
		}
		if rt, ok := a.retries["S-1"]; !ok || rt.Attempt != 2 || rt.Error != "exit 1" {
			t.Errorf("retry %+v (%v): want attempt 2 after the stored failure", rt, ok)
		}
		if n := len(storedEnds(t, w.b, r.runID)); n != 1 {
			t.Errorf("%d ends stored: an interrupted end was added to a recorded one", n)
		}
	})
}

// TestStartupFollowsUpStoredEnds: a claim whose run ended before the
// restart (its end stored, its follow-up lost: the scheduler stops first
// at a shutdown) gets what the end would have got live: a continuation
// check, a retry with its backoff, a block; a run the shutdown cut short
// (interrupted) is dispatched again at once; a canceled one is released.
// Before, every such claim was released and the issue dispatched afresh:
// a blocked issue at once, a failed one without its backoff.
func TestStartupFollowsUpStoredEnds(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		two := 2
		claimed := func(id string) bool {
			k, _ := bus.Claims.Key(id)
			_, err := bus.Get(t.Context(), w.b, k)
			return err == nil
		}
		for _, c := range []struct {
			status       bus.RunStatus
			retryAttempt int           // 0: no retry
			retryIn      time.Duration // from now
			blocked      bool
			claimKept    bool
		}{
			{status: bus.RunSucceeded, retryAttempt: 1, retryIn: ContinuationDelay, claimKept: true},
			{status: bus.RunFailed, retryAttempt: 3, retryIn: RetryDelay(3, 300000), claimKept: true},
			{status: bus.RunStalled, retryAttempt: 3, retryIn: RetryDelay(3, 300000), claimKept: true},
			{status: bus.RunInterrupted, retryAttempt: 3, retryIn: 0, claimKept: true},
			{status: bus.RunBlocked, blocked: true},
			{status: bus.RunBudgetExceeded, blocked: true},
			{status: bus.RunCanceled},
		} {
			id := "E-" + string(c.status)
			issue := iss(id, 1, "", "In Progress")
			cl := bus.Claim{RunID: id + "-run", IssueID: id, Identifier: id, Attempt: &two, At: time.Now()}
			k, _ := bus.Claims.Key(id)
			if _, err := bus.Put(t.Context(), w.b, k, cl); err != nil {
				t.Fatal(err)
			}
			end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Attempt: &two, Status: c.status, Error: "why " + string(c.status)}
			if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
				t.Fatal(err)
			}
			a.interrupted(t.Context(), id, cl)
			rt, queued := a.retries[id]
			switch {
			case c.retryAttempt == 0 && queued:
				t.Errorf("%s: retry %+v, want none", c.status, rt)
			case c.retryAttempt != 0 && (!queued || rt.Attempt != c.retryAttempt || !rt.DueAt.Equal(time.Now().Add(c.retryIn))):
				t.Errorf("%s: retry %+v (%v), want attempt %d due in %v", c.status, rt, queued, c.retryAttempt, c.retryIn)
			}
			wantWhy := "why blocked"
			if c.status == bus.RunBudgetExceeded {
				wantWhy = "budget exceeded: why budget_exceeded"
			}
			if bl, ok := a.blocked[id]; ok != c.blocked || ok && (bl.State != "" || bl.Reason != wantWhy) {
				t.Errorf("%s: blocked %+v (%v), want %v with no state yet and the run's error", c.status, bl, ok, c.blocked)
			}
			if got := claimed(id); got != c.claimKept {
				t.Errorf("%s: claim kept %v, want %v", c.status, got, c.claimKept)
			}
			if _, ok := a.running[id]; ok {
				t.Errorf("%s: still counted as running", c.status)
			}
			if n := len(storedEnds(t, w.b, cl.RunID)); n != 1 {
				t.Errorf("%s: %d ends stored, want the one", c.status, n)
			}
		}
		// The block from a stored end takes the state the next poll sees (the
		// agent may have moved the issue since its dispatch) instead of being
		// cleared by it; a later change clears it.
		bl := a.blocked["E-blocked"]
		if a.blockedStateChanged(t.Context(), bl, "Human Review") {
			t.Error("the first state seen cleared the block of a run that ended before the restart")
		}
		bk, _ := bus.Blocks.Key("E-blocked")
		if e, err := bus.Get(t.Context(), w.b, bk); err != nil || a.blocked["E-blocked"].State != "Human Review" || e.Value.State != "Human Review" {
			t.Errorf("block %+v (stored %+v, %v): want the state seen recorded", a.blocked["E-blocked"], e.Value, err)
		}
		if !a.blockedStateChanged(t.Context(), a.blocked["E-blocked"], "Todo") {
			t.Error("a state change after that did not clear the block")
		}
	})
}

// newTestActor is a scheduler actor on w's bus, driven directly by a test
// (no Run loop), with a 5-minute retry backoff cap.
func newTestActor(w *world) *actor {
	a := &actor{c: &Component{log: slog.New(slog.DiscardHandler)}, b: w.b, log: slog.New(slog.DiscardHandler), running: map[string]*running{},
		retries: map[string]bus.RetryEntry{}, blocked: map[string]bus.BlockedEntry{}, lastEnd: map[string]time.Time{}, retryUnsure: map[string]bool{},
		async: newAsyncs(), removes: newRemovals(), firing: map[string]bool{}, lastStatus: map[string]bus.RunStatus{}, unanswered: map[string]string{},
		cfg: &bus.ConfigSnapshot{Config: bus.Config{Agent: bus.AgentConfig{MaxRetryBackoffMS: 300000}}}}
	a.notes = newNotifier(a.c)
	a.retryT = time.NewTimer(time.Hour)
	a.dayT = time.NewTimer(time.Hour)
	a.dayT.Stop()
	return a
}

// storedEnds reads the run_finished events stored for a run.
func storedEnds(t *testing.T, b *bus.Bus, runID string) []bus.RunEvent {
	t.Helper()
	var out []bus.RunEvent
	for m, err := range bus.History(t.Context(), b, bus.RunEvents, runID, string(bus.RunFinished)) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

// TestOperatorHoldIsStoredAtTheCancel: an operator's cancel holds the issue
// from the moment it is asked, in KV: a restart before the run's end
// arrives (its end then reaches no scheduler; start-up releases a
// canceled run's claim) keeps the issue held instead of starting it again.
func TestOperatorHoldIsStoredAtTheCancel(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		w.mu.Lock()
		w.lostEnds = true // the run's end does not come back here
		w.live["O-1-run"] = bus.Dispatch{RunID: "O-1-run", Issue: iss("O-1", 1, "", "In Progress")}
		w.mu.Unlock()
		a := newTestActor(w)
		a.running["O-1"] = &running{runID: "O-1-run", issue: iss("O-1", 1, "", "In Progress")}
		res := a.control(t.Context(), bus.Control{Action: bus.ControlCancel, IssueID: "O-1", Reason: "not now"})
		if !strings.Contains(res.Message, "held") {
			t.Fatalf("cancel: %+v", res)
		}
		k, _ := bus.Blocks.Key("O-1")
		e, err := bus.Get(t.Context(), w.b, k)
		if err != nil || e.Value.Reason != "not now" || e.Value.RunID != "O-1-run" || e.Value.State != "In Progress" {
			t.Errorf("stored hold %+v, %v: want the operator's reason, the run and the state, before the run's end", e.Value, err)
		}
	})
}
