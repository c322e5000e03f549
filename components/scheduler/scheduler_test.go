package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

const testTimeout = 30 * time.Second

// world stands in for the tracker, the agent runner and the workspace on a
// real bus: the scheduler only ever talks to subjects.
type world struct {
	t   *testing.T
	b   *bus.Bus
	mu  sync.Mutex
	iss map[string]bus.Issue
	// outcome decides how each dispatched run ends ("" = keeps running).
	outcome func(d bus.Dispatch) bus.RunStatus
	// spend, when set, is what each run's end reports it spent.
	spend func(d bus.Dispatch) runSpend
	// capOf, when set, names the cap a budget_exceeded end carries, as
	// the runner's own check does (RunEvent.BudgetCap, BudgetLimit).
	capOf      func(d bus.Dispatch) (string, float64)
	dispatches []bus.Dispatch
	cancels    []bus.CancelRun
	removed    []string
	// gates hold a workspace's removal until the test closes its channel
	// (a before_remove that takes its time); trace records, in order,
	// "remove-start X", "remove-end X" and "dispatch X".
	gates map[string]chan struct{}
	trace []string
	// turns counts the scheduler loop's turns; inFlight is its requests
	// in flight after the last one, removals aside (Options.looped).
	turns, inFlight int
	// removals is how many workspace removals are queued or in flight.
	removals int
	// trackerGate, while open (not nil), holds every refresh and
	// candidate list until the test closes it: a tracker that is slow.
	trackerGate chan struct{}
	// terminalGate, while set, holds the start-up sweep's list of
	// terminal issues (made when asked, answered when the gate closes);
	// terminalAsks counts the lists made.
	terminalGate  chan struct{}
	terminalAsks  int
	live          map[string]bus.Dispatch // run id -> dispatch, still running
	candidateAsks int
	// refreshFails makes every refresh fail; refreshFailures counts the
	// failures answered.
	refreshFails    bool
	refreshFailures int
	// lostEnds makes the runner stand-in acknowledge a cancel without
	// ending the run: it stays live until the test drops it from live,
	// and its end never comes (a lost run_finished).
	lostEnds bool
	// kills are the start-up kills of runs' processes, in order; killErrs
	// makes a run's kill fail.
	kills    []killCall
	killErrs map[string]error
	// slowDispatch, when set, is how long the runner stand-in takes to
	// answer a dispatch it has taken (a runner that answers after the
	// scheduler's ask timed out, and runs the run anyway);
	// oneRunPerIssue makes it refuse a dispatch of an issue with a live
	// run (CodeAlreadyRunning), as the real runner does.
	slowDispatch   func(d bus.Dispatch) time.Duration
	oneRunPerIssue bool
	// once is the scheduler's Done channel (closed in Once mode when done).
	once <-chan struct{}
	stop func()
	cfg  bus.Config
	// bubble is set when the world runs in a synctest bubble
	// (newBubbleWorld).
	bubble bool
}

// killCall is one kill of a run's processes, with the number of dispatches
// the runner stand-in had seen when it came.
type killCall struct {
	runID      string
	dispatched int
}

func newWorld(t *testing.T, dataDir string, issues ...bus.Issue) *world {
	t.Helper()
	return newWorldOpts(t, dataDir, Options{}, issues...)
}

// newBubbleWorld is newWorld for a test inside a synctest bubble (its
// synctest.Test), where time is the bubble's fake clock: the world's waits
// let everything in the bubble settle before each check, so time moves
// only when the test sleeps or nothing else can happen, as a hand-moved
// clock would. The bus, its server and every stand-in live in the bubble.
func newBubbleWorld(t *testing.T, dataDir string, issues ...bus.Issue) *world {
	t.Helper()
	w := newWorld(t, dataDir, issues...)
	w.bubble = true
	return w
}

// newWorldOpts runs a scheduler with opts (Bus and Log are filled in).
func newWorldOpts(t *testing.T, dataDir string, opts Options, issues ...bus.Issue) *world {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, b: b, iss: map[string]bus.Issue{}, live: map[string]bus.Dispatch{}}
	for _, i := range issues {
		w.iss[i.ID] = i
	}
	w.outcome = func(bus.Dispatch) bus.RunStatus { return "" }
	ctx, cancel := context.WithCancel(context.Background())
	w.serveTracker(ctx)
	w.serveWorkspace(ctx)
	w.serveRunner(ctx)
	w.run(ctx, cancel, opts)
	return w
}

// serveTracker stands in for the tracker until ctx ends: a refresh and the
// candidate list answer from iss (held while trackerGate is set), the
// sweep's list of terminal issues too (held while terminalGate is set).
func (w *world) serveTracker(ctx context.Context) {
	if _, err := bus.ServeN(ctx, w.b, bus.TrackerRefresh, 8, func(_ context.Context, _ string, req bus.IssuesByIDs) (bus.IssueList, error) {
		w.slowTracker()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.refreshFails {
			w.refreshFailures++
			return bus.IssueList{}, errors.New("tracker down")
		}
		var out []bus.Issue
		for _, id := range req.IDs {
			if i, ok := w.iss[id]; ok {
				out = append(out, i)
			}
		}
		return bus.IssueList{Issues: out, FetchedAt: time.Now()}, nil
	}); err != nil {
		w.t.Fatal(err)
	}
	serve(w.t, ctx, w.b, bus.TrackerCandidates, func(req bus.IssuesByStates) bus.IssueList {
		w.slowTracker()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.candidateAsks++
		var out []bus.Issue
		for _, i := range w.iss {
			if inStates(i.State, req.States) {
				out = append(out, i)
			}
		}
		return bus.IssueList{Issues: out, FetchedAt: time.Now()}
	})
	serve(w.t, ctx, w.b, bus.TrackerTerminal, func(req bus.IssuesByStates) bus.IssueList {
		w.mu.Lock()
		var out []bus.Issue
		for _, i := range w.iss {
			if inStates(i.State, req.States) {
				out = append(out, i)
			}
		}
		w.terminalAsks++
		gate := w.terminalGate
		w.mu.Unlock()
		if gate != nil {
			<-gate
		}
		return bus.IssueList{Issues: out}
	})
}

