package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/runlog"
)

// requestTimeout bounds one request the scheduler makes.
const requestTimeout = time.Minute

// cancelGrace is, beyond the hook timeout, the time a canceled run is given
// to end before the scheduler asks the agent runner again: the runner's
// kill grace (agentrunner.KillGrace, 5 s), its output drain cap (8 s) and
// the slack of its after_run request (30 s), with room to spare. Asking
// again is safe whenever it comes: nothing is dispatched while the runner
// still has the run.
const cancelGrace = time.Minute

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Once makes the scheduler run a single tick: it dispatches from the
	// first snapshot, queues no retries, and closes Done when those runs
	// have finished (symphony run --once).
	Once bool
	// Clock decides retry and stall timing (default: the wall clock).
	Clock Clock
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
	if opts.Clock == nil {
		opts.Clock = realClock{}
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
	clock   Clock
	retryT  Timer
	runSeq  int
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
}

// control is an operator command on its way into the actor.
type control struct {
	req   bus.Control
	reply chan bus.ControlResult
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
	a := &actor{c: c, b: c.opts.Bus, log: c.log, running: map[string]*running{}, retries: map[string]bus.RetryEntry{},
		blocked: map[string]bus.BlockedEntry{}, lastEnd: map[string]time.Time{}, retryUnsure: map[string]bool{},
		async: newAsyncs(), removes: newRemovals(), firing: map[string]bool{}}
	a.clock = c.opts.Clock
	a.retryT = a.clock.NewTimer(time.Hour)
	a.retryT.Stop()
	defer a.retryT.Stop()
	a.refreshT = time.NewTimer(time.Hour)
	a.refreshT.Stop()
	defer a.refreshT.Stop()

	// Operator commands are served on the bus but applied here, in the
	// actor's goroutine, like every other change to the state.
	ctx, cancelServe := context.WithCancel(ctx)
	controls := make(chan control)
	served, err := bus.ServeN(ctx, a.b, bus.SchedulerControl, 16, func(hctx context.Context, _ string, req bus.Control) (bus.ControlResult, error) {
		c := control{req: req, reply: make(chan bus.ControlResult, 1)}
		select {
		case controls <- c:
		case <-hctx.Done():
			return bus.ControlResult{}, hctx.Err()
		}
		select {
		case res := <-c.reply:
			return res, nil
		case <-hctx.Done():
			return bus.ControlResult{}, hctx.Err()
		}
	})
	if err != nil {
		cancelServe()
		return components.Stopped(ctx, err)
	}
	defer func() {
		cancelServe()
		<-served
		// The requests in flight end with ctx; their answers are dropped.
		a.async.wg.Wait()
	}()

	configs, err := bus.Watch(ctx, a.b, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	// The workflow's status is watched, not read at every tick: a read is a
	// round trip on the way from a poll to its dispatches.
	statuses, err := bus.Watch(ctx, a.b, bus.ConfigStatus)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	snaps, err := bus.Subscribe(ctx, a.b, bus.TrackerSnapshots)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	runEvents, err := bus.Subscribe(ctx, a.b, bus.RunEvents)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	progress, err := bus.Subscribe(ctx, a.b, bus.AgentProgress)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	reconcile := a.clock.NewTimer(time.Hour)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-configs.C():
			if !ok {
				return components.Stopped(ctx, errors.New("config watch ended"))
			}
			snap := e.Value
			first := a.cfg == nil
			a.cfg = &snap
			reconcile.Reset(max(snap.Config.Polling.Interval(), 100*time.Millisecond))
			if first {
				a.startup(ctx)
				if a.refreshQ {
					a.refreshT.Reset(0)
				}
			}
		case e, ok := <-statuses.C():
			if !ok {
				return components.Stopped(ctx, errors.New("config status watch ended"))
			}
			st := e.Value
			a.status = &st
		case m, ok := <-snaps.C():
			if !ok {
				return components.Stopped(ctx, errors.New("snapshot subscription ended"))
			}
			if a.cfg != nil {
				a.tick(ctx, m.Data)
				// The tick reconciled: the standalone reconcile (for when
				// snapshots stop coming, e.g. the tracker is failing) waits
				// a full interval again instead of refreshing twice.
				reconcile.Reset(max(a.cfg.Config.Polling.Interval(), 100*time.Millisecond))
			}
		case m, ok := <-runEvents.C():
			if !ok {
				return components.Stopped(ctx, errors.New("run event subscription ended"))
			}
			a.onRunEvent(ctx, m.Data)
		case m, ok := <-progress.C():
			if !ok {
				return components.Stopped(ctx, errors.New("agent progress subscription ended"))
			}
			for _, r := range a.running {
				if r.runID == m.Data.RunID {
					r.lastEvent = a.clock.Now()
				}
			}
		case <-reconcile.C():
			if a.cfg != nil {
				a.reconcile(ctx)
				reconcile.Reset(max(a.cfg.Config.Polling.Interval(), 100*time.Millisecond))
			}
		case <-a.retryT.C():
			a.fireRetries(ctx)
		case c := <-controls:
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

func (a *actor) ask(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}

func (a *actor) issueLog(iss bus.Issue) *slog.Logger {
	return a.log.With("issue_id", iss.ID, "issue_identifier", iss.Identifier)
}

// sweep removes the workspaces of issues already terminal (spec §8.6). It
// is tried at start-up and on every tick until it has worked once (the
// tracker may not be ready when the scheduler starts). Neither the list
// (every terminal issue the tracker has) nor the removals are waited for
// here. It is also what finishes a removal a crash cut short.
func (a *actor) sweep(ctx context.Context) {
	if a.swept || a.sweeping {
		return
	}
	a.sweeping = true
	states, asked := a.cfg.Config.Tracker.TerminalStates, time.Now()
	goAsk(ctx, a, requestTimeout,
		func(rctx context.Context) (bus.IssueList, error) {
			return bus.Ask(rctx, a.b, bus.TrackerTerminal, bus.IssuesByStates{States: states, Outline: true})
		},
		func(ctx context.Context, list bus.IssueList, err error) {
			a.sweeping = false
			if err != nil {
				a.log.Warn("startup sweep: terminal issues unavailable; will try again next tick", "err", err)
				return
			}
			a.swept = true
			for _, iss := range list.Issues {
				if a.ranSince(iss.ID, asked) || !safeid.Valid(iss.Identifier) {
					continue
				}
				a.removeWorkspace(ctx, iss)
			}
		})
}

// ranSince reports whether the issue has had a run since the given time,
// or has one now, or a retry queued: the list of terminal issues that
// time was asked for may be out of date for it (the issue was reopened
// and dispatched while the list was on its way), and its workspace holds
// the agent's work. Reconciliation removes the workspace if the issue is
// terminal after all, when its run ends.
func (a *actor) ranSince(id string, t time.Time) bool {
	_, run := a.running[id]
	_, retry := a.retries[id]
	ended, ok := a.lastEnd[id]
	return run || retry || a.firing[id] || (ok && ended.After(t))
}

// startup restores the durable state: retry timers resume at their due
// times; runs the agent runner still has are adopted; the leftover
// processes of every other claim's run are killed, then its stored retry
// (if any) takes its course; else a stored end of the run gets the
// follow-up a live end would have had (see interrupted), and a run with
// none is recorded as interrupted and dispatched again once.
func (a *actor) startup(ctx context.Context) {
	a.sweep(ctx)
	switch p, err := bus.Get(ctx, a.b, bus.DispatchPause); {
	case err == nil:
		a.paused = p.Value.Paused
		if a.paused {
			a.log.Info("dispatch stays paused (paused by the operator before the restart)", "since", p.Value.At)
		}
	case !errors.Is(err, bus.ErrKeyNotFound):
		a.log.Error("restore pause state", "err", err)
	}
	if blocked, err := bus.All(ctx, a.b, bus.Blocks); err == nil {
		a.blocked = blocked
	} else {
		a.log.Error("restore blocked issues", "err", err)
	}
	retries, err := bus.All(ctx, a.b, bus.Retries)
	if err != nil {
		a.log.Error("restore retries", "err", err)
	}
	a.retriesListed = err == nil
	for id, r := range retries {
		a.retries[id] = r
	}
	claims, err := bus.All(ctx, a.b, bus.Claims)
	if err != nil {
		a.log.Error("restore claims", "err", err)
	}
	// Runs still in flight (only the scheduler restarted) are adopted.
	live := map[string]bus.Dispatch{}
	lctx, cancel := a.ask(ctx)
	if lr, err := bus.Ask(lctx, a.b, bus.AgentRuns, bus.ListRuns{}); err == nil {
		for _, d := range lr.Runs {
			live[d.RunID] = d
		}
	} else {
		a.log.Warn("agent runner's live runs unavailable; unmatched claims count as interrupted", "err", err)
	}
	cancel()
	// A claim and a stored retry can coexist while the claim's run is
	// alive (the retry's delete failed; a dispatch timed out after the
	// runner had accepted it): the retry must not start a second agent
	// beside it.
	for id, cl := range claims {
		log := a.log.With("issue_id", id, "issue_identifier", cl.Identifier, "run_id", cl.RunID)
		_, queued := a.retries[id]
		if d, ok := live[cl.RunID]; ok {
			now := a.clock.Now()
			a.running[id] = &running{runID: d.RunID, issue: d.Issue, attempt: d.Attempt, state: normState(d.Issue.State), startedAt: now, lastEvent: now}
			if queued {
				// The live run owns the claim; its end decides what next.
				a.dropRetry(ctx, id)
			}
			log.Info("adopted a run in flight", "dropped_retry", queued)
			// A run the runner lists while its end is being recorded may
			// have stored that end before the run event subscription
			// began: follow it up now (a later copy is ignored).
			if end := a.storedEnd(ctx, cl.RunID); end != nil {
				log.Info("the adopted run has ended", "status", end.Status)
				a.onRunEvent(ctx, *end)
			}
			continue
		}
		// An agent the dead process left running must not work beside the
		// new one: find it and its descendants by the run's marker, until
		// none is left. If that cannot be made sure, the claim stays and
		// nothing is dispatched: not even its stored retry, which stays
		// stored for the next start (retryUnsure: a later dispatch of the
		// issue still deletes it).
		if err := a.c.opts.killRun(cl.RunID); err != nil {
			if queued {
				delete(a.retries, id)
				a.retryUnsure[id] = true
			}
			log.Error("processes of the interrupted run may still be alive; the issue stays claimed", "err", err)
			continue
		}
		if queued {
			continue // the stored retry dispatches it again
		}
		a.interrupted(ctx, id, cl)
	}
	a.armRetryTimer()
}

// interrupted handles a claim whose run is gone, its processes killed.
func (a *actor) interrupted(ctx context.Context, id string, cl bus.Claim) {
	log := a.log.With("issue_id", id, "issue_identifier", cl.Identifier, "run_id", cl.RunID)
	attempt := 1
	if cl.Attempt != nil {
		attempt = *cl.Attempt + 1
	}
	if finished := a.storedEnd(ctx, cl.RunID); finished != nil {
		// Its end was recorded before the restart; only the follow-up was
		// lost (the scheduler stops first at a shutdown, and a crash can
		// come between the two). The crash may have come between storing
		// the end and updating the run's summary: make the summary show it.
		if err := runlog.EnsureEnded(ctx, a.b, *finished); err != nil {
			log.Error("repair the summary of a finished run", "err", err)
		}
		switch finished.Status {
		case bus.RunInterrupted:
			// Cut short by the shutdown (the runner records it so):
			// dispatched again once, now, as after a crash.
			a.queueRetry(ctx, bus.RetryEntry{IssueID: id, Identifier: cl.Identifier, Attempt: attempt, DueAt: a.clock.Now(), Error: "interrupted"})
			log.Warn("run interrupted by a restart; dispatching again")
		case bus.RunCanceled:
			// Canceled by reconciliation or an operator, whose reasons died
			// with the process: the next poll decides afresh.
			a.release(ctx, id)
			log.Info("claim of a canceled run released at start-up")
		default:
			// Succeeded, failed, blocked, timed out, stalled: the follow-up
			// a live end gets (a continuation check, a retry with its
			// backoff, a block), not a fresh dispatch.
			now := a.clock.Now()
			iss := issueOf(finished.Issue, id, cl.Identifier)
			a.running[id] = &running{runID: cl.RunID, issue: iss, attempt: cl.Attempt, state: normState(iss.State), startedAt: now, lastEvent: now}
			log.Info("following up a run that ended before the restart", "status", finished.Status)
			a.onRunEvent(ctx, *finished)
		}
		return
	}
	end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now().UTC(), Issue: bus.IssueRef{ID: id, Identifier: cl.Identifier},
		Attempt: cl.Attempt, Status: bus.RunInterrupted, Error: "symphony stopped while the run was in flight"}
	if err := runlog.Record(ctx, a.b, end, cl.RunID+"-interrupted"); err != nil {
		log.Error("record interrupted run", "err", err)
	}
	a.queueRetry(ctx, bus.RetryEntry{IssueID: id, Identifier: cl.Identifier, Attempt: attempt, DueAt: a.clock.Now(), Error: "interrupted"})
	log.Warn("run interrupted by a restart; dispatching again")
}

// issueOf is the issue a stored run event names, as far as it says. Its
// state is left out: the stored one is the dispatch's, and the agent may
// have moved the issue since; a block made from it takes the state the
// next poll sees (blockedStateChanged).
func issueOf(ref bus.IssueRef, id, identifier string) bus.Issue {
	iss := bus.Issue{ID: id, Identifier: identifier, Title: ref.Title}
	if ref.URL != "" {
		u := ref.URL
		iss.URL = &u
	}
	return iss
}

// storedEnd is the run's end as stored in the run event stream (nil: none
// could be read).
func (a *actor) storedEnd(ctx context.Context, runID string) *bus.RunEvent {
	var finished *bus.RunEvent
	for m, err := range bus.History(ctx, a.b, bus.RunEvents, runID, string(bus.RunFinished)) {
		if err == nil && m.Data.RunID == runID {
			finished = &m.Data
		}
	}
	return finished
}

// killRun kills every process marked with the run id, again and again
// until none is left (a process may fork while it is being killed), for at
// most five seconds.
func killRun(runID string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := procscan.Kill("SYMPHONY_RUN_ID", runID)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run %s: processes still appearing after 5s", runID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// occupancy is the view Check needs.
func (a *actor) occupancy() Occupancy {
	occ := Occupancy{Running: map[string]string{}, Claimed: map[string]bool{}, Blocked: map[string]bool{}, Removing: a.removes.busy}
	for id, r := range a.running {
		occ.Running[id] = r.state
		occ.Claimed[id] = true
	}
	for id := range a.retries {
		occ.Claimed[id] = true
	}
	for id := range a.blocked {
		occ.Blocked[id] = true
	}
	return occ
}

// tick is one poll: reconcile, then dispatch from the snapshot.
func (a *actor) tick(ctx context.Context, snap bus.CandidateSnapshot) {
	a.sweep(ctx)
	a.reconcile(ctx)
	a.dispatchFrom(ctx, snap)
}

// dispatchFrom dispatches eligible candidates of the snapshot.
func (a *actor) dispatchFrom(ctx context.Context, snap bus.CandidateSnapshot) {
	st := a.status
	if st == nil {
		if e, err := bus.Get(ctx, a.b, bus.ConfigStatus); err == nil {
			st = &e.Value
		}
	}
	if st != nil && !st.Valid {
		a.log.Warn("workflow invalid; dispatch skipped this tick (running agents continue)", "error", st.Error)
		return
	}
	if a.paused {
		if a.c.opts.Once && !a.ticked {
			// The pause is durable: a --once run after a paused session
			// must end, not wait for a resume that cannot come.
			a.log.Warn("dispatch is paused (stored by an earlier session): --once dispatches nothing; resume it from the dashboard or the API")
			a.ticked = true
			a.checkOnce()
		}
		return
	}
	if a.c.opts.Once && a.ticked {
		return
	}
	defer func() {
		a.ticked = true
		a.checkOnce()
	}()
	cfg := a.cfg.Config
	candidates := make([]bus.Issue, 0, len(snap.Issues))
	var stale []string
	for _, iss := range snap.Issues {
		// A snapshot taken before this issue's last run ended is stale for
		// it: ask for the issue now rather than trust it (refreshStale:
		// dispatched from the answer when it comes).
		if ended, ok := a.lastEnd[iss.ID]; ok && !snap.FetchedAt.After(ended) {
			stale = append(stale, iss.ID)
			continue
		}
		candidates = append(candidates, iss)
	}
	a.refreshStale(ctx, snap, stale)
	// Blocked issues are cleared when their tracker state changes.
	for _, iss := range candidates {
		if bl, ok := a.blocked[iss.ID]; ok && a.blockedStateChanged(ctx, bl, iss.State) {
			a.clearBlocked(ctx, iss.ID)
		}
	}
	dispatch, skipped := Plan(cfg, candidates, a.occupancy())
	for _, iss := range candidates {
		switch skipped[iss.ID] {
		case UnsafeIdentifier:
			a.log.Error("issue refused: unsafe identifier (never dispatched)", "issue_id", iss.ID, "identifier", safeid.Quote(iss.Identifier), "rule", safeid.Rule)
		case WorkspaceRemoving:
			a.holdForRemoval(iss.ID)
		}
	}
	for _, iss := range dispatch {
		a.dispatch(ctx, iss, nil)
	}
}

// newRunID is unique per process and readable: <identifier>-<time>-<n>.
func (a *actor) newRunID(iss bus.Issue) string {
	a.runSeq++
	return iss.Identifier + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.Itoa(a.runSeq)
}

// dispatch claims the issue and asks the agent runner to run it.
func (a *actor) dispatch(ctx context.Context, iss bus.Issue, attempt *int) {
	log := a.issueLog(iss)
	runID := a.newRunID(iss)
	key, err := bus.Claims.Key(iss.ID)
	if err != nil {
		log.Error("cannot claim issue", "err", err)
		return
	}
	claim := bus.Claim{RunID: runID, IssueID: iss.ID, Identifier: iss.Identifier, Attempt: attempt, At: time.Now().UTC()}
	if _, queued := a.retries[iss.ID]; queued {
		// A retry owns the claim already: take it over.
		_, err = bus.Put(ctx, a.b, key, claim)
	} else {
		_, err = bus.Create(ctx, a.b, key, claim)
	}
	if errors.Is(err, bus.ErrKeyExists) {
		log.Warn("issue already claimed; not dispatched")
		return
	}
	if err != nil {
		log.Error("claim failed; not dispatched", "err", err)
		return
	}
	// Before the dispatch, even when no retry is known: a retry whose
	// earlier delete failed must not come back after a restart and take
	// the claim over (dropRetry knows when no retry can be stored).
	a.dropRetry(ctx, iss.ID)
	dctx, cancel := a.ask(ctx)
	_, err = bus.Ask(dctx, a.b, bus.AgentDispatch, bus.Dispatch{RunID: runID, Issue: iss, Attempt: attempt})
	cancel()
	if err != nil {
		log.Error("dispatch failed; retrying later", "err", err, "run_id", runID)
		next := 1
		if attempt != nil {
			next = *attempt + 1
		}
		a.queueRetry(ctx, bus.RetryEntry{IssueID: iss.ID, Identifier: iss.Identifier, Attempt: next,
			DueAt: a.clock.Now().Add(RetryDelay(next, a.cfg.Config.Agent.MaxRetryBackoffMS)), Error: err.Error()})
		a.armRetryTimer()
		return
	}
	now := a.clock.Now()
	a.running[iss.ID] = &running{runID: runID, issue: iss, attempt: attempt, state: normState(iss.State), startedAt: now, lastEvent: now}
	log.Info("dispatched", "run_id", runID, "attempt", attemptText(attempt))
}

// onRunEvent follows runs; run_finished decides what comes next.
func (a *actor) onRunEvent(ctx context.Context, ev bus.RunEvent) {
	r, ok := a.running[ev.Issue.ID]
	if !ok || r.runID != ev.RunID {
		return
	}
	if ev.Event != bus.RunFinished {
		r.lastEvent = a.clock.Now()
		return
	}
	delete(a.running, ev.Issue.ID)
	a.lastEnd[ev.Issue.ID] = time.Now()
	log := a.issueLog(r.issue).With("run_id", ev.RunID, "status", ev.Status)
	defer a.checkOnce()
	switch {
	case r.release || r.removeWorkspace:
		if r.removeWorkspace {
			a.removeWorkspace(ctx, r.issue)
		}
		a.release(ctx, r.issue.ID)
		if r.holdReason != "" {
			a.block(ctx, r.issue, ev.RunID, r.holdReason)
			log.Info("run canceled by the operator; issue held until cleared or its state changes")
			break
		}
		log.Info("run stopped by reconciliation; issue released")
	case a.c.opts.Once && ev.Status != bus.RunBlocked:
		a.release(ctx, r.issue.ID)
		log.Info("run finished (once mode: no retry)", "err", ev.Error)
	case ev.Status == bus.RunSucceeded:
		// The worker finished cleanly: check back shortly (spec §7.1).
		a.queueRetry(ctx, bus.RetryEntry{IssueID: r.issue.ID, Identifier: r.issue.Identifier, Attempt: 1, DueAt: a.clock.Now().Add(ContinuationDelay)})
	case ev.Status == bus.RunBlocked:
		a.release(ctx, r.issue.ID)
		a.block(ctx, r.issue, ev.RunID, ev.Error)
		log.Warn("run blocked; waiting for an operator or a state change", "err", ev.Error)
	default:
		next := 1
		if r.attempt != nil {
			next = *r.attempt + 1
		}
		a.queueRetry(ctx, bus.RetryEntry{IssueID: r.issue.ID, Identifier: r.issue.Identifier, Attempt: next,
			DueAt: a.clock.Now().Add(RetryDelay(next, a.cfg.Config.Agent.MaxRetryBackoffMS)), Error: ev.Error})
		log.Warn("run failed; retry queued", "err", ev.Error, "attempt", next)
	}
	a.armRetryTimer()
}

// reconcile stops stalled runs and runs whose issues are no longer
// routable (spec §8.5), and follows up canceled runs whose end is late. The
// tracker's answer about the issues held is not waited for here
// (refreshHeld, reconcile.go). A failed refresh keeps every worker running.
func (a *actor) reconcile(ctx context.Context) {
	cfg := a.cfg.Config
	// A canceled run whose end has not come in time: ask the runner again
	// (its end may have been lost on the way), whatever the tracker says.
	for _, r := range a.running {
		if r.cancelSent && a.clock.Now().Sub(r.cancelAt) >= a.cancelWait() {
			a.cancel(ctx, r, r.cancelStatus, r.cancelReason)
		}
	}
	stall := time.Duration(cfg.Claude.StallTimeoutMS) * time.Millisecond
	if cfg.Agent.Kind == bus.AgentCodex {
		stall = time.Duration(cfg.Codex.StallTimeoutMS) * time.Millisecond
	}
	if stall > 0 {
		for _, r := range a.running {
			if idle := a.clock.Now().Sub(r.lastEvent); idle > stall && !r.cancelSent {
				a.cancel(ctx, r, bus.RunStalled, fmt.Sprintf("no agent event for %s (stall_timeout_ms)", idle.Round(time.Second)))
			}
		}
	}
	if len(a.running) == 0 && len(a.blocked) == 0 {
		return
	}
	a.refreshHeld(ctx)
}

// cancel asks the agent runner to stop the run. Once the runner has
// acknowledged it, the run's end is awaited on the run event subscription,
// and the runner is asked again after cancelWait (reconcile): the run's end
// may never come (a failed publish, an overflowing subscription).
func (a *actor) cancel(ctx context.Context, r *running, status bus.RunStatus, reason string) {
	again := r.cancelSent
	cctx, cancel := a.ask(ctx)
	res, err := bus.Ask(cctx, a.b, bus.AgentCancel, bus.CancelRun{RunID: r.runID, Reason: reason, Status: status})
	cancel()
	log := a.issueLog(r.issue).With("run_id", r.runID)
	if err != nil {
		log.Warn("cancel did not reach the agent runner; will try again", "err", err)
		return
	}
	r.cancelSent, r.cancelAt, r.cancelStatus, r.cancelReason = true, a.clock.Now(), status, reason
	switch {
	case res.Found && again:
		log.Warn("the agent runner still has the canceled run; asking again later", "canceled_for", a.cancelWait())
	case res.Found:
		log.Info("run canceled", "status", status, "reason", reason)
	default:
		a.runGone(ctx, r, reason)
	}
}

// runGone follows up a run the agent runner no longer has. Its end on
// record is used; without one (the runner restarted, say), the run is
// recorded as interrupted. Either is applied here, not left to the run
// event subscription, which may have lost it; the copy the subscription
// may still bring is ignored (the issue no longer runs that run). When
// neither can be had, the run stays and the runner is asked again later.
func (a *actor) runGone(ctx context.Context, r *running, reason string) {
	log := a.issueLog(r.issue).With("run_id", r.runID)
	if end := a.storedEnd(ctx, r.runID); end != nil {
		if err := runlog.EnsureEnded(ctx, a.b, *end); err != nil {
			log.Error("repair the summary of a finished run", "err", err)
		}
		log.Info("cancel found the run already ended")
		a.onRunEvent(ctx, *end)
		return
	}
	if a.endRecorded(ctx, r.runID) {
		// A second, "interrupted" end must never overwrite a recorded one.
		log.Warn("the run's end is recorded but could not be read; asking again later")
		return
	}
	end := bus.RunEvent{RunID: r.runID, Event: bus.RunFinished, At: time.Now().UTC(), Issue: r.issue.Ref(), Attempt: r.attempt,
		Status: bus.RunInterrupted, Error: "the agent runner no longer has this run (" + reason + ")"}
	if err := runlog.Record(ctx, a.b, end, r.runID+"-lost"); err != nil {
		log.Error("record lost run; asking again later", "err", err)
		return
	}
	log.Warn("run lost by the agent runner; recorded as interrupted")
	a.onRunEvent(ctx, end)
}

// cancelWait is how long a canceled run may take to end before the agent
// runner is asked again whether it still has it: the hook timeout (its
// after_run) plus cancelGrace.
func (a *actor) cancelWait() time.Duration {
	return a.cfg.Config.Hooks.Timeout() + cancelGrace
}

// endRecorded reports whether the run's summary already has its end: a
// second, "interrupted" end must never overwrite a recorded one.
func (a *actor) endRecorded(ctx context.Context, runID string) bool {
	k, err := bus.RunSummaries.Key(runID)
	if err != nil {
		return false
	}
	e, err := bus.Get(ctx, a.b, k)
	return err == nil && e.Value.Ended != nil
}

// fireRetries handles every retry that is due (spec §8.4): the tracker is
// asked about them all at once, and its answer is followed up in
// retriesRefreshed (retry.go) without being waited for here.
func (a *actor) fireRetries(ctx context.Context) {
	now := a.clock.Now()
	if a.paused || a.cfg == nil {
		// Paused: retries keep their place and fire on resume.
		return
	}
	var due []string
	for id, r := range a.retries {
		if r.DueAt.After(now) || a.firing[id] {
			continue
		}
		if a.removing(id) {
			// Fires when the removal has ended (removed re-arms the timer).
			a.holdForRemoval(id)
			continue
		}
		due = append(due, id)
	}
	a.refreshRetries(ctx, due)
	a.armRetryTimer()
}

func (a *actor) queueRetry(ctx context.Context, r bus.RetryEntry) {
	a.retries[r.IssueID] = r
	if k, err := bus.Retries.Key(r.IssueID); err == nil {
		if _, err := bus.Put(ctx, a.b, k, r); err != nil {
			a.log.Error("store retry", "err", err, "issue_id", r.IssueID)
		}
	}
}

// dropRetry forgets the issue's retry, here and in KV. The delete is
// skipped only when no retry of the issue can be stored: none is queued,
// start-up listed every stored retry, and no delete of one has failed.
func (a *actor) dropRetry(ctx context.Context, id string) {
	_, queued := a.retries[id]
	delete(a.retries, id)
	if !queued && a.retriesListed && !a.retryUnsure[id] {
		return
	}
	if k, err := bus.Retries.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.retryUnsure[id] = true
			return
		}
	}
	delete(a.retryUnsure, id)
}

