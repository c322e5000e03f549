package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
)

// requestTimeout bounds one request the scheduler makes.
const requestTimeout = time.Minute

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Once makes the scheduler run a single tick: it dispatches from the
	// first snapshot, queues no retries, and closes Done when those runs
	// have finished (symphony run --once).
	Once bool
	// Fence, when set, is asked before every dispatch whether this
	// scheduler still holds the cluster's scheduler lease (bus.Lease's
	// Check: a compare-and-set on the lease's revision); it returns the
	// holding's fencing token, which the claim records. An error means the
	// lease is lost: nothing is dispatched. Nil: the only scheduler (the
	// embedded server).
	Fence func(ctx context.Context) (uint64, error)
	// killRun stands in for killRun in tests (nil: killRun).
	killRun func(runID string) error
	// looped, if set, is told after each turn of Run's loop how many
	// requests other than workspace removals (which a test may hold) are
	// still in flight, and how many removals are queued or in flight:
	// tests' barrier waits for the answers of the first.
	looped func(inFlight, removals int)
}

// Component is the scheduler: the single authority over which issue runs.
// All of its state lives in Run's goroutine (actor style); durable parts
// (claims, retries, blocked issues) are mirrored in KV symphony_state.
type Component struct {
	opts     Options
	log      *slog.Logger
	done     chan struct{}
	doneOnce sync.Once
	// dropped counts the notifications not published (notify.go).
	dropped atomic.Int64
}

// Done is closed when a Once scheduler has finished its tick and its runs.
func (c *Component) Done() <-chan struct{} { return c.done }

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("scheduler: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.killRun == nil {
		opts.killRun = killRun
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompScheduler), done: make(chan struct{})}, nil
}

// Name is "scheduler".
func (c *Component) Name() string { return bus.CompScheduler }

// running is an issue with a live run.
type running struct {
	runID     string
	issue     bus.Issue
	attempt   *int
	state     string // normalized state at dispatch
	startedAt time.Time
	lastEvent time.Time
	// onEnd says what reconciliation decided: release the claim instead of
	// retrying, and remove the workspace.
	release, removeWorkspace bool
	// cancelSent avoids canceling the same run at every tick; cancelAt
	// is when the runner last acknowledged the cancel, which is asked
	// again (cancelStatus, cancelReason) after cancelWait.
	cancelSent   bool
	cancelAt     time.Time
	cancelStatus bus.RunStatus
	cancelReason string
	// holdReason, set by an operator cancel, parks the issue as blocked
	// when the run ends, so the next poll does not start it again.
	holdReason string
	// budget names the cap of a budget_exceeded cancel (the daily cap,
	// day.go): the cancel carries it, and the park uses it when the
	// run's end does not.
	budget *bus.BlockedEntry
}

// actor is the scheduler's state, owned by one Run call.
type actor struct {
	c       *Component
	b       *bus.Bus
	log     *slog.Logger
	cfg     *bus.ConfigSnapshot
	running map[string]*running // by issue id
	retries map[string]bus.RetryEntry
	blocked map[string]bus.BlockedEntry
	lastEnd map[string]time.Time // when an issue's last run ended
	// retryT fires at the earliest due retry (armRetryTimer).
	retryT *time.Timer
	runSeq int
	// ticked is set after the first tick (Once mode stops there).
	ticked bool
	// swept is set once the startup sweep of terminal workspaces worked;
	// sweeping while its list of terminal issues is being fetched.
	swept, sweeping bool
	// reconciling is set while reconciliation's tracker refresh is in
	// flight (reconcile.go).
	reconciling bool
	// firing holds the due retries whose tracker refresh is in flight
	// (retry.go): not fired again, not timed, until it is answered.
	firing map[string]bool
	// async are the requests in flight off this goroutine (async.go);
	// removes the workspace removals among them (removal.go).
	async   asyncs
	removes removals
	// reconcileT fires the standalone reconcile, for when snapshots stop
	// coming (resetReconcile).
	reconcileT *time.Timer
	// paused stops dispatch (operator); refreshT fires a coalesced
	// operator refresh.
	paused   bool
	refreshT *time.Timer
	refreshQ bool
	// lastRefresh is when the last operator refresh ran.
	lastRefresh time.Time
	// status is the workflow's latest load outcome, watched (nil until the
	// watch delivered it; a tick then reads it).
	status *bus.WorkflowStatus
	// retriesListed is set once start-up listed every stored retry into
	// retries; retryUnsure then holds the issues whose stored retry may
	// outlive their entry in retries (a delete that failed). Only then may
	// a dispatch skip deleting a retry it does not know of.
	retriesListed bool
	retryUnsure   map[string]bool
	// unanswered is, by issue, the run of a dispatch whose answer never
	// came: the runner may run it (unanswered.go).
	unanswered map[string]string
	// day is today's spend as last read or written (day.go); heldDay the
	// day the last check found at a daily cap ("" when none), dayLogged
	// the day and cap last logged; dayT fires at the zone's midnight.
	day       bus.DaySpend
	heldDay   string
	dayLogged string
	dayT      *time.Timer
	// zone is the loaded budget.per_day.time_zone, zoneName its name.
	zone     *time.Location
	zoneName string
	// lastStatus is how each issue's last run ended, while this process
	// saw it (notify.go tells max_runs_reached from retries_exhausted).
	lastStatus map[string]bus.RunStatus
	// notes publishes notifications off this goroutine (notify.go).
	notes *notifier
	// early is the latest snapshot that came before the first config (the
	// two arrive on different channels, in either order), ticked when the
	// config comes: dropped, dispatch would wait a whole polling interval.
	early *bus.CandidateSnapshot
}

