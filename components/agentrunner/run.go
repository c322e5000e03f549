package agentrunner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/eligibility"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/internal/prompt"
	"github.com/symphony-oss/symphony/runlog"
)

// ContinuationPrompt is sent on turns after the first, on the same session:
// the task is already in the conversation, so only guidance follows.
const ContinuationPrompt = `Continue working on the issue. The task and everything you did so far are above.
If the work is complete, make sure it is committed and the issue is moved to its hand-off state; otherwise take the next step.`

// requestSlack bounds a workspace request beyond the hook's own timeout.
const requestSlack = 30 * time.Second

// run is one worker run: everything from dispatch to run_finished.
type run struct {
	// logger is the run's logger (see log); set once the agent's session
	// is known (setSession), built lazily before.
	logger  atomic.Pointer[slog.Logger]
	r       *Component
	o       *owner
	d       bus.Dispatch
	snap    bus.ConfigSnapshot
	cancel  chan canceled
	seq     atomic.Int64
	turn    int
	session string
	usage   bus.Usage
	cost    *float64
	// priced is the run's cost as its backend priced it (codex's thread
	// totals with a pricing entry for its model), for the USD cap; nil
	// when not priced. It is not recorded as the run's cost.
	priced *float64
	// estUSD is what the run's turns that reported no cost were charged
	// in dollars (chargeEstimate; estUSDSet once any was), and estimated
	// says any turn was charged an estimate (bus.RunEvent.BudgetEstimated).
	estUSD    float64
	estUSDSet bool
	estimated bool
	// hit is the cap that ended the run budget_exceeded (budgetEnd), and
	// cancelHit the one a budget_exceeded cancel named (the scheduler's
	// stop at the daily cap): the run's end carries it.
	hit       *capHit
	cancelHit atomic.Pointer[capHit]
	command   []string
	path      string
	exitCode  *int
	signal    string
	// out stores the run's agent events with pipelined acknowledgements;
	// every lifecycle event waits until they are all stored. outMu guards
	// it: the run's goroutine and its tool calls (tools.go) both write.
	out   *runlog.Writer
	outMu sync.Mutex
	// tools are the run's tracker tools while its agent may call them
	// (tools.go); liveTurn is the turn in progress, for their records.
	tools    atomic.Pointer[runTools]
	liveTurn atomic.Int32
	// prog tells live readers what the run did last, coalesced.
	prog *progress
	// lane carries lifecycle events to the goroutine that records them in
	// order (startLane); rec is that goroutine's recorder.
	lane chan laneItem
	rec  *runlog.Recorder
	// releaseFirst ends the lane's hold until the first turn's agent start
	// was tried (see execute); it is called then, or when the run ends
	// before it, and again harmlessly.
	releaseFirst func()
}

