package components

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Supervisor defaults.
const (
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultResetAfter  = time.Minute
	DefaultStopTimeout = 15 * time.Second
)

// ErrExitedEarly is the failure recorded when Run returns nil while its
// context is still live.
var ErrExitedEarly = errors.New("run returned before it was asked to stop")

// Supervisor starts components, restarts the ones that fail and stops them
// in reverse order. The zero value is not usable; build one with
// NewSupervisor.
type Supervisor struct {
	log    *slog.Logger
	notify func(bus.ComponentEvent)
	now    func() time.Time

	// MinBackoff is the wait before the first restart; it doubles per
	// consecutive failure up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// ResetAfter is how long a run must last for the backoff to start over.
	ResetAfter time.Duration
	// StopTimeout bounds the wait for one component's Run to return after
	// its context is cancelled.
	StopTimeout time.Duration
}

// NewSupervisor returns a supervisor that logs to log and reports every
// lifecycle change to notify (typically a publish on bus.ComponentEvents).
// notify may be nil; it must not block for long.
func NewSupervisor(log *slog.Logger, notify func(bus.ComponentEvent)) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if notify == nil {
		notify = func(bus.ComponentEvent) {}
	}
	return &Supervisor{
		log:         log,
		notify:      notify,
		now:         time.Now,
		MinBackoff:  DefaultMinBackoff,
		MaxBackoff:  DefaultMaxBackoff,
		ResetAfter:  DefaultResetAfter,
		StopTimeout: DefaultStopTimeout,
	}
}

// Run starts comps in order and keeps them running until ctx is done, then
// stops them in reverse order and returns. It returns an error only for a
// bad call (duplicate names); component failures are handled, not returned.
func (s *Supervisor) Run(ctx context.Context, comps ...Component) error {
	seen := map[string]bool{}
	for _, c := range comps {
		if seen[c.Name()] {
			return fmt.Errorf("supervisor: two components named %q", c.Name())
		}
		seen[c.Name()] = true
	}
	type running struct {
		name   string
		cancel context.CancelFunc
		done   chan struct{}
	}
	all := make([]running, 0, len(comps))
	for _, c := range comps {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.keep(cctx, c)
		}()
		all = append(all, running{name: c.Name(), cancel: cancel, done: done})
	}
	<-ctx.Done()
	for i := len(all) - 1; i >= 0; i-- {
		r := all[i]
		r.cancel()
		timer := time.NewTimer(s.StopTimeout)
		select {
		case <-r.done:
		case <-timer.C:
			s.log.Error("component did not stop in time; continuing shutdown", "component", r.name, "timeout", s.StopTimeout)
		}
		timer.Stop()
	}
	return nil
}

// keep runs c until ctx is done, restarting it after failures.
func (s *Supervisor) keep(ctx context.Context, c Component) {
	name := c.Name()
	log := s.log.With("component", name)
	backoff := s.MinBackoff
	restarts := 0
	for {
		started := s.now()
		log.Debug("component starting", "restarts", restarts)
		s.notify(bus.ComponentEvent{Component: name, State: bus.ComponentStarted, At: started, Restarts: restarts})
		err := s.runOnce(ctx, c)
		if ctx.Err() != nil {
			if err != nil {
				log.Warn("component returned an error while stopping", "err", err)
			}
			log.Debug("component stopped")
			s.notify(bus.ComponentEvent{Component: name, State: bus.ComponentStopped, At: s.now(), Restarts: restarts})
			return
		}
		if err == nil {
			err = ErrExitedEarly
		}
		if s.now().Sub(started) >= s.ResetAfter {
			backoff = s.MinBackoff
		}
		log.Error("component failed; restarting after backoff", "err", err, "backoff", backoff, "restarts", restarts)
		s.notify(bus.ComponentEvent{Component: name, State: bus.ComponentFailed, At: s.now(), Error: err.Error(), Restarts: restarts})
		s.notify(bus.ComponentEvent{Component: name, State: bus.ComponentRestarting, At: s.now(), Restarts: restarts, BackoffMS: backoff.Milliseconds()})
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			s.notify(bus.ComponentEvent{Component: name, State: bus.ComponentStopped, At: s.now(), Restarts: restarts})
			return
		case <-timer.C:
		}
		restarts++
		backoff = min(backoff*2, s.MaxBackoff)
	}
}

// runOnce calls Run, turning a panic into an error that carries the stack.
func (s *Supervisor) runOnce(ctx context.Context, c Component) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return c.Run(ctx)
}
