package ui

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// follow keeps the model current from the bus until ctx ends: KV watches
// for the durable state (run summaries, claims, retries, blocks, pause,
// config) and subscriptions for what is only published (polls, component
// changes, live agent events).
func (s *Server) follow(ctx context.Context) error {
	// Everything followed belongs to the dashboard's client and has ended
	// when follow returns.
	b := s.opts.Bus.Client(bus.CompUI)
	defer b.Close()
	var (
		summaries  *bus.Stream[bus.SetEvent[bus.RunSummary]]
		claims     *bus.Stream[bus.SetEvent[bus.Claim]]
		retries    *bus.Stream[bus.SetEvent[bus.RetryEntry]]
		blocks     *bus.Stream[bus.SetEvent[bus.BlockedEntry]]
		pause      *bus.Stream[bus.Entry[bus.PauseState]]
		configs    *bus.Stream[bus.Entry[bus.ConfigSnapshot]]
		statuses   *bus.Stream[bus.Entry[bus.WorkflowStatus]]
		snaps      *bus.Subscription[bus.CandidateSnapshot]
		fails      *bus.Subscription[bus.PollFailed]
		comps      *bus.Subscription[bus.ComponentEvent]
		runEvents  *bus.Subscription[bus.RunEvent]
		progress   *bus.Subscription[bus.RunProgress]
		hookEvents *bus.Subscription[bus.HookEvent]
	)
	// Each watch and subscription is a round trip to the server (a KV
	// watch creates a consumer); they are independent, so they are set up
	// at once: the dashboard is ready (/healthz) after the slowest, not
	// after their sum. Whatever was set up before an error ends with ctx.
	err := concurrently(
		func() (err error) { summaries, err = bus.WatchSet(ctx, b, bus.RunSummaries); return err },
		func() (err error) { claims, err = bus.WatchSet(ctx, b, bus.Claims); return err },
		func() (err error) { retries, err = bus.WatchSet(ctx, b, bus.Retries); return err },
		func() (err error) { blocks, err = bus.WatchSet(ctx, b, bus.Blocks); return err },
		func() (err error) { pause, err = bus.Watch(ctx, b, bus.DispatchPause); return err },
		func() (err error) { configs, err = bus.Watch(ctx, b, bus.ConfigCurrent); return err },
		func() (err error) { statuses, err = bus.Watch(ctx, b, bus.ConfigStatus); return err },
		func() (err error) { snaps, err = bus.Subscribe(ctx, b, bus.TrackerSnapshots); return err },
		func() (err error) { fails, err = bus.Subscribe(ctx, b, bus.TrackerPollFailures); return err },
		func() (err error) { comps, err = bus.Subscribe(ctx, b, bus.ComponentEvents); return err },
		func() (err error) { runEvents, err = bus.Subscribe(ctx, b, bus.RunEvents); return err },
		// Agent events reach the overview coalesced; the run page follows
		// the TURNS stream itself.
		func() (err error) { progress, err = bus.Subscribe(ctx, b, bus.AgentProgress); return err },
		func() (err error) { hookEvents, err = bus.Subscribe(ctx, b, bus.WorkspaceHookEvents); return err },
	)
	if err != nil {
		return err
	}
	// The initial state is loaded when each of the four key families has
	// delivered its current values.
	pending := 4
	ready := func() {
		if pending--; pending == 0 {
			s.model.SetReady()
			if s.opts.OnReady != nil {
				s.opts.OnReady()
			}
		}
	}
	ended := func(what string) error {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dashboard: %s ended", what)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-summaries.C():
			if !ok {
				return ended("run summary watch")
			}
			switch {
			case e.Ready:
				ready()
			case e.Deleted:
				s.model.DeleteRun(e.ID)
			default:
				s.model.PutRun(e.Value)
			}
		case e, ok := <-claims.C():
			if !ok {
				return ended("claim watch")
			}
			applySet(e, s.model.SetClaim, ready)
		case e, ok := <-retries.C():
			if !ok {
				return ended("retry watch")
			}
			applySet(e, s.model.SetRetry, ready)
		case e, ok := <-blocks.C():
			if !ok {
				return ended("blocked watch")
			}
			applySet(e, s.model.SetBlocked, ready)
		case e, ok := <-pause.C():
			if !ok {
				return ended("pause watch")
			}
			s.model.SetPaused(e.Value)
		case e, ok := <-configs.C():
			if !ok {
				return ended("config watch")
			}
			s.model.SetConfig(e.Value)
		case e, ok := <-statuses.C():
			if !ok {
				return ended("workflow status watch")
			}
			s.model.SetWorkflowStatus(e.Value)
		case m, ok := <-snaps.C():
			if !ok {
				return ended("snapshot subscription")
			}
			s.metrics.poll(time.Duration(m.Data.DurationMS)*time.Millisecond, "")
			s.model.SetSnapshot(m.Data)
		case m, ok := <-fails.C():
			if !ok {
				return ended("poll failure subscription")
			}
			s.metrics.poll(time.Duration(m.Data.DurationMS)*time.Millisecond, m.Data.Class)
			s.model.SetPollFailed(m.Data)
		case m, ok := <-comps.C():
			if !ok {
				return ended("component subscription")
			}
			s.model.SetComponent(m.Data)
		case m, ok := <-runEvents.C():
			if !ok {
				return ended("run event subscription")
			}
			s.metrics.event(bus.StreamRuns)
			s.model.ApplyRunEvent(m.Data, false)
		case m, ok := <-progress.C():
			if !ok {
				return ended("agent progress subscription")
			}
			if m.Data.New > 0 {
				s.metrics.events(bus.StreamTurns, m.Data.New)
			}
			s.model.ApplyProgress(m.Data)
		case m, ok := <-hookEvents.C():
			if !ok {
				return ended("hook event subscription")
			}
			s.metrics.event(bus.StreamHooks)
			s.model.ApplyHookEvent(m.Data)
		}
	}
}

// concurrently runs fs, each in its own goroutine, and returns once all
// have returned, with their errors joined.
func concurrently(fs ...func() error) error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func applySet[T any](e bus.SetEvent[T], set func(string, *T), ready func()) {
	switch {
	case e.Ready:
		ready()
	case e.Deleted:
		set(e.ID, nil)
	default:
		v := e.Value
		set(e.ID, &v)
	}
}

// errReadOnly answers a control request during a replay.
var errReadOnly = errors.New("this dashboard replays a recorded run: controls are off")