// log is the run's logger: every line carries run_id, issue_id and
// issue_identifier, and session_id from the moment the agent reports its
// session (the reference specification, §13.1), not only the last line.
// The run's goroutines (its lane, its tool responders) log through it, so
// the logger is swapped atomically.
func (w *run) log() *slog.Logger {
	if l := w.logger.Load(); l != nil {
		return l
	}
	w.logger.CompareAndSwap(nil, w.r.log.With("run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier))
	return w.logger.Load()
}

// setSession notes the agent's session: the run's later log lines carry it.
func (w *run) setSession(id string) {
	w.session = id
	w.logger.Store(w.r.log.With("run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier, "session_id", id))
}

func (w *run) base(kind bus.RunEventKind) bus.RunEvent {
	return bus.RunEvent{RunID: w.d.RunID, Event: kind, At: time.Now().UTC(), Issue: w.d.Issue.Ref(), Attempt: w.d.Attempt,
		Workspace: w.path, Agent: w.snap.Config.Agent.Kind, SessionID: w.session, Turn: w.turn, ConfigVersion: w.snap.Version, Command: w.command}
}

// execute runs the whole worker run and publishes its end.
func (w *run) execute(ctx context.Context) {
	closeLane := w.startLane(ctx)
	// With no hook on the way to the agent, the lane records nothing until
	// the agent's start was tried (see holdLane): the run's events then
	// follow the exec instead of competing with it. A hook can take
	// minutes, and the run must be on record meanwhile: then no hold.
	first := make(chan struct{})
	w.releaseFirst = sync.OnceFunc(func() { close(first) })
	if hooks := w.snap.Config.Hooks; strings.TrimSpace(hooks.AfterCreate) == "" && strings.TrimSpace(hooks.BeforeRun) == "" {
		w.holdLane(first)
	}
	w.lifecycle(ctx, w.base(bus.RunDispatched))
	stopProgress := w.startProgress(ctx)
	status, errText := w.work(ctx)
	// run_finished says succeeded only when every agent event of the run
	// is stored (the writer's error sticks once a message could not be).
	if err := w.flush(ctx); err != nil && status == bus.RunSucceeded {
		status, errText = bus.RunFailed, storeFailed(err)
	}
	w.releaseFirst()
	stopProgress()
	// The run is over: it must not be cancelable or block a new dispatch
	// for the issue once its end is published.
	w.o.forget(w.d.RunID)
	end := w.base(bus.RunFinished)
	end.Status, end.Error = status, errText
	u := w.usage
	end.Usage, end.CostUSD, end.ExitCode, end.Signal = &u, w.cost, w.exitCode, w.signal
	if usd, priced := w.spentUSD(); priced {
		end.BudgetUSD = &usd
	}
	end.BudgetEstimated = w.estimated
	if hit := w.endHit(status); hit != nil {
		end.BudgetCap, end.BudgetLimit, end.BudgetDay = hit.cap, hit.limit, hit.day
	}
	w.lifecycle(ctx, end)
	// The end, and every event before it, is on record before the run
	// leaves the runner (its goroutine then tells the owner: ended).
	closeLane()
	if status == bus.RunSucceeded {
		w.log().Info("run finished", "status", status, "turns", w.turn)
	} else {
		w.log().Warn("run finished", "status", status, "err", errText, "turns", w.turn)
	}
}

// startProgress starts the goroutine that publishes the run's progress;
// the returned function stops it once it has published what is left.
func (w *run) startProgress(ctx context.Context) (stop func()) {
	stall := w.snap.Config.Claude.StallTimeoutMS
	if w.snap.Config.Agent.Kind == bus.AgentCodex {
		stall = w.snap.Config.Codex.StallTimeoutMS
	}
	w.prog = newProgress(w.r.opts.Bus, w.d.RunID, progressPeriod(time.Duration(stall)*time.Millisecond))
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.prog.run(pctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// interrupted reports a cancel (or shutdown) that arrived between phases.
func (w *run) interrupted(ctx context.Context) (bus.RunStatus, string, bool) {
	select {
	case c := <-w.cancel:
		return c.status, c.reason, true
	default:
	}
	if ctx.Err() != nil {
		return bus.RunInterrupted, "symphony is shutting down", true
	}
	return "", "", false
}

// failure is the end of a run whose phase failed with msg, unless a cancel
// or a shutdown came meanwhile: a request that ended with the runner's
// context is not the phase's failure.
func (w *run) failure(ctx context.Context, msg string) (bus.RunStatus, string, bool) {
	if st, why, ok := w.interrupted(ctx); ok {
		return st, why, true
	}
	return bus.RunFailed, msg, true
}

// work does the run's phases — the issue, the workspace, before_run, the
// turns, after_run — and returns its terminal status and error.
func (w *run) work(ctx context.Context) (bus.RunStatus, string) {
	if st, why, ok := w.interrupted(ctx); ok {
		return st, why
	}
	// A kind this build could not run would end blocked before any
	// workspace or process, so the issue is held (no retry loop) with the
	// reason on the dashboard.
	be, err := w.r.backendFor(w.snap.Config.Agent.Kind)
	if err != nil {
		return bus.RunBlocked, err.Error()
	}
	iss, err := w.fullIssue(ctx)
	if err != nil {
		st, why, _ := w.failure(ctx, err.Error())
		return st, why
	}
	// The tools are pinned as near the dispatch as can be: before the
	// workspace and its hooks, which may take minutes, so a reload
	// meanwhile does not give the run tools of another configuration
	// than its own. They are opened while the workspace is prepared (off
	// the way to the agent's start), and end with the agent's session
	// (below), or here on an early end.
	opened := make(chan *runTools, 1)
	go func() { opened <- w.openTools(ctx) }()
	tools := sync.OnceValue(func() *runTools { return <-opened })
	defer func() { w.closeTools(ctx, tools()) }()
	// The first turn's process window (procscan.Window) is opened now,
	// while the workspace is prepared, not on the way to the agent's start
	// (it reads three files of /proc). Opened earlier, it only covers
	// more processes.
	firstSince := make(chan procscan.Window, 1)
	go func() { firstSince <- procscan.Open() }()
	if st, why, end := w.prepareWorkspace(ctx, iss); end {
		return st, why
	}
	if st, why, end := w.beforeRun(ctx, iss); end {
		return st, why
	}
	// after_run runs whatever happened, even when the run was canceled.
	defer w.afterRun(ctx, iss)
	// The agent's tools end with its session, before after_run.
	defer func() { w.closeTools(ctx, tools()) }()
	tpl, err := prompt.Parse(w.snap.PromptTemplate, 1)
	if err != nil {
		return bus.RunFailed, err.Error()
	}
	first, err := tpl.Render(iss, w.d.Attempt)
	if err != nil {
		return bus.RunFailed, err.Error()
	}
	return w.turns(ctx, be, iss, first, firstSince, tools())
}

// hookTimeout bounds a workspace request: the hook's own timeout and
// requestSlack.
func (w *run) hookTimeout() time.Duration { return w.snap.Config.Hooks.Timeout() + requestSlack }

// prepareWorkspace asks the workspace component for the issue's workspace
// and records it; end reports the run ends here.
func (w *run) prepareWorkspace(ctx context.Context, iss bus.Issue) (st bus.RunStatus, why string, end bool) {
	pctx, cancel := context.WithTimeout(ctx, w.hookTimeout())
	ready, err := bus.Ask(pctx, w.r.opts.Bus, bus.WorkspacePrepare, bus.PrepareWorkspace{Issue: iss, RunID: w.d.RunID})
	cancel()
	if err != nil {
		return w.failure(ctx, "prepare workspace: "+err.Error())
	}
	// The agent must run exactly in the issue's workspace (spec §9.5).
	want := filepath.Join(w.snap.Config.Workspace.Root, w.d.Issue.Identifier)
	if filepath.Clean(ready.Path) != filepath.Clean(want) || !filepath.IsAbs(ready.Path) {
		return bus.RunFailed, fmt.Sprintf("workspace %q is not %q", ready.Path, want), true
	}
	if st, err := os.Stat(ready.Path); err != nil || !st.IsDir() {
		return bus.RunFailed, fmt.Sprintf("workspace %s is not a directory", ready.Path), true
	}
	w.path = ready.Path
	w.lifecycle(ctx, w.base(bus.RunWorkspaceReady))
	return w.interrupted(ctx)
}

// beforeRun runs the before_run hook. It is asked for only when the run's
// configuration has one: the run follows the configuration it was
// dispatched with, and a request that would run nothing costs a round
// trip on the way to the agent's start.
func (w *run) beforeRun(ctx context.Context, iss bus.Issue) (st bus.RunStatus, why string, end bool) {
	if strings.TrimSpace(w.snap.Config.Hooks.BeforeRun) == "" {
		return "", "", false
	}
	hctx, cancel := context.WithTimeout(ctx, w.hookTimeout())
	_, err := bus.Ask(hctx, w.r.opts.Bus, bus.WorkspaceHook, bus.RunHook{Hook: bus.HookBeforeRun, Issue: iss, RunID: w.d.RunID})
	cancel()
	if err != nil {
		return w.failure(ctx, "before_run: "+err.Error())
	}
	return "", "", false
}

// afterRun runs the after_run hook, even for a canceled or interrupted
// run; its failure is logged and ignored.
func (w *run) afterRun(ctx context.Context, iss bus.Issue) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.hookTimeout())
	defer cancel()
	if _, err := bus.Ask(actx, w.r.opts.Bus, bus.WorkspaceHook, bus.RunHook{Hook: bus.HookAfterRun, Issue: iss, RunID: w.d.RunID, SessionID: w.session}); err != nil {
		w.log().Warn("after_run failed (ignored)", "err", err)
	}
}

// fullIssue is the issue the run works on: the one dispatched, or, when
// the scheduler dispatched an outline (bus.Issue.Outline: its snapshots
// carry no descriptions, so that they stay small however many issues the
// tracker holds), the full issue read from the tracker by id. The prompt
// and the hooks get the full issue either way.
func (w *run) fullIssue(ctx context.Context) (bus.Issue, error) {
	if !w.d.Issue.IsOutline {
		return w.d.Issue, nil
	}
	// A tracker blip at this moment would fail the run and cost the issue
	// an attempt and a backoff although no agent ran: the read is tried
	// again twice, 1 s and 3 s later (a longer outage fails the run, and
	// the scheduler's retry waits for the tracker).
	var list bus.IssueList
	var err error
	for try, wait := range [...]time.Duration{0, time.Second, 3 * time.Second} {
		if try > 0 {
			w.log().Warn("read the issue from the tracker failed; trying again", "err", err, "in", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return bus.Issue{}, fmt.Errorf("read the issue from the tracker: %w", err)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		list, err = bus.Ask(rctx, w.r.opts.Bus, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{w.d.Issue.ID}})
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return bus.Issue{}, fmt.Errorf("read the issue from the tracker: %w", err)
	}
	for _, iss := range list.Issues {
		if iss.ID == w.d.Issue.ID {
			return iss, nil
		}
	}
	return bus.Issue{}, fmt.Errorf("read the issue from the tracker: %s is no longer there", w.d.Issue.Identifier)
}

// storeFailed is the error of a run whose agent events could not all be
// stored.
func storeFailed(err error) string { return "store agent events: " + err.Error() }

// active reports whether the issue may keep an agent: the rule the
// scheduler dispatches and reconciles by (internal/eligibility).
func active(cfg bus.Config, iss bus.Issue) bool {
	return eligibility.Routable(cfg, iss) == eligibility.Eligible
}
