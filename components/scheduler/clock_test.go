package scheduler

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// fakeClock moves only when the test says so; its timers fire on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	at    time.Time
	armed bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1), at: c.now.Add(d), armed: true}
	c.timers = append(c.timers, t)
	c.fireLocked()
	return t
}

// Advance moves the clock and fires every timer that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

func (c *fakeClock) fireLocked() {
	for _, t := range c.timers {
		if t.armed && !t.at.After(c.now) {
			t.armed = false
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	// Drain a fired, unread value so the timer behaves like Go 1.23+
	// timers (Reset discards a pending fire).
	select {
	case <-t.ch:
	default:
	}
	t.at, t.armed = t.c.now.Add(d), true
	t.c.fireLocked()
	return was
}

// TestBackoffSequenceOnTheClock steps a failing issue through its retries
// on an injected clock: 10 s, 20 s, 40 s, then the cap, exactly.
func TestBackoffSequenceOnTheClock(t *testing.T) {
	clock := newFakeClock()
	w := newWorldWith(t, t.TempDir(), clock, iss("K-1", 1, "", "Todo"))
	w.outcome = func(bus.Dispatch) bus.RunStatus { return bus.RunFailed }
	w.configure(func(c *bus.Config) { c.Agent.MaxRetryBackoffMS = 50000 })
	w.pollUntil("first dispatch", func() bool { return len(w.dispatches) >= 1 })
	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 50 * time.Second, 50 * time.Second} {
		n := i + 1
		// Wait for the failed run's retry to be queued at now+wait.
		w.waitRetry("K-1", n, clock.Now().Add(wait))
		clock.Advance(wait - time.Millisecond)
		w.barrier()
		w.mu.Lock()
		if got := len(w.dispatches); got != n {
			t.Fatalf("retry %d fired early: %d dispatches", n, got)
		}
		w.mu.Unlock()
		clock.Advance(time.Millisecond)
		w.eventually("retry "+itoa(n)+" dispatched", func() bool {
			return len(w.dispatches) == n+1 && w.dispatches[n].Attempt != nil && *w.dispatches[n].Attempt == n
		})
	}
}

// TestStallOnTheClock: a run with no agent event for stall_timeout_ms is
// canceled as stalled, not a moment earlier.
func TestStallOnTheClock(t *testing.T) {
	clock := newFakeClock()
	w := newWorldWith(t, t.TempDir(), clock, iss("L-1", 1, "", "Todo"))
	w.configure(func(c *bus.Config) { c.Claude.StallTimeoutMS = 300000; c.Polling.IntervalMS = 1000 })
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	for range 299 {
		clock.Advance(time.Second)
	}
	w.barrier()
	w.mu.Lock()
	if len(w.cancels) != 0 {
		t.Fatalf("canceled before the stall timeout: %v", w.cancels)
	}
	w.mu.Unlock()
	clock.Advance(2 * time.Second)
	w.eventually("stalled", func() bool { return len(w.cancels) == 1 && w.cancels[0].Status == bus.RunStalled })
}

func itoa(n int) string { return strconv.Itoa(n) }