// release forgets the issue: no claim, no retry.
func (a *actor) release(ctx context.Context, id string) {
	a.dropRetry(ctx, id)
	if k, err := bus.Claims.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.log.Error("release claim", "err", err, "issue_id", id)
		}
	}
}

func (a *actor) block(ctx context.Context, iss bus.Issue, runID, reason string) {
	a.putBlocked(ctx, bus.BlockedEntry{IssueID: iss.ID, Identifier: iss.Identifier, State: iss.State, RunID: runID, Reason: reason, At: time.Now().UTC()})
}

func (a *actor) putBlocked(ctx context.Context, e bus.BlockedEntry) {
	a.blocked[e.IssueID] = e
	if k, err := bus.Blocks.Key(e.IssueID); err == nil {
		if _, err := bus.Put(ctx, a.b, k, e); err != nil {
			a.log.Error("store blocked issue", "err", err, "issue_id", e.IssueID)
		}
	}
}

// blockedStateChanged reports whether a blocked issue's tracker state has
// changed since it was blocked, which clears the block. A block stored
// without a state (at start-up, from a run that ended blocked before the
// restart: the state it then had is not known, only the dispatch's) takes
// the first state seen instead.
func (a *actor) blockedStateChanged(ctx context.Context, bl bus.BlockedEntry, state string) bool {
	if bl.State == "" {
		bl.State = state
		a.putBlocked(ctx, bl)
		return false
	}
	return normState(bl.State) != normState(state)
}