// serveWorkspace stands in for the workspace component until ctx ends: a
// removal is traced, held while its gate is set.
func (w *world) serveWorkspace(ctx context.Context) {
	if _, err := bus.ServeN(ctx, w.b, bus.WorkspaceRemove, 8, func(hctx context.Context, _ string, req bus.RemoveWorkspace) (bus.WorkspaceRemoved, error) {
		w.mu.Lock()
		gate := w.gates[req.Issue.Identifier]
		w.trace = append(w.trace, "remove-start "+req.Issue.Identifier)
		w.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-hctx.Done(): // the process stops with the removal in flight
				return bus.WorkspaceRemoved{}, hctx.Err()
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.trace = append(w.trace, "remove-end "+req.Issue.Identifier)
		w.removed = append(w.removed, req.Issue.Identifier)
		return bus.WorkspaceRemoved{Existed: true}, nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

// serveRunner stands in for the agent runner until ctx ends: dispatches
// end as outcome says, a cancel ends its run unless lostEnds.
func (w *world) serveRunner(ctx context.Context) {
	if _, err := bus.ServeN(ctx, w.b, bus.AgentDispatch, 8, func(_ context.Context, _ string, d bus.Dispatch) (bus.DispatchAccepted, error) {
		w.mu.Lock()
		if w.oneRunPerIssue {
			for _, l := range w.live {
				if l.Issue.ID == d.Issue.ID {
					w.mu.Unlock()
					return bus.DispatchAccepted{}, bus.WithCode(bus.CodeAlreadyRunning, errors.New("issue "+d.Issue.Identifier+" already has run "+l.RunID))
				}
			}
		}
		w.dispatches = append(w.dispatches, d)
		w.trace = append(w.trace, "dispatch "+d.Issue.Identifier)
		w.live[d.RunID] = d
		status := w.outcome(d)
		slow := w.slowDispatch
		w.mu.Unlock()
		if status != "" {
			go w.finish(d, status)
		}
		if slow != nil {
			time.Sleep(slow(d))
		}
		return bus.DispatchAccepted{RunID: d.RunID}, nil
	}); err != nil {
		w.t.Fatal(err)
	}
	serve(w.t, ctx, w.b, bus.AgentCancel, func(req bus.CancelRun) bus.CancelResult {
		w.mu.Lock()
		d, ok := w.live[req.RunID]
		w.cancels = append(w.cancels, req)
		lost := w.lostEnds
		w.mu.Unlock()
		if ok && !lost {
			go w.finishErr(d, req.Status, req.Reason)
		}
		return bus.CancelResult{Found: ok}
	})
	if _, err := bus.Serve(ctx, w.b, bus.AgentRuns, func(context.Context, string, bus.ListRuns) (bus.LiveRuns, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		out := bus.LiveRuns{Runs: []bus.Dispatch{}}
		for _, d := range w.live {
			out.Runs = append(out.Runs, d)
		}
		return out, nil
	}); err != nil {
		w.t.Fatal(err)
	}
}

// run starts the scheduler with opts (Bus and Log filled in) on w's
// stand-ins; stop (also the test's cleanup) ends it (cancel) and closes
// the bus.
func (w *world) run(ctx context.Context, cancel context.CancelFunc, opts Options) {
	t, b := w.t, w.b
	var log *slog.Logger
	if os.Getenv("SCHED_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Bus, opts.Log = b, log
	opts.looped = func(n, removals int) {
		w.mu.Lock()
		w.turns++
		w.inFlight, w.removals = n, removals
		w.mu.Unlock()
	}
	opts.killRun = func(runID string) error {
		w.mu.Lock()
		w.kills = append(w.kills, killCall{runID: runID, dispatched: len(w.dispatches)})
		err := w.killErrs[runID]
		w.mu.Unlock()
		if err != nil {
			return err
		}
		return killRun(runID)
	}
	comp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.once = comp.Done()
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	stopped := false
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = b.Close(context.Background())
	}
	t.Cleanup(w.stop)
}

func serve[Req, Resp any](t *testing.T, ctx context.Context, b *bus.Bus, r bus.Request[Req, Resp], f func(Req) Resp) {
	t.Helper()
	if _, err := bus.ServeN(ctx, b, r, 8, func(_ context.Context, _ string, req Req) (Resp, error) { return f(req), nil }); err != nil {
		t.Fatal(err)
	}
}

// finish publishes the run's end as the runner would.
func (w *world) finish(d bus.Dispatch, status bus.RunStatus) { w.finishErr(d, status, "") }

// finishErr publishes the run's end with its error (a cancel's reason, as
// the runner records it).
func (w *world) finishErr(d bus.Dispatch, status bus.RunStatus, errText string) {
	w.mu.Lock()
	delete(w.live, d.RunID)
	w.mu.Unlock()
	ev := bus.RunEvent{RunID: d.RunID, Event: bus.RunFinished, At: time.Now(), Issue: d.Issue.Ref(), Attempt: d.Attempt, Status: status, Error: errText}
	w.mu.Lock()
	spend, capOf := w.spend, w.capOf
	w.mu.Unlock()
	if capOf != nil && status == bus.RunBudgetExceeded && errText == "" {
		ev.BudgetCap, ev.BudgetLimit = capOf(d)
		ev.Error = ev.BudgetCap + " reached"
	}
	if spend != nil {
		sp := spend(d)
		ev.Usage, ev.Turn = &bus.Usage{InputTokens: sp.tokens}, sp.turns
		if sp.usd >= 0 {
			ev.BudgetUSD = &sp.usd
		}
	}
	if _, err := bus.PublishDurable(context.Background(), w.b, bus.RunEvents, ev, "", d.RunID, string(bus.RunFinished)); err != nil && !w.b.Conn().IsClosed() {
		w.t.Error(err)
	}
}

func (w *world) configure(mutate func(*bus.Config)) {
	w.t.Helper()
	c := bus.Config{
		Tracker: bus.TrackerConfig{ActiveStates: []string{"Todo", "In Progress"}, TerminalStates: []string{"Done"}},
		Polling: bus.PollingConfig{IntervalMS: 3600000},
		Agent:   bus.AgentConfig{Kind: "claude", MaxConcurrentAgents: 2, MaxRetryBackoffMS: 300000, MaxConcurrentAgentsByState: map[string]int{}},
		Claude:  bus.ClaudeConfig{StallTimeoutMS: 0},
	}
	if mutate != nil {
		mutate(&c)
	}
	w.cfg = c
	if _, err := bus.Put(w.t.Context(), w.b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 1, Config: c}); err != nil {
		w.t.Fatal(err)
	}
}

// poll publishes a snapshot of the world's active issues, as the tracker
// does after a poll.
func (w *world) poll() {
	w.t.Helper()
	w.mu.Lock()
	var list []bus.Issue
	for _, i := range w.iss {
		if inStates(i.State, w.cfg.Tracker.ActiveStates) {
			list = append(list, i)
		}
	}
	w.mu.Unlock()
	if err := bus.Publish(w.b, bus.TrackerSnapshots, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: list, FetchedAt: time.Now()}}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) setState(id, state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := w.iss[id]
	i.State = state
	w.iss[id] = i
}

// pollUntil publishes snapshots until cond holds: the scheduler may not
// have its config (or its subscriptions) when the first one goes out.
func (w *world) pollUntil(what string, cond func() bool) {
	w.t.Helper()
	w.wait(what, 50*time.Millisecond, w.poll, cond)
}

// eventually polls cond (generous bound, no fixed sleeps in assertions).
func (w *world) eventually(what string, cond func() bool) {
	w.t.Helper()
	w.wait(what, 10*time.Millisecond, func() {}, cond)
}

// wait checks cond (under the world's lock) every step, running between
// each check, until it holds or testTimeout passes.
func (w *world) wait(what string, step time.Duration, between func(), cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !w.holds(cond) {
		if time.Now().After(deadline) {
			w.t.Fatalf("never: %s", what)
		}
		between()
		// In a bubble, what between set going is done, and checked,
		// before time moves on.
		if w.bubble && w.holds(cond) {
			return
		}
		time.Sleep(step)
	}
}

// holds checks cond under the world's lock; in a bubble, once everything
// else in it is durably blocked: all that the scheduler and the stand-ins
// do at this instant of the fake clock has been done.
func (w *world) holds(cond func() bool) bool {
	w.settle()
	w.mu.Lock()
	defer w.mu.Unlock()
	return cond()
}

// settle waits, in a bubble, until every other goroutine in it is durably
// blocked (synctest.Wait); outside one it does nothing.
func (w *world) settle() {
	if w.bubble {
		synctest.Wait()
	}
}

func TestDispatchOrderLimitsAndContinuation(t *testing.T) {
	w := newWorld(t, t.TempDir(),
		iss("A-3", 3, "2026-01-01T00:00:00Z", "Todo"),
		iss("A-1", 1, "2026-01-03T00:00:00Z", "Todo"),
		iss("A-2", 2, "2026-01-02T00:00:00Z", "Todo"),
	)
	w.configure(nil)
	w.pollUntil("two dispatches", func() bool { return len(w.dispatches) == 2 })
	if w.dispatches[0].Issue.ID != "A-1" || w.dispatches[1].Issue.ID != "A-2" || w.dispatches[0].Attempt != nil {
		t.Fatalf("dispatch order %v", w.dispatches)
	}
	// More ticks dispatch nothing new: both claimed, no free slot for A-3.
	w.tickNow()
	w.tickNow()
	if n := w.dispatchCount(); n != 2 {
		t.Errorf("%d dispatches with 2 slots", n)
	}
}

// TestContinuationAfterCleanExit: a clean exit schedules a continuation
// with attempt 1 about a second later.
func TestContinuationAfterCleanExit(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("A-1", 1, "", "Todo"))
	w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 1 })
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	w.mu.Lock()
	first := w.dispatches[0]
	w.mu.Unlock()
	ended := time.Now()
	w.finish(first, bus.RunSucceeded)
	w.eventually("continuation of A-1", func() bool {
		return len(w.dispatches) == 2 && w.dispatches[1].Attempt != nil && *w.dispatches[1].Attempt == 1
	})
	if d := time.Since(ended); d < ContinuationDelay/2 {
		t.Errorf("continuation after %v, want about %v", d, ContinuationDelay)
	}
}

