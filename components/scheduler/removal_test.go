package scheduler

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// gate holds id's workspace removal until the returned release is called
// (once; the test's cleanup calls it too, so a failed test never leaves
// the stand-in blocked).
func (w *world) gate(id string) (release func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.gates == nil {
		w.gates = map[string]chan struct{}{}
	}
	w.gates[id] = ch
	w.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	w.t.Cleanup(release)
	return release
}

// traced reports whether the trace holds line (under w.mu).
func (w *world) traced(line string) bool { return slices.Contains(w.trace, line) }

// dispatchesOf counts the dispatches of one issue (under w.mu).
func (w *world) dispatchesOf(id string) int {
	n := 0
	for _, d := range w.dispatches {
		if d.Issue.ID == id {
			n++
		}
	}
	return n
}

// lastDispatch is the index in trace of id's last dispatch (-1: none).
func lastDispatch(trace []string, id string) int {
	for i := len(trace) - 1; i >= 0; i-- {
		if trace[i] == "dispatch "+id {
			return i
		}
	}
	return -1
}

// TestRemovalDoesNotStallTheLoop: a run stopped because its issue went
// terminal has its workspace removed, and the removal's before_remove
// (held here by the test, as a hook that waits on a fifo would) stalls
// nothing: another issue is dispatched and an operator command answered
// while it runs. The issue, active again meanwhile, is not dispatched
// until the removal has ended, and then without waiting for a poll. The
// scheduler used to wait for the removal in its loop (up to a minute).
func TestRemovalDoesNotStallTheLoop(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("R-1", 1, "", "Todo"))
	w.configure(nil)
	release := w.gate("R-1")
	w.pollUntil("R-1 dispatched", func() bool { return w.dispatchesOf("R-1") == 1 })

	// R-1 goes terminal: the poll's reconcile cancels its run; the run's
	// end starts the removal, which waits on the gate.
	w.setState("R-1", "Done")
	w.poll()
	w.eventually("R-1's removal started", func() bool { return w.traced("remove-start R-1") })

	// Meanwhile: a new issue is dispatched, a command is answered.
	w.mu.Lock()
	w.iss["N-1"] = iss("N-1", 1, "", "Todo")
	w.mu.Unlock()
	start := time.Now()
	w.pollUntil("N-1 dispatched while R-1's before_remove runs", func() bool { return w.dispatchesOf("N-1") == 1 })
	if res := w.control(bus.Control{Action: bus.ControlPause}); !res.Paused {
		t.Fatalf("pause: %+v", res)
	}
	w.control(bus.Control{Action: bus.ControlResume})
	t.Logf("N-1 dispatched and two commands answered %v after R-1's removal began", time.Since(start).Round(time.Millisecond))

	// R-1 is reopened: while its removal runs, polls pass it over.
	w.setState("R-1", "Todo")
	for range 3 {
		w.tickNow()
	}
	w.mu.Lock()
	if n := w.dispatchesOf("R-1"); n != 1 || w.traced("remove-end R-1") {
		t.Fatalf("R-1 dispatched %d times while its removal was in flight (trace %v)", n, w.trace)
	}
	w.mu.Unlock()

	// The removal ends: R-1 is dispatched again, after it, with no poll.
	release()
	w.eventually("R-1 dispatched after its removal", func() bool { return w.dispatchesOf("R-1") == 2 })
	w.mu.Lock()
	defer w.mu.Unlock()
	if lastDispatch(w.trace, "R-1") < slices.Index(w.trace, "remove-end R-1") {
		t.Errorf("R-1's second dispatch must follow its removal's end: %v", w.trace)
	}
}

// TestStartupSweepDoesNotStallDispatch: the start-up sweep's removals (a
// terminal issue's before_remove, held) do not hold back dispatch; the
// swept issue, reopened, waits for its removal. The sweep used to run
// inside the scheduler's start-up, before the first poll could dispatch.
func TestStartupSweepDoesNotStallDispatch(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("S-1", 1, "", "Done"), iss("A-1", 2, "", "Todo"))
	release := w.gate("S-1")
	w.configure(nil)
	w.eventually("S-1's removal started", func() bool { return w.traced("remove-start S-1") })
	w.pollUntil("A-1 dispatched while the sweep removes S-1", func() bool { return w.dispatchesOf("A-1") == 1 })

	w.setState("S-1", "Todo")
	w.tickNow()
	w.tickNow()
	if n := w.dispatchCount(); n != 1 {
		t.Fatalf("%d dispatches: S-1 must wait for its removal", n)
	}
	release()
	w.eventually("S-1 dispatched after its removal", func() bool { return w.dispatchesOf("S-1") == 1 })
	w.mu.Lock()
	defer w.mu.Unlock()
	if slices.Index(w.trace, "dispatch S-1") < slices.Index(w.trace, "remove-end S-1") {
		t.Errorf("S-1 dispatched before its removal ended: %v", w.trace)
	}
}

