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
// config, spend, the notifier's status) and subscriptions for what is only published (polls, component
// changes, live agent events).
func (s *Server) follow(ctx context.Context) error {
	// Everything followed belongs to the dashboard's client and has ended
	// when follow returns.
	b := s.opts.Bus.Client(bus.CompUI)
	defer b.Close()
	f := &follower{s: s, pending: 7}
	if err := f.open(ctx, b); err != nil {
		return err
	}
	return f.loop(ctx)
}

// follower is one follow: the streams it reads and how far the initial
// state has loaded. Only follow's goroutine touches it once open returns.
type follower struct {
	s *Server
	// pending counts the key families (summaries, claims, retries,
	// blocks, and spend control's lifetime spends, run counts and days)
	// that have not yet delivered their current values.
	pending int

	// The durable state, watched in KV.
	summaries *bus.Stream[bus.SetEvent[bus.RunSummary]]
	claims    *bus.Stream[bus.SetEvent[bus.Claim]]
	retries   *bus.Stream[bus.SetEvent[bus.RetryEntry]]
	blocks    *bus.Stream[bus.SetEvent[bus.BlockedEntry]]
	pause     *bus.Stream[bus.Entry[bus.PauseState]]
	configs   *bus.Stream[bus.Entry[bus.ConfigSnapshot]]
	statuses  *bus.Stream[bus.Entry[bus.WorkflowStatus]]
	spends    *bus.Stream[bus.SetEvent[bus.IssueSpend]]
	runCounts *bus.Stream[bus.SetEvent[bus.RunCount]]
	days      *bus.Stream[bus.SetEvent[bus.DaySpend]]
	notify    *bus.Stream[bus.Entry[bus.NotifyStatus]]
	dropped   *bus.Stream[bus.Entry[bus.NotifyDrops]]

	// What is only published.
	snaps      *bus.Subscription[bus.CandidateSnapshot]
	fails      *bus.Subscription[bus.PollFailed]
	comps      *bus.Subscription[bus.ComponentEvent]
	runEvents  *bus.Subscription[bus.RunEvent]
	progress   *bus.Subscription[bus.RunProgress]
	hookEvents *bus.Subscription[bus.HookEvent]
	notes      *bus.Subscription[bus.Notification]
}

// open sets up every watch and subscription on b. Each is a round trip to
// the server (a KV watch creates a consumer); they are independent, so
// they are set up at once: the dashboard is ready (/healthz) after the
// slowest, not after their sum. Whatever was set up before an error ends
// with ctx.
func (f *follower) open(ctx context.Context, b *bus.Client) error {
	return concurrently(
		func() (err error) { f.summaries, err = bus.WatchSet(ctx, b, bus.RunSummaries); return err },
		func() (err error) { f.claims, err = bus.WatchSet(ctx, b, bus.Claims); return err },
		func() (err error) { f.retries, err = bus.WatchSet(ctx, b, bus.Retries); return err },
		func() (err error) { f.blocks, err = bus.WatchSet(ctx, b, bus.Blocks); return err },
		func() (err error) { f.pause, err = bus.Watch(ctx, b, bus.DispatchPause); return err },
		func() (err error) { f.configs, err = bus.Watch(ctx, b, bus.ConfigCurrent); return err },
		func() (err error) { f.statuses, err = bus.Watch(ctx, b, bus.ConfigStatus); return err },
		func() (err error) { f.snaps, err = bus.Subscribe(ctx, b, bus.TrackerSnapshots); return err },
		func() (err error) { f.fails, err = bus.Subscribe(ctx, b, bus.TrackerPollFailures); return err },
		func() (err error) { f.comps, err = bus.Subscribe(ctx, b, bus.ComponentEvents); return err },
		func() (err error) { f.runEvents, err = bus.Subscribe(ctx, b, bus.RunEvents); return err },
		// Agent events reach the overview coalesced; the run page follows
		// the TURNS stream itself.
		func() (err error) { f.progress, err = bus.Subscribe(ctx, b, bus.AgentProgress); return err },
		func() (err error) { f.hookEvents, err = bus.Subscribe(ctx, b, bus.WorkspaceHookEvents); return err },
		func() (err error) { f.spends, err = bus.WatchSet(ctx, b, bus.IssueSpends); return err },
		func() (err error) { f.runCounts, err = bus.WatchSet(ctx, b, bus.RunCounts); return err },
		func() (err error) { f.days, err = bus.WatchSet(ctx, b, bus.DaySpends); return err },
		func() (err error) { f.notes, err = f.openNotifications(ctx, b); return err },
		func() (err error) { f.notify, err = f.openNotifyStatus(ctx, b); return err },
		func() (err error) { f.dropped, err = bus.Watch(ctx, b, bus.NotifyDropped); return err },
	)
}