func TestFailureRetryAndReconciliation(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("B-1", 1, "", "Todo"), iss("B-2", 2, "", "In Progress"))
	w.configure(func(c *bus.Config) { c.Agent.MaxRetryBackoffMS = 200 }) // capped backoff keeps the test short
	w.outcome = func(d bus.Dispatch) bus.RunStatus {
		if d.Issue.ID == "B-1" && d.Attempt == nil {
			return bus.RunFailed
		}
		return ""
	}
	w.pollUntil("B-1 dispatched", func() bool { return len(w.dispatches) > 0 })
	w.eventually("B-1 retried with attempt 1", func() bool {
		for _, d := range w.dispatches {
			if d.Issue.ID == "B-1" && d.Attempt != nil && *d.Attempt == 1 {
				return true
			}
		}
		return false
	})
	// B-2 goes terminal: the next reconcile cancels it and removes its
	// workspace; B-1 leaves the active states: canceled, workspace kept.
	w.setState("B-2", "Done")
	w.setState("B-1", "Human Review")
	w.poll()
	w.eventually("both canceled", func() bool { return len(w.cancels) == 2 })
	w.eventually("B-2 workspace removed", func() bool {
		for _, r := range w.removed {
			if r == "B-2" {
				return true
			}
		}
		return false
	})
	w.mu.Lock()
	for _, r := range w.removed {
		if r == "B-1" {
			t.Error("a non-active issue's workspace must be kept")
		}
	}
	w.mu.Unlock()
	// Claims are released.
	deadline := time.Now().Add(testTimeout)
	for {
		claims, err := bus.All(t.Context(), w.b, bus.Claims)
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("claims left: %v", claims)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStallDetection(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("C-1", 1, "", "Todo"))
	w.configure(func(c *bus.Config) { c.Claude.StallTimeoutMS = 100; c.Polling.IntervalMS = 50 })
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) > 0 })
	w.eventually("stall cancel", func() bool {
		for _, c := range w.cancels {
			if c.Status == bus.RunStalled {
				return true
			}
		}
		return false
	})
}