func (a *actor) clearBlocked(ctx context.Context, id string) {
	delete(a.blocked, id)
	if k, err := bus.Blocks.Key(id); err == nil {
		_ = bus.Delete(ctx, a.b, k)
	}
}

// armRetryTimer sets the timer to the earliest due retry.
func (a *actor) armRetryTimer() {
	a.retryT.Stop()
	if len(a.retries) == 0 {
		return
	}
	next, found := time.Time{}, false
	for id, r := range a.retries {
		if a.removing(id) || a.firing[id] {
			continue // waits for its removal's end, or for the tracker's answer: each re-arms the timer
		}
		if !found || r.DueAt.Before(next) {
			next, found = r.DueAt, true
		}
	}
	if !found {
		return
	}
	a.retryT.Reset(max(next.Sub(a.clock.Now()), 0))
}

// control applies one operator command.
func (a *actor) control(ctx context.Context, req bus.Control) bus.ControlResult {
	res := func(format string, args ...any) bus.ControlResult {
		return bus.ControlResult{Message: fmt.Sprintf(format, args...), Paused: a.paused}
	}
	switch req.Action {
	case bus.ControlRefresh:
		r := res("refresh queued")
		r.Coalesced = !a.queueRefresh()
		return r
	case bus.ControlPause:
		a.paused = true
		a.storePause(ctx, req.Reason)
		a.log.Info("dispatch paused by the operator; running agents continue")
		return res("paused: nothing new starts; %d running", len(a.running))
	case bus.ControlResume:
		a.paused = false
		a.storePause(ctx, req.Reason)
		a.log.Info("dispatch resumed by the operator")
		a.queueRefresh()
		a.armRetryTimer()
		return res("resumed")
	case bus.ControlClearBlocked:
		if _, ok := a.blocked[req.IssueID]; !ok {
			return res("issue %s is not blocked", req.IssueID)
		}
		a.clearBlocked(ctx, req.IssueID)
		a.queueRefresh()
		return res("issue %s unblocked", req.IssueID)
	case bus.ControlCancel:
		for _, r := range a.running {
			if r.issue.ID == req.IssueID || (req.RunID != "" && r.runID == req.RunID) {
				reason := req.Reason
				if reason == "" {
					reason = "canceled by the operator"
				}
				r.release, r.holdReason = true, reason
				// The hold is stored now, not only when the run's end
				// arrives: a restart in between (its end then reaches
				// no scheduler) must not start the issue again.
				a.block(ctx, r.issue, r.runID, reason)
				a.cancel(ctx, r, bus.RunCanceled, reason)
				return res("run %s of %s canceled; the issue is held until cleared or its state changes", r.runID, r.issue.Identifier)
			}
		}
		return res("no running run matches issue %q run %q", req.IssueID, req.RunID)
	}
	return res("unknown action %q", req.Action)
}