// TestRetryWaitsForRemoval: a retry that comes due while its issue's
// workspace is being removed neither asks the tracker nor dispatches; the
// retry timer is not armed for it (it would fire again at once), and the
// retry stays queued for the removal's end.
func TestRetryWaitsForRemoval(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("Q-1", 1, "", "Todo"))
		a := newTestActor(w)
		a.cfg.Config.Tracker.ActiveStates = []string{"Todo"}
		a.cfg.Config.Agent.MaxConcurrentAgents = 2
		a.removes.busy["Q-1"] = true
		a.retries["Q-1"] = bus.RetryEntry{IssueID: "Q-1", Identifier: "Q-1", Attempt: 2, DueAt: time.Now()}
		a.fireRetries(t.Context())
		if _, ok := a.retries["Q-1"]; !ok || w.dispatchCount() != 0 {
			t.Fatalf("retry fired during the removal: retries %v, %d dispatches", a.retries, w.dispatchCount())
		}
		select {
		case <-a.retryT.C:
			t.Fatal("retry timer armed for a retry that waits for its removal")
		default:
		}
		if !a.removes.held["Q-1"] {
			t.Error("the held retry is not recorded for the removal's end")
		}
		if got := Check(a.cfg.Config, iss("Q-1", 1, "", "Todo"), a.occupancy(), true); got != WorkspaceRemoving {
			t.Errorf("Check during the removal: %q, want %q", got, WorkspaceRemoving)
		}
	})
}

// slowTracker waits while the tracker gate is set (a tracker that takes
// its time answering).
func (w *world) slowTracker() {
	w.mu.Lock()
	gate := w.trackerGate
	w.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

// TestSlowTrackerDoesNotStallTheLoop: while the tracker takes its time
// with the scheduler's own requests (reconciliation's refresh of the
// running issues, an operator's refresh, the refresh of due retries), the
// scheduler keeps answering commands and dispatching from the snapshots
// the tracker publishes; the answers, when they come, are applied. The
// scheduler used to wait for each of them in its loop (up to a minute).
func TestSlowTrackerDoesNotStallTheLoop(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("T-1", 1, "", "Todo"), iss("T-2", 2, "", "Todo"))
		w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 3 })
		w.mu.Lock()
		w.outcome = func(d bus.Dispatch) bus.RunStatus {
			if d.Issue.ID == "T-2" && d.Attempt == nil {
				return bus.RunFailed // retried when the test moves the clock
			}
			return ""
		}
		w.mu.Unlock()
		w.pollUntil("T-1 and T-2 dispatched", func() bool { return w.dispatchesOf("T-1") == 1 && w.dispatchesOf("T-2") == 1 })
		w.waitRetry("T-2", 1, time.Now().Add(RetryDelay(1, 300000)))

		gate := make(chan struct{})
		var once sync.Once
		open := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(open)
		w.mu.Lock()
		w.trackerGate = gate
		w.mu.Unlock()
		// T-1 goes terminal; an operator asks for a refresh; T-2's retry comes
		// due: three requests the tracker sits on.
		w.setState("T-1", "Done")
		w.poll()
		w.control(bus.Control{Action: bus.ControlRefresh})
		time.Sleep(RetryDelay(1, 300000))
		w.mu.Lock()
		w.iss["T-3"] = iss("T-3", 3, "", "Todo")
		w.mu.Unlock()
		start := time.Now()
		w.pollUntil("T-3 dispatched from a snapshot while the tracker is slow", func() bool { return w.dispatchesOf("T-3") == 1 })
		if res := w.control(bus.Control{Action: bus.ControlPause}); !res.Paused {
			t.Fatalf("pause: %+v", res)
		}
		w.control(bus.Control{Action: bus.ControlResume})
		t.Logf("T-3 dispatched and commands answered %v into the tracker's silence", time.Since(start).Round(time.Millisecond))
		w.mu.Lock()
		if len(w.cancels) != 0 || w.dispatchesOf("T-2") != 1 {
			t.Fatalf("acted before the tracker answered: cancels %v, %d dispatches of T-2", w.cancels, w.dispatchesOf("T-2"))
		}
		w.mu.Unlock()

		// The tracker answers: T-1's run is stopped, T-2's retry dispatched.
		w.mu.Lock()
		w.trackerGate = nil
		w.mu.Unlock()
		open()
		w.eventually("T-1 canceled as terminal", func() bool { return len(w.cancels) == 1 && w.cancels[0].Status == bus.RunCanceled })
		w.eventually("T-2 retried", func() bool { return w.dispatchesOf("T-2") == 2 })
		w.eventually("T-1's workspace removed", func() bool { return w.traced("remove-end T-1") })
	})
}