// checkOnce closes Done when a Once scheduler has nothing left running
// and no request in flight (a workspace removal, the sweep, a refresh).
func (a *actor) checkOnce() {
	if a.c.opts.Once && a.ticked && len(a.running) == 0 && a.async.n == 0 {
		a.c.doneOnce.Do(func() { close(a.c.done) })
	}
}

// Run schedules until ctx ends. Running agents are left to the agent
// runner (which stops them with the process); their claims stay in KV so a
// restart finds them.
func (c *Component) Run(ctx context.Context) error {
	a := c.newActor()
	defer a.stopTimers()
	// What the scheduler serves, watches and subscribes to belongs to its
	// client. Operator commands are served on the bus but applied here, in
	// the actor's goroutine, like every other change to the state.
	ctx, cancel := context.WithCancel(ctx)
	cl := c.opts.Bus.Client(bus.CompScheduler)
	stopNotes := a.notes.start(ctx, c.opts.Bus)
	defer func() {
		cancel()
		cl.Close()
		// The requests in flight end with ctx; their answers are dropped.
		a.async.wg.Wait()
		stopNotes()
	}()
	controls, err := a.serveControls(ctx, cl)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	in, err := a.subscribe(ctx, cl)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	in.controls = controls
	return a.loop(ctx, in)
}

// newActor is the state of one Run call, its timers made and stopped (the
// reconcile timer waits for the first config).
func (c *Component) newActor() *actor {
	a := &actor{c: c, b: c.opts.Bus, log: c.log, running: map[string]*running{}, retries: map[string]bus.RetryEntry{},
		blocked: map[string]bus.BlockedEntry{}, lastEnd: map[string]time.Time{}, retryUnsure: map[string]bool{},
		async: newAsyncs(), removes: newRemovals(), firing: map[string]bool{}, lastStatus: map[string]bus.RunStatus{},
		notes: newNotifier(c), unanswered: map[string]string{}}
	a.retryT = time.NewTimer(time.Hour)
	a.retryT.Stop()
	a.refreshT = time.NewTimer(time.Hour)
	a.refreshT.Stop()
	a.reconcileT = time.NewTimer(time.Hour)
	a.dayT = time.NewTimer(time.Hour)
	a.dayT.Stop()
	return a
}

// stopTimers stops the actor's timers when Run returns.
func (a *actor) stopTimers() {
	a.reconcileT.Stop()
	a.refreshT.Stop()
	a.retryT.Stop()
	a.dayT.Stop()
}

// inputs are what the actor's loop waits on besides its own timers and
// the answers of its requests.
type inputs struct {
	configs   *bus.Stream[bus.Entry[bus.ConfigSnapshot]]
	statuses  *bus.Stream[bus.Entry[bus.WorkflowStatus]]
	snaps     *bus.Subscription[bus.CandidateSnapshot]
	runEvents *bus.Subscription[bus.RunEvent]
	progress  *bus.Subscription[bus.RunProgress]
	controls  <-chan control
}