// RefreshWindow is the least time between two operator refreshes: one
// after a quiet spell runs at once; requests within the window after it
// join a single tick at the window's end.
const RefreshWindow = 50 * time.Millisecond

// queueRefresh coalesces operator refreshes into one tick; it reports
// whether this call queued it (false: it joined one already queued).
func (a *actor) queueRefresh() bool {
	if a.refreshQ {
		return false
	}
	a.refreshQ = true
	a.refreshT.Reset(max(RefreshWindow-time.Since(a.lastRefresh), 0))
	return true
}

// storePause records the pause state in KV so it survives a restart and
// dashboards see it.
func (a *actor) storePause(ctx context.Context, reason string) {
	if _, err := bus.Put(ctx, a.b, bus.DispatchPause, bus.PauseState{Paused: a.paused, At: a.clock.Now().UTC(), Reason: reason}); err != nil {
		a.log.Error("store pause state; it will not survive a restart", "paused", a.paused, "err", err)
	}
}

// refreshNow polls the tracker directly and runs a tick with its answer,
// which is not waited for here.
func (a *actor) refreshNow(ctx context.Context) {
	a.lastRefresh = time.Now()
	states, version := a.cfg.Config.Tracker.ActiveStates, a.cfg.Version
	goAsk(ctx, a, requestTimeout, func(rctx context.Context) (bus.IssueList, error) {
		return bus.Ask(rctx, a.b, bus.TrackerCandidates, bus.IssuesByStates{States: states, Outline: true})
	}, func(ctx context.Context, list bus.IssueList, err error) {
		if err != nil {
			a.log.Warn("refresh: candidates unavailable", "err", err)
			return
		}
		a.tick(ctx, bus.CandidateSnapshot{IssueList: list, States: states, ConfigVersion: version})
	})
}

func attemptText(a *int) string {
	if a == nil {
		return "first"
	}
	return strconv.Itoa(*a)
}