// TestRestartResumesDurableState: a claim left by a process that died is
// recorded as interrupted and dispatched again once; the claim never lets
// a second dispatch through.
func TestRestartResumesDurableState(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir, iss("D-1", 1, "", "Todo"))
	w.configure(nil)
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	w.stop() // the run is still "in flight": its claim stays in KV

	w2 := newWorld(t, dir, iss("D-1", 1, "", "Todo"))
	runs, err := bus.Subscribe(t.Context(), w2.b, bus.RunEvents)
	if err != nil {
		t.Fatal(err)
	}
	w2.configure(nil) // same config: the stored one; restore happens on first config
	w2.eventually("re-dispatched once", func() bool { return len(w2.dispatches) == 1 })
	var interrupted bool
	for m, err := range bus.History(t.Context(), w2.b, bus.RunEvents) {
		if err == nil && m.Data.Status == bus.RunInterrupted {
			interrupted = true
		}
	}
	if !interrupted {
		t.Error("the in-flight run was not recorded as interrupted")
	}
	_ = runs
	w2.mu.Lock()
	d := w2.dispatches[0]
	w2.mu.Unlock()
	if d.Attempt == nil || *d.Attempt != 1 {
		t.Errorf("re-dispatch attempt %v", d.Attempt)
	}
	w2.poll()
	w2.poll()
	time.Sleep(100 * time.Millisecond)
	w2.mu.Lock()
	defer w2.mu.Unlock()
	if len(w2.dispatches) != 1 {
		t.Errorf("%d dispatches after restart; the claim must prevent a second", len(w2.dispatches))
	}
}

// barrier returns once the scheduler has handled everything sent before
// (one command through the actor, which does one thing at a time) and the
// answers to every request it had in flight.
func (w *world) barrier() {
	w.t.Helper()
	w.mu.Lock()
	before := w.turns
	w.mu.Unlock()
	w.control(bus.Control{Action: bus.ControlClearBlocked, IssueID: "barrier"})
	w.eventually("the scheduler's requests answered", func() bool { return w.turns > before && w.inFlight == 0 })
}