// subscribe opens the watches and subscriptions the loop reads; they end
// with ctx or the client.
func (a *actor) subscribe(ctx context.Context, cl *bus.Client) (in inputs, err error) {
	if in.configs, err = bus.Watch(ctx, cl, bus.ConfigCurrent); err != nil {
		return in, err
	}
	// The workflow's status is watched, not read at every tick: a read is a
	// round trip on the way from a poll to its dispatches.
	if in.statuses, err = bus.Watch(ctx, cl, bus.ConfigStatus); err != nil {
		return in, err
	}
	if in.snaps, err = bus.Subscribe(ctx, cl, bus.TrackerSnapshots); err != nil {
		return in, err
	}
	if in.runEvents, err = bus.Subscribe(ctx, cl, bus.RunEvents); err != nil {
		return in, err
	}
	in.progress, err = bus.Subscribe(ctx, cl, bus.AgentProgress)
	return in, err
}

// loop is the actor's goroutine: it takes one input at a time, so the
// state changes only here, until ctx ends or an input does.
func (a *actor) loop(ctx context.Context, in inputs) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-in.configs.C():
			if !ok {
				return components.Stopped(ctx, errors.New("config watch ended"))
			}
			a.onConfig(ctx, e.Value)
		case e, ok := <-in.statuses.C():
			if !ok {
				return components.Stopped(ctx, errors.New("config status watch ended"))
			}
			st := e.Value
			a.status = &st
		case m, ok := <-in.snaps.C():
			if !ok {
				return components.Stopped(ctx, errors.New("snapshot subscription ended"))
			}
			a.onSnapshot(ctx, m.Data)
		case m, ok := <-in.runEvents.C():
			if !ok {
				return components.Stopped(ctx, errors.New("run event subscription ended"))
			}
			a.onRunEvent(ctx, m.Data)
		case m, ok := <-in.progress.C():
			if !ok {
				return components.Stopped(ctx, errors.New("agent progress subscription ended"))
			}
			a.onProgress(m.Data)
		case <-a.reconcileT.C:
			if a.cfg != nil {
				a.reconcile(ctx)
				a.resetReconcile()
			}
		case <-a.retryT.C:
			a.fireRetries(ctx)
		case <-a.dayT.C:
			if a.cfg != nil {
				a.rollover(ctx)
			}
		case c := <-in.controls:
			c.reply <- a.control(ctx, c.req)
		case f := <-a.async.done:
			a.settle(ctx, f)
		case <-a.refreshT.C:
			// Without a config yet the refresh stays queued and runs as
			// soon as the config arrives.
			if a.cfg != nil {
				a.refreshQ = false
				a.refreshNow(ctx)
			}
		}
		if a.c.opts.looped != nil {
			a.c.opts.looped(a.async.n-a.removes.inFlight, len(a.removes.busy))
		}
	}
}

// onConfig takes a new config; the first one restores the durable state
// (startup) and runs an operator refresh asked for before it.
func (a *actor) onConfig(ctx context.Context, snap bus.ConfigSnapshot) {
	first := a.cfg == nil
	changed := !first && a.cfg.Version != snap.Version
	a.cfg = &snap
	a.resetReconcile()
	// The zone of the daily caps may have changed: the rollover is timed
	// again, and today's copy read afresh.
	a.day = bus.DaySpend{}
	a.armDayTimer()
	if changed {
		a.recheckParks(ctx)
	}
	if first {
		a.startup(ctx)
		if a.refreshQ {
			a.refreshT.Reset(0)
		}
		if early := a.early; early != nil {
			a.early = nil
			a.onSnapshot(ctx, *early)
		}
	}
}

// onSnapshot runs a tick on the tracker's poll; one that comes before the
// first config is kept for it (early).
func (a *actor) onSnapshot(ctx context.Context, snap bus.CandidateSnapshot) {
	if a.cfg == nil {
		a.early = &snap
		return
	}
	a.tick(ctx, snap)
	// The tick reconciled: the standalone reconcile (for when snapshots
	// stop coming, e.g. the tracker is failing) waits a full interval
	// again instead of refreshing twice.
	a.resetReconcile()
}

// resetReconcile times the standalone reconcile a polling interval (at
// least 100 ms) from now.
func (a *actor) resetReconcile() {
	a.reconcileT.Reset(max(a.cfg.Config.Polling.Interval(), 100*time.Millisecond))
}

// ask bounds one request the actor waits for (requestTimeout).
func (a *actor) ask(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}

// issueLog is the log with the issue's id and identifier.
func (a *actor) issueLog(iss bus.Issue) *slog.Logger {
	return a.log.With("issue_id", iss.ID, "issue_identifier", iss.Identifier)
}
