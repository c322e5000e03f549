package components

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// recorder collects the supervisor's lifecycle events.
type recorder struct {
	mu     sync.Mutex
	events []bus.ComponentEvent
}

func (r *recorder) notify(ev bus.ComponentEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) states(name string) []bus.ComponentState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []bus.ComponentState
	for _, ev := range r.events {
		if ev.Component == name {
			out = append(out, ev.State)
		}
	}
	return out
}

func (r *recorder) of(name string, state bus.ComponentState) []bus.ComponentEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []bus.ComponentEvent
	for _, ev := range r.events {
		if ev.Component == name && ev.State == state {
			out = append(out, ev)
		}
	}
	return out
}

// blocker runs until its context ends.
func blocker(name string, order *[]string, mu *sync.Mutex) Component {
	return Func{ComponentName: name, RunFunc: func(ctx context.Context) error {
		<-ctx.Done()
		mu.Lock()
		*order = append(*order, name)
		mu.Unlock()
		return nil
	}}
}

func TestSupervisorRestartsWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		sup := NewSupervisor(nil, rec.notify)
		calls := 0
		var starts []time.Time
		flaky := Func{ComponentName: "flaky", RunFunc: func(ctx context.Context) error {
			calls++
			starts = append(starts, time.Now())
			if calls <= 4 {
				return errors.New("boom")
			}
			<-ctx.Done()
			return nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = sup.Run(ctx, flaky) }()

		time.Sleep(time.Hour)
		synctest.Wait()
		if calls != 5 {
			t.Fatalf("calls = %d, want 5 (4 failures then healthy)", calls)
		}
		var gaps []time.Duration
		for i := 1; i < len(starts); i++ {
			gaps = append(gaps, starts[i].Sub(starts[i-1]))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
		if !slices.Equal(gaps, want) {
			t.Errorf("restart gaps = %v, want %v", gaps, want)
		}
		failed := rec.of("flaky", bus.ComponentFailed)
		if len(failed) != 4 || failed[0].Error != "boom" {
			t.Errorf("failed events = %+v", failed)
		}
		restarting := rec.of("flaky", bus.ComponentRestarting)
		if len(restarting) != 4 || restarting[3].BackoffMS != 8000 {
			t.Errorf("restarting events = %+v", restarting)
		}
		cancel()
		<-done
		if st := rec.states("flaky"); st[len(st)-1] != bus.ComponentStopped {
			t.Errorf("last state = %v, want stopped", st)
		}
	})
}

func TestSupervisorBackoffCapAndReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup := NewSupervisor(nil, nil)
		sup.MaxBackoff = 4 * time.Second
		var starts []time.Time
		comp := Func{ComponentName: "c", RunFunc: func(ctx context.Context) error {
			starts = append(starts, time.Now())
			if len(starts) == 5 {
				// A healthy stretch longer than ResetAfter, then a failure.
				time.Sleep(2 * time.Minute)
			}
			if len(starts) == 7 {
				<-ctx.Done()
				return nil
			}
			return errors.New("fail")
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = sup.Run(ctx, comp) }()
		time.Sleep(time.Hour)
		synctest.Wait()
		cancel()
		<-done
		var gaps []time.Duration
		for i := 1; i < len(starts); i++ {
			gaps = append(gaps, starts[i].Sub(starts[i-1]))
		}
		// 1s, 2s, 4s, 4s (capped); run 5 lasts 2m then fails: backoff is
		// reset to 1s; then 2s.
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 2*time.Minute + time.Second, 2 * time.Second}
		if !slices.Equal(gaps, want) {
			t.Errorf("gaps = %v, want %v", gaps, want)
		}
	})
}

func TestSupervisorRecoversPanicsAndEarlyExits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		sup := NewSupervisor(nil, rec.notify)
		n := 0
		comp := Func{ComponentName: "p", RunFunc: func(ctx context.Context) error {
			n++
			switch n {
			case 1:
				panic("nil map")
			case 2:
				return nil // returned before being asked to stop
			}
			<-ctx.Done()
			return nil
		}}
		other := 0
		steady := Func{ComponentName: "steady", RunFunc: func(ctx context.Context) error {
			other++
			<-ctx.Done()
			return nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = sup.Run(ctx, steady, comp) }()
		time.Sleep(time.Minute)
		synctest.Wait()
		failed := rec.of("p", bus.ComponentFailed)
		if len(failed) != 2 {
			t.Fatalf("failed = %+v", failed)
		}
		if !contains(failed[0].Error, "panic: nil map") || !contains(failed[0].Error, "goroutine") {
			t.Errorf("panic failure should carry the value and the stack: %q", failed[0].Error)
		}
		if failed[1].Error != ErrExitedEarly.Error() {
			t.Errorf("early exit failure = %q", failed[1].Error)
		}
		if other != 1 {
			t.Errorf("a failing component restarted its neighbour (%d starts)", other)
		}
		cancel()
		<-done
	})
}

func TestSupervisorStopsInReverseOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		sup := NewSupervisor(nil, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sup.Run(ctx, blocker("workflow", &order, &mu), blocker("tracker", &order, &mu), blocker("scheduler", &order, &mu))
		}()
		synctest.Wait()
		cancel()
		<-done
		if !slices.Equal(order, []string{"scheduler", "tracker", "workflow"}) {
			t.Errorf("stop order = %v", order)
		}
	})
}

func TestSupervisorStopTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sup := NewSupervisor(nil, nil)
		release := make(chan struct{})
		stuck := Func{ComponentName: "stuck", RunFunc: func(ctx context.Context) error {
			<-release
			return nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); _ = sup.Run(ctx, stuck) }()
		synctest.Wait()
		cancel()
		<-done
		if got := time.Since(start); got != DefaultStopTimeout {
			t.Errorf("shutdown waited %v, want the stop timeout %v", got, DefaultStopTimeout)
		}
		close(release)
	})
}

func TestSupervisorRejectsDuplicateNames(t *testing.T) {
	sup := NewSupervisor(nil, nil)
	c := Func{ComponentName: "x", RunFunc: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	if err := sup.Run(t.Context(), c, c); err == nil {
		t.Error("duplicate names accepted")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