// waitRetry waits until the issue's retry with this attempt is queued, due
// at the given time.
func (w *world) waitRetry(id string, attempt int, due time.Time) {
	w.t.Helper()
	k, _ := bus.Retries.Key(id)
	deadline := time.Now().Add(testTimeout)
	for {
		w.settle()
		e, err := bus.Get(w.t.Context(), w.b, k)
		if err == nil && e.Value.Attempt == attempt {
			if !e.Value.DueAt.Equal(due) {
				w.t.Fatalf("retry %d due %v, want %v", attempt, e.Value.DueAt, due)
			}
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("retry %d never queued: %+v %v", attempt, e.Value, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tickNow asks the scheduler for a refresh and waits until it has fetched
// the candidates: a tick has run when it returns.
// dispatchCount is how many dispatches the runner stand-in has seen.
func (w *world) dispatchCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.dispatches)
}

func (w *world) tickNow() {
	w.t.Helper()
	w.mu.Lock()
	before := w.candidateAsks
	w.mu.Unlock()
	w.control(bus.Control{Action: bus.ControlRefresh})
	w.eventually("a tick", func() bool { return w.candidateAsks > before })
	// The actor handles one thing at a time: once the candidates' answer
	// has been followed up, the tick that used them is complete.
	w.barrier()
}

func (w *world) control(c bus.Control) bus.ControlResult {
	w.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		ctx, cancel := context.WithTimeout(w.t.Context(), 2*time.Second)
		res, err := bus.Ask(ctx, w.b, bus.SchedulerControl, c)
		cancel()
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("control %v: %v", c, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOperatorControls(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("E-1", 1, "", "Todo"), iss("E-2", 2, "", "Todo"))
	w.configure(nil)
	// Pause before anything runs: polls dispatch nothing.
	if res := w.control(bus.Control{Action: bus.ControlPause}); !res.Paused {
		t.Fatalf("pause: %+v", res)
	}
	w.tickNow()
	w.mu.Lock()
	if len(w.dispatches) != 0 {
		t.Errorf("dispatched while paused: %v", w.dispatches)
	}
	w.mu.Unlock()
	// Resume polls now (no snapshot needed) and dispatches both.
	if res := w.control(bus.Control{Action: bus.ControlResume}); res.Paused {
		t.Fatalf("resume: %+v", res)
	}
	w.eventually("dispatched after resume", func() bool { return len(w.dispatches) == 2 })
	// Cancel one: it stops and is released, not retried.
	res := w.control(bus.Control{Action: bus.ControlCancel, IssueID: "E-1", Reason: "not now"})
	w.eventually("E-1 canceled", func() bool { return len(w.cancels) == 1 && w.cancels[0].Reason == "not now" })
	_ = res
	// The issue is held (blocked), not started again by the next polls.
	deadline := time.Now().Add(testTimeout)
	for {
		k, _ := bus.Blocks.Key("E-1")
		if e, err := bus.Get(t.Context(), w.b, k); err == nil && e.Value.Reason == "not now" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("E-1 not held after an operator cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.mu.Lock()
	before := w.candidateAsks
	w.mu.Unlock()
	w.control(bus.Control{Action: bus.ControlRefresh})
	w.eventually("a tick after the cancel", func() bool { return w.candidateAsks > before })
	w.mu.Lock()
	if n := len(w.dispatches); n != 2 {
		t.Errorf("%d dispatches: a held issue was started again", n)
	}
	w.mu.Unlock()
	// Clearing it lets it run again.
	if res := w.control(bus.Control{Action: bus.ControlClearBlocked, IssueID: "E-1"}); res.Message != "issue E-1 unblocked" {
		t.Errorf("clear: %+v", res)
	}
	w.eventually("E-1 dispatched after clearing", func() bool { return len(w.dispatches) == 3 })
	// Refreshes coalesce: a burst makes few candidate requests.
	w.mu.Lock()
	before = w.candidateAsks
	w.mu.Unlock()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { w.control(bus.Control{Action: bus.ControlRefresh}) })
	}
	wg.Wait()
	w.eventually("the refresh ran", func() bool { return w.candidateAsks > before })
	time.Sleep(4 * RefreshWindow) // let any straggling refresh run too
	w.mu.Lock()
	asks := w.candidateAsks - before
	w.mu.Unlock()
	// Concurrent refreshes that arrive within the window share a tick.
	if asks > 3 {
		t.Errorf("%d candidate requests for 20 concurrent refreshes", asks)
	}
	if res := w.control(bus.Control{Action: bus.ControlClearBlocked, IssueID: "E-2"}); res.Message != "issue E-2 is not blocked" {
		t.Errorf("clear blocked: %+v", res)
	}
}

// TestReconcileMissingAndRefreshFailure: a refresh that fails keeps every
// worker running; an issue that disappeared is canceled and released at
// the next reconcile whose refresh succeeds.
//
// It runs in a synctest bubble: each poll's reconcile, its refresh and the
// answer are complete before the test goes on. Outside one, the failing
// refresh could be answered after the second poll's tick, which (a
// refresh in flight serves the ticks that come meanwhile) asked nothing:
// with an hour's polling interval no reconcile came again, and the test
// waited 30 s for a cancel (about 2 runs in 10 under load).
func TestReconcileMissingAndRefreshFailure(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir(), iss("F-1", 1, "", "Todo"), iss("F-2", 2, "", "Todo"))
		w.configure(nil)
		w.pollUntil("both dispatched", func() bool { return len(w.dispatches) == 2 })
		w.barrier()
		w.mu.Lock()
		w.refreshFails = true
		delete(w.iss, "F-1")
		failed := w.refreshFailures
		w.mu.Unlock()
		w.poll() // reconcile with a failing refresh: nothing is canceled
		w.barrier()
		w.mu.Lock()
		if w.refreshFailures != failed+1 {
			t.Errorf("%d failing refreshes answered for one poll, want 1", w.refreshFailures-failed)
		}
		if len(w.cancels) != 0 {
			t.Errorf("a failed refresh canceled workers: %v", w.cancels)
		}
		if len(w.removed) != 0 {
			t.Errorf("a failed refresh removed workspaces: %v", w.removed)
		}
		w.refreshFails = false
		w.mu.Unlock()
		w.poll()
		w.barrier()
		w.mu.Lock()
		defer w.mu.Unlock()
		d, _ := w.dispatchOf("F-1")
		if len(w.cancels) != 1 || w.cancels[0].Reason != "the issue no longer exists in the tracker" || w.cancels[0].RunID != d.RunID {
			t.Errorf("cancels after a successful refresh: %+v (F-1's run is %s)", w.cancels, d.RunID)
		}
	})
}