// loop folds what the streams deliver into the model until ctx ends
// (nil) or one of them ends (an error naming it).
func (f *follower) loop(ctx context.Context) error {
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-f.summaries.C():
			err = fold(e, ok, "run summary watch", f.onSummary)
		case e, ok := <-f.claims.C():
			err = fold(e, ok, "claim watch", f.onClaim)
		case e, ok := <-f.retries.C():
			err = fold(e, ok, "retry watch", f.onRetry)
		case e, ok := <-f.blocks.C():
			err = fold(e, ok, "blocked watch", f.onBlocked)
		case e, ok := <-f.pause.C():
			err = fold(e, ok, "pause watch", f.onPause)
		case e, ok := <-f.configs.C():
			err = fold(e, ok, "config watch", f.onConfig)
		case e, ok := <-f.statuses.C():
			err = fold(e, ok, "workflow status watch", f.onStatus)
		case m, ok := <-f.snaps.C():
			err = fold(m, ok, "snapshot subscription", f.onSnapshot)
		case m, ok := <-f.fails.C():
			err = fold(m, ok, "poll failure subscription", f.onPollFailed)
		case m, ok := <-f.comps.C():
			err = fold(m, ok, "component subscription", f.onComponent)
		case m, ok := <-f.runEvents.C():
			err = fold(m, ok, "run event subscription", f.onRunEvent)
		case m, ok := <-f.progress.C():
			err = fold(m, ok, "agent progress subscription", f.onProgress)
		case m, ok := <-f.hookEvents.C():
			err = fold(m, ok, "hook event subscription", f.onHookEvent)
		case e, ok := <-f.spends.C():
			err = fold(e, ok, "issue spend watch", f.onIssueSpend)
		case e, ok := <-f.runCounts.C():
			err = fold(e, ok, "run count watch", f.onRunCount)
		case e, ok := <-f.days.C():
			err = fold(e, ok, "day spend watch", f.onDaySpend)
		case m, ok := <-f.notes.C():
			err = fold(m, ok, "notification subscription", f.onNotification)
		case e, ok := <-f.notify.C():
			err = fold(e, ok, "notifier status watch", f.onNotifyStatus)
		case e, ok := <-f.dropped.C():
			err = fold(e, ok, "dropped notifications watch", f.onNotifyDropped)
		}
		if err != nil {
			// A stream closed because ctx ended is the end of the
			// follow, not a failure.
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// fold applies v, received with ok, through apply; a closed stream (!ok)
// is the error that says what ended.
func fold[T any](v T, ok bool, what string, apply func(T)) error {
	if !ok {
		return fmt.Errorf("dashboard: %s ended", what)
	}
	apply(v)
	return nil
}

// ready counts one key family's initial values in: the initial state is
// loaded when each has delivered its current values.
func (f *follower) ready() {
	if f.pending--; f.pending == 0 {
		f.s.model.SetReady()
		if f.s.opts.OnReady != nil {
			f.s.opts.OnReady()
		}
	}
}

// The durable state, from KV.

func (f *follower) onSummary(e bus.SetEvent[bus.RunSummary]) {
	switch {
	case e.Ready:
		f.ready()
	case e.Deleted:
		f.s.model.DeleteRun(e.ID)
	default:
		f.s.model.PutRun(e.Value)
	}
}

func (f *follower) onClaim(e bus.SetEvent[bus.Claim]) {
	applySet(e, f.s.model.SetClaim, f.ready)
}

func (f *follower) onRetry(e bus.SetEvent[bus.RetryEntry]) {
	applySet(e, f.s.model.SetRetry, f.ready)
}

func (f *follower) onBlocked(e bus.SetEvent[bus.BlockedEntry]) {
	applySet(e, f.s.model.SetBlocked, f.ready)
}

func (f *follower) onPause(e bus.Entry[bus.PauseState]) {
	f.s.model.SetPaused(e.Value)
}

func (f *follower) onConfig(e bus.Entry[bus.ConfigSnapshot]) {
	f.s.model.SetConfig(e.Value)
}

func (f *follower) onStatus(e bus.Entry[bus.WorkflowStatus]) {
	f.s.model.SetWorkflowStatus(e.Value)
}

// What is only published: polls, component changes, live events. Each
// also counts in the dashboard's metrics.

func (f *follower) onSnapshot(m bus.Message[bus.CandidateSnapshot]) {
	f.s.metrics.poll(time.Duration(m.Data.DurationMS)*time.Millisecond, "")
	f.s.model.SetSnapshot(m.Data)
}

func (f *follower) onPollFailed(m bus.Message[bus.PollFailed]) {
	f.s.metrics.poll(time.Duration(m.Data.DurationMS)*time.Millisecond, m.Data.Class)
	f.s.model.SetPollFailed(m.Data)
}

func (f *follower) onComponent(m bus.Message[bus.ComponentEvent]) {
	f.s.model.SetComponent(m.Data)
}

func (f *follower) onRunEvent(m bus.Message[bus.RunEvent]) {
	f.s.metrics.event(bus.StreamRuns)
	f.s.model.ApplyRunEvent(m.Data, false)
}

func (f *follower) onProgress(m bus.Message[bus.RunProgress]) {
	if m.Data.New > 0 {
		f.s.metrics.events(bus.StreamTurns, m.Data.New)
	}
	f.s.model.ApplyProgress(m.Data)
}

func (f *follower) onHookEvent(m bus.Message[bus.HookEvent]) {
	f.s.metrics.event(bus.StreamHooks)
	f.s.model.ApplyHookEvent(m.Data)
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

// applySet folds one event of a key family into the model through set:
// Ready counts the family in as loaded, a deletion sets nil.
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