// TestRemovalCutShortIsRedoneAtStart: the process stops while a
// workspace's removal is in flight (its claim already released); the next
// start's sweep asks for the removal again, and the issue, still terminal,
// is not dispatched.
func TestRemovalCutShortIsRedoneAtStart(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir, iss("X-1", 1, "", "Todo"))
	w.configure(nil)
	w.gate("X-1")
	w.pollUntil("X-1 dispatched", func() bool { return w.dispatchesOf("X-1") == 1 })
	w.setState("X-1", "Done")
	w.poll()
	w.eventually("X-1's removal started", func() bool { return w.traced("remove-start X-1") })
	w.stop()
	w.mu.Lock()
	if w.traced("remove-end X-1") {
		t.Fatal("the removal ended before the stop")
	}
	w.mu.Unlock()

	w2 := newWorld(t, dir, iss("X-1", 1, "", "Done"))
	w2.configure(nil)
	w2.eventually("X-1's removal redone by the start-up sweep", func() bool { return w2.traced("remove-end X-1") })
	w2.tickNow()
	if n := w2.dispatchCount(); n != 0 {
		t.Errorf("%d dispatches of a terminal issue after the restart", n)
	}
	claims, err := bus.All(t.Context(), w2.b, bus.Claims)
	if err != nil || len(claims) != 0 {
		t.Errorf("claims after the restart: %v %v", claims, err)
	}
}

// TestOnceWaitsForRemovals: a --once scheduler is not done while a
// workspace removal it asked for is in flight (symphony run --once would
// stop the workspace component under it); it is done once it has ended.
func TestOnceWaitsForRemovals(t *testing.T) {
	w := newWorldOpts(t, t.TempDir(), Options{Once: true}, iss("W-9", 1, "", "Done"), iss("W-1", 1, "", "Todo"))
	release := w.gate("W-9")
	w.mu.Lock()
	w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunSucceeded }
	w.mu.Unlock()
	w.configure(nil)
	w.eventually("W-9's removal started", func() bool { return w.traced("remove-start W-9") })
	w.pollUntil("W-1 dispatched", func() bool { return w.dispatchesOf("W-1") == 1 })
	// W-1's end is followed up (its claim released): only the removal
	// is left.
	deadline := time.Now().Add(testTimeout)
	for {
		claims, err := bus.All(t.Context(), w.b, bus.Claims)
		if err == nil && len(claims) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("W-1's claim never released: %v %v", claims, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.barrier()
	if w.onceDone() {
		t.Fatal("once mode done with a workspace removal in flight")
	}
	release()
	w.eventually("once done after the removal", w.onceDone)
}

// TestLateSweepSparesIssuesThatRanMeanwhile: the start-up sweep's list of
// terminal issues is made when asked and may arrive much later (a slow
// tracker). An issue on it that was reopened, dispatched and ended in the
// meantime (its retry queued) is no longer terminal: its workspace holds
// the agent's work and must not be removed on the stale list's word.
func TestLateSweepSparesIssuesThatRanMeanwhile(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("S-1", 1, "", "Done"))
		gate := make(chan struct{})
		var once sync.Once
		open := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(open)
		w.mu.Lock()
		w.terminalGate = gate
		w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunFailed }
		w.mu.Unlock()
		w.configure(nil)
		w.eventually("the sweep's list made (S-1 Done)", func() bool { return w.terminalAsks > 0 })

		w.setState("S-1", "Todo")
		w.pollUntil("S-1 dispatched", func() bool { return w.dispatchesOf("S-1") == 1 })
		w.waitRetry("S-1", 1, time.Now().Add(RetryDelay(1, 300000)))

		open()
		w.barrier() // the list is applied: a removal it asked for is under way
		w.eventually("no removal left", func() bool { return w.removals == 0 })
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.traced("remove-start S-1") {
			t.Errorf("the stale sweep list removed the workspace of S-1, which ran meanwhile: %v", w.trace)
		}
	})
}