// TestStartupSweepAndLiveConcurrency: terminal issues' workspaces are
// removed at start; a concurrency change in the config applies at the next
// tick, and a retry that finds no slot is requeued with the spec's error.
func TestStartupSweepAndLiveConcurrency(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("G-1", 1, "", "Todo"), iss("G-2", 2, "", "Todo"), iss("G-9", 1, "", "Done"))
	w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 1; c.Agent.MaxRetryBackoffMS = 100 })
	w.eventually("startup sweep", func() bool { return len(w.removed) == 1 && w.removed[0] == "G-9" })
	w.pollUntil("one dispatched", func() bool { return len(w.dispatches) == 1 })
	// G-1 runs; a failed G-2 would need a slot: make G-1's run go on and
	// queue a retry for G-2 by hand through a failing dispatch outcome.
	w.mu.Lock()
	w.outcome = func(d bus.Dispatch) bus.RunStatus {
		if d.Issue.ID == "G-2" && d.Attempt == nil {
			return bus.RunFailed
		}
		return ""
	}
	w.mu.Unlock()
	// Raise the limit live: the next tick dispatches G-2, which fails and
	// is retried 1 s later: time for the lower limit below to be applied
	// first (with 100 ms the retry could win under load and find a slot).
	w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 2; c.Agent.MaxRetryBackoffMS = 1000 })
	w.pollUntil("G-2 dispatched after the limit rose", func() bool { return len(w.dispatches) >= 2 })
	// Lower it again while G-2 waits to retry: the retry finds no slot.
	w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 1; c.Agent.MaxRetryBackoffMS = 1000 })
	deadline := time.Now().Add(testTimeout)
	for {
		k, _ := bus.Retries.Key("G-2")
		e, err := bus.Get(t.Context(), w.b, k)
		if err == nil && e.Value.Error == ErrNoSlots {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no requeue with %q: %+v %v", ErrNoSlots, e.Value, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStaleSnapshotIsNotTrusted: a snapshot fetched before an issue's run
// ended is checked against the tracker before that issue is dispatched
// (a peer dispatched whole batches twice under load without this).
func TestStaleSnapshotIsNotTrusted(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("H-1", 1, "", "Todo"))
	w.configure(nil)
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	stale := time.Now() // a poll that fetched while the run was live
	w.mu.Lock()
	d := w.dispatches[0]
	w.mu.Unlock()
	// The agent hands the issue over, the run ends cleanly, and the
	// continuation check (1 s) finds it no longer active: released.
	w.setState("H-1", "Human Review")
	w.finish(d, bus.RunSucceeded)
	deadline := time.Now().Add(testTimeout)
	for {
		k, _ := bus.Claims.Key("H-1")
		_, cerr := bus.Get(t.Context(), w.b, k)
		rk, _ := bus.Retries.Key("H-1")
		_, rerr := bus.Get(t.Context(), w.b, rk)
		if cerr != nil && rerr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("H-1 was never released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Now the slow poll's snapshot arrives: it still says Todo.
	old := iss("H-1", 1, "", "Todo")
	if err := bus.Publish(w.b, bus.TrackerSnapshots, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: []bus.Issue{old}, FetchedAt: stale}}); err != nil {
		t.Fatal(err)
	}
	w.tickNow()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.dispatches) != 1 {
		t.Errorf("a stale snapshot dispatched the issue again: %d dispatches", len(w.dispatches))
	}
}

// TestBlockedRunParksTheIssue: a run that ends blocked holds its issue
// until the tracker state changes.
func TestBlockedRunParksTheIssue(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("J-1", 1, "", "Todo"))
	w.outcome = func(d bus.Dispatch) bus.RunStatus {
		if len(w.dispatches) == 1 {
			return bus.RunBlocked
		}
		return ""
	}
	w.configure(nil)
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	deadline := time.Now().Add(testTimeout)
	for {
		k, _ := bus.Blocks.Key("J-1")
		if _, err := bus.Get(t.Context(), w.b, k); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked run did not park its issue")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.tickNow()
	w.mu.Lock()
	if len(w.dispatches) != 1 {
		t.Errorf("a blocked issue was dispatched again")
	}
	w.mu.Unlock()
	// The operator moves it: the block clears and it runs again.
	w.setState("J-1", "In Progress")
	w.pollUntil("re-dispatched after the state change", func() bool { return len(w.dispatches) == 2 })
}

// TestPauseSurvivesRestart: a pause is stored in KV, so a restarted
// scheduler stays paused until resumed; refreshes report coalescing.
func TestPauseSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir, iss("P-1", 1, "", "Todo"))
	w.configure(nil)
	if res := w.control(bus.Control{Action: bus.ControlPause, Reason: "maintenance"}); !res.Paused {
		t.Fatalf("pause: %+v", res)
	}
	e, err := bus.Get(t.Context(), w.b, bus.DispatchPause)
	if err != nil || !e.Value.Paused || e.Value.Reason != "maintenance" || e.Value.At.IsZero() {
		t.Fatalf("stored pause = %+v, %v", e.Value, err)
	}
	w.stop()

	w2 := newWorld(t, dir, iss("P-1", 1, "", "Todo"))
	w2.configure(nil)
	w2.tickNow()
	w2.mu.Lock()
	if len(w2.dispatches) != 0 {
		t.Errorf("a restarted scheduler dispatched although paused: %v", w2.dispatches)
	}
	w2.mu.Unlock()
	// A refresh right after another (within RefreshWindow) joins its
	// tick. A loaded machine may let the window pass between the two, so
	// a few pairs are tried.
	coalesced := false
	for range 5 {
		w2.tickNow() // nothing queued
		first := w2.control(bus.Control{Action: bus.ControlRefresh})
		second := w2.control(bus.Control{Action: bus.ControlRefresh})
		if first.Coalesced || !first.Paused {
			t.Fatalf("first refresh after a tick: %+v", first)
		}
		if second.Coalesced {
			coalesced = true
			break
		}
	}
	if !coalesced {
		t.Error("no refresh was reported coalesced")
	}
	if res := w2.control(bus.Control{Action: bus.ControlResume}); res.Paused {
		t.Fatalf("resume: %+v", res)
	}
	w2.eventually("dispatched after resume", func() bool { return len(w2.dispatches) == 1 })
	if e, err := bus.Get(t.Context(), w2.b, bus.DispatchPause); err != nil || e.Value.Paused {
		t.Fatalf("stored pause after resume = %+v, %v", e.Value, err)
	}
}

// TestOnceEndsWhenPaused: --once after a session that paused dispatch ends
// (dispatching nothing) instead of waiting for a resume.
func TestOnceEndsWhenPaused(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir, iss("O-1", 1, "", "Todo"))
	w.configure(nil)
	w.control(bus.Control{Action: bus.ControlPause})
	w.stop()

	w2 := newWorldOpts(t, dir, Options{Once: true}, iss("O-1", 1, "", "Todo"))
	w2.configure(nil)
	w2.pollUntil("once done", w2.onceDone)
	w2.mu.Lock()
	defer w2.mu.Unlock()
	if len(w2.dispatches) != 0 {
		t.Errorf("dispatched while paused: %v", w2.dispatches)
	}
}

func (w *world) onceDone() bool {
	select {
	case <-w.once:
		return true
	default:
		return false
	}
}

// TestInvalidWorkflowHoldsDispatch: while the workflow's latest edit is
// invalid, ticks dispatch nothing (running agents are not touched); once
// it is valid again, the next tick dispatches. The status is watched, and
// read directly by a tick that comes before the watch delivered it.
func TestInvalidWorkflowHoldsDispatch(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("V-1", 1, "", "Todo"))
	w.configure(nil)
	status := func(valid bool) {
		t.Helper()
		if _, err := bus.Put(t.Context(), w.b, bus.ConfigStatus, bus.WorkflowStatus{Valid: valid, Version: 1, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	status(false)
	for range 3 {
		w.tickNow()
	}
	if n := w.dispatchCount(); n != 0 {
		t.Fatalf("%d dispatches under an invalid workflow", n)
	}
	status(true)
	w.wait("a dispatch once the workflow is valid", 10*time.Millisecond, w.tickNow, func() bool { return len(w.dispatches) == 1 })
}

// TestDropRetrySkipsOnlyWhatCannotBeStored: a dispatch deletes the issue's
// stored retry unless none can be stored: start-up listed every stored
// retry, none is queued for the issue, and no delete of one failed.
func TestDropRetrySkipsOnlyWhatCannotBeStored(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a := &actor{b: b, log: slog.New(slog.DiscardHandler), retries: map[string]bus.RetryEntry{}, retryUnsure: map[string]bool{}}
	// put stores a retry behind the actor's back.
	put := func(id string) {
		k, _ := bus.Retries.Key(id)
		if _, err := bus.Put(ctx, b, k, bus.RetryEntry{IssueID: id, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(id string) bool {
		k, _ := bus.Retries.Key(id)
		_, err := bus.Get(ctx, b, k)
		return err == nil
	}
	// Before start-up listed the stored retries, every drop deletes.
	put("R-1")
	a.dropRetry(ctx, "R-1")
	if stored("R-1") {
		t.Error("a drop before the listing left a stored retry")
	}
	a.retriesListed = true
	// A queued retry is deleted.
	a.queueRetry(ctx, bus.RetryEntry{IssueID: "R-2", Attempt: 1})
	a.dropRetry(ctx, "R-2")
	if stored("R-2") {
		t.Error("a queued retry stayed stored")
	}
	// None queued, none unsure: nothing to delete, nothing asked of the
	// store (what is put behind the actor's back here stays, which in use
	// cannot happen: the scheduler is the only writer of retries).
	put("R-3")
	a.dropRetry(ctx, "R-3")
	if !stored("R-3") {
		t.Error("a drop with no retry queued still deleted")
	}
	// A delete that failed makes the issue unsure until one works.
	a.queueRetry(ctx, bus.RetryEntry{IssueID: "R-3", Attempt: 2})
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.dropRetry(ctx, "R-3")
	if !a.retryUnsure["R-3"] {
		t.Error("a failed delete did not make the issue unsure")
	}
	b2, err := bus.Open(ctx, bus.Options{DataDir: b.DataDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close(context.Background()) })
	a.b, b = b2, b2
	a.dropRetry(ctx, "R-3")
	if stored("R-3") || a.retryUnsure["R-3"] {
		t.Errorf("an unsure retry was not deleted (stored %v, unsure %v)", stored("R-3"), a.retryUnsure["R-3"])
	}
}

// TestReconcileStopsRunThatLostRequiredLabel: an issue whose required label
// is removed while it runs (an operator taking it away from automation) is
// no longer routable: its run is canceled and the claim released when the
// run ends; the workspace is kept (the issue is not terminal), and no
// retry brings it back.
func TestReconcileStopsRunThatLostRequiredLabel(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("M-1", 1, "", "Todo"), iss("M-2", 2, "", "Todo"))
	w.configure(func(c *bus.Config) { c.Tracker.RequiredLabels = []string{"agent"} })
	w.pollUntil("both dispatched", func() bool { return len(w.dispatches) == 2 })
	w.mu.Lock()
	i := w.iss["M-1"]
	i.Labels = []string{"bug"}
	w.iss["M-1"] = i
	w.mu.Unlock()
	w.tickNow()
	w.eventually("M-1's run canceled", func() bool { return len(w.cancels) == 1 })
	w.mu.Lock()
	c := w.cancels[0]
	if c.RunID != w.dispatches[0].RunID || c.Status != bus.RunCanceled || c.Reason != "the issue is no longer eligible: "+string(MissingLabel) {
		t.Errorf("cancel %+v, want M-1's run canceled for its missing label", c)
	}
	w.mu.Unlock()
	k, _ := bus.Claims.Key("M-1")
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := bus.Get(t.Context(), w.b, k); errors.Is(err, bus.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("M-1's claim was not released when its run ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.tickNow()
	rk, _ := bus.Retries.Key("M-1")
	if _, err := bus.Get(t.Context(), w.b, rk); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Errorf("M-1 has a retry after a reconciliation stop: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.removed) != 0 {
		t.Errorf("workspaces removed for a label removal: %v", w.removed)
	}
	if len(w.cancels) != 1 || len(w.dispatches) != 2 {
		t.Errorf("%d cancels, %d dispatches: M-2 (still labelled) must run on, M-1 stay off", len(w.cancels), len(w.dispatches))
	}
}

// TestStartupKillsBeforeRetries: a claim whose run is gone has its
// processes killed at start-up even when the issue also has a stored retry
// (a failed retry delete, say), and the retry dispatches only after the
// kill; if the kill fails, the claim stays and the retry does not
// dispatch. A live run's claim is adopted and its stored retry dropped:
// never a second agent beside it.
func TestStartupKillsBeforeRetries(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("N-1", 1, "", "Todo"), iss("N-2", 2, "", "Todo"), iss("N-3", 3, "", "Todo"))
	ctx := t.Context()
	one := 1
	for _, id := range []string{"N-1", "N-2", "N-3"} {
		k, _ := bus.Claims.Key(id)
		if _, err := bus.Put(ctx, w.b, k, bus.Claim{RunID: id + "-old", IssueID: id, Identifier: id, Attempt: &one, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		rk, _ := bus.Retries.Key(id)
		if _, err := bus.Put(ctx, w.b, rk, bus.RetryEntry{IssueID: id, Identifier: id, Attempt: 2, DueAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	w.mu.Lock()
	w.killErrs = map[string]error{"N-2-old": errors.New("/proc unreadable")}
	w.live["N-3-old"] = bus.Dispatch{RunID: "N-3-old", Issue: iss("N-3", 3, "", "Todo"), Attempt: &one}
	w.mu.Unlock()
	w.configure(nil)
	w.eventually("N-1 dispatched by its retry", func() bool { return len(w.dispatches) >= 1 })
	w.tickNow()
	w.tickNow()
	w.mu.Lock()
	kills := map[string]killCall{}
	for _, k := range w.kills {
		kills[k.runID] = k
	}
	if k, ok := kills["N-1-old"]; !ok || k.dispatched != 0 {
		t.Errorf("N-1's old run killed %v, with %d dispatches before: want killed before any dispatch", ok, k.dispatched)
	}
	if _, ok := kills["N-3-old"]; ok || len(w.kills) != 2 {
		t.Errorf("kills %+v: want N-1's and N-2's old runs, not the live N-3's", w.kills)
	}
	if len(w.dispatches) != 1 || w.dispatches[0].Issue.ID != "N-1" || w.dispatches[0].Attempt == nil || *w.dispatches[0].Attempt != 2 {
		t.Errorf("dispatches %+v: want only N-1's retry (attempt 2)", w.dispatches)
	}
	w.mu.Unlock()
	// N-2 stays claimed by its old run, its retry kept for the next start.
	k, _ := bus.Claims.Key("N-2")
	if e, err := bus.Get(ctx, w.b, k); err != nil || e.Value.RunID != "N-2-old" {
		t.Errorf("N-2's claim %+v, %v: want kept by N-2-old", e.Value, err)
	}
	rk, _ := bus.Retries.Key("N-2")
	if _, err := bus.Get(ctx, w.b, rk); err != nil {
		t.Errorf("N-2's stored retry: %v", err)
	}
	// N-3's live run is adopted: its claim stays, its retry is gone.
	k, _ = bus.Claims.Key("N-3")
	if e, err := bus.Get(ctx, w.b, k); err != nil || e.Value.RunID != "N-3-old" {
		t.Errorf("N-3's claim %+v, %v: want kept by the live N-3-old", e.Value, err)
	}
	rk, _ = bus.Retries.Key("N-3")
	if _, err := bus.Get(ctx, w.b, rk); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Errorf("N-3's retry beside its live run was not dropped: %v", err)
	}
}

// TestStartupFollowsUpAnEndingLiveRun: the runner lists a run whose end is
// being recorded (and already stored, before this scheduler's run event
// subscription began). The run is adopted and its stored end followed up
// at once: its issue does not sit "running" until the stall check, and no
// second, "interrupted" end is recorded for it.
func TestStartupFollowsUpAnEndingLiveRun(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("L-1", 1, "", "Todo"))
	ctx := t.Context()
	one := 1
	k, _ := bus.Claims.Key("L-1")
	if _, err := bus.Put(ctx, w.b, k, bus.Claim{RunID: "L-1-old", IssueID: "L-1", Identifier: "L-1", Attempt: &one, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	issue := iss("L-1", 1, "", "Todo")
	end := bus.RunEvent{RunID: "L-1-old", Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Attempt: &one, Status: bus.RunBlocked, Error: "asked for approval"}
	if err := runlog.Record(ctx, w.b, end, ""); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.live["L-1-old"] = bus.Dispatch{RunID: "L-1-old", Issue: issue, Attempt: &one}
	w.mu.Unlock()
	w.configure(nil)
	bk, _ := bus.Blocks.Key("L-1")
	w.eventually("L-1 blocked by its stored end", func() bool {
		_, err := bus.Get(ctx, w.b, bk)
		return err == nil
	})
	w.tickNow()
	w.barrier()
	w.mu.Lock()
	if len(w.dispatches) != 0 || len(w.kills) != 0 {
		t.Errorf("%d dispatches, %d kills: a blocked run's issue must wait, and a live run is never killed", len(w.dispatches), len(w.kills))
	}
	w.mu.Unlock()
	if _, err := bus.Get(ctx, w.b, k); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Errorf("L-1's claim after its blocked end: %v, want released", err)
	}
	if n := len(storedEnds(t, w.b, "L-1-old")); n != 1 {
		t.Errorf("%d ends stored for L-1-old, want its own only", n)
	}
}

// TestSnapshotBeforeConfigIsTicked: at start-up the tracker's first
// snapshot may reach the scheduler before its config watch delivers the
// config (they come on different channels, in either order). The snapshot
// is kept and ticked once the config is known, instead of dispatch waiting
// a whole polling interval (an hour here) for the next poll.
func TestSnapshotBeforeConfigIsTicked(t *testing.T) {
	w := newWorld(t, t.TempDir(), iss("E-1", 1, "", "Todo"))
	w.cfg = bus.Config{Tracker: bus.TrackerConfig{ActiveStates: []string{"Todo"}}}
	w.barrier()
	w.mu.Lock()
	before := w.turns
	w.mu.Unlock()
	w.poll()
	w.eventually("the snapshot taken", func() bool { return w.turns > before })
	if n := w.dispatchCount(); n != 0 {
		t.Fatalf("%d dispatches without a config", n)
	}
	w.configure(nil)
	w.eventually("the early snapshot's issue dispatched", func() bool { return len(w.dispatches) == 1 })
}
