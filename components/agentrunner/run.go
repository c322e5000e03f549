package agentrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// hookTimeout bounds a workspace request beyond the hook's own timeout.
const requestSlack = 30 * time.Second

// run is one worker run: everything from dispatch to run_finished.
type run struct {
	r        *Component
	d        bus.Dispatch
	snap     bus.ConfigSnapshot
	cancel   chan canceled
	seq      atomic.Int64
	turn     int
	session  string
	usage    bus.Usage
	cost     *float64
	command  []string
	path     string
	exitCode *int
	signal   string
	// out stores the run's agent events with pipelined acknowledgements;
	// every lifecycle event waits until they are all stored.
	out *runlog.Writer
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

func (w *run) base(kind bus.RunEventKind) bus.RunEvent {
	return bus.RunEvent{RunID: w.d.RunID, Event: kind, At: time.Now().UTC(), Issue: w.d.Issue.Ref(), Attempt: w.d.Attempt,
		Workspace: w.path, Agent: w.snap.Config.Agent.Kind, SessionID: w.session, Turn: w.turn, ConfigVersion: w.snap.Version, Command: w.command}
}

// lifecycle publishes a run event durably, in order, without waiting for
// the store: the event goes to the run's lane (see lane), so the store's
// round trips (the event, then the summary's compare-and-set) overlap the
// work that follows — the workspace, the hooks, the agent's start — instead
// of preceding it. A failure is logged (the run goes on, the scheduler's
// stall detection covers a lost end). The claim that makes the run the
// issue's only one was stored by the scheduler before the dispatch; these
// events only describe the run.
func (w *run) lifecycle(ctx context.Context, ev bus.RunEvent) {
	// A lifecycle event follows the agent events before it in the store:
	// run_finished means every event of the run is stored.
	if err := w.out.Flush(context.WithoutCancel(ctx)); err != nil {
		w.r.log.Error("store agent events", "err", err, "run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
	}
	w.lane <- laneItem{ev: ev}
}

// lifecycleStored is lifecycle, and stored is closed once the event is on
// record (or failed to be).
func (w *run) lifecycleStored(ctx context.Context, ev bus.RunEvent, stored chan struct{}) {
	if err := w.out.Flush(context.WithoutCancel(ctx)); err != nil {
		w.r.log.Error("store agent events", "err", err, "run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
	}
	w.lane <- laneItem{ev: ev, stored: stored}
}

// laneItem is a lifecycle event to record, or a hold: the lane records
// nothing after a hold until its channel is closed, or laneHoldMax has
// passed. stored, when set, is closed once the event is recorded.
type laneItem struct {
	ev     bus.RunEvent
	hold   <-chan struct{}
	stored chan struct{}
}

// laneHoldMax bounds a hold: something slow on the way to the agent's
// start (a slow disk, a hook the dispatch did not expect) must not keep
// the run off the record.
const laneHoldMax = time.Second

// holdLane makes the lane wait, after what it has queued, until until is
// closed (at most laneHoldMax). The run holds it from its start until its
// first agent's start was tried when no hook stands in between: on a small
// machine the store's work for dispatched and workspace_ready (a publish
// and a compare-and-set each) would otherwise compete for the CPU with the
// workspace, the agent's exec and the components between them. The caller
// must close until on every path.
func (w *run) holdLane(until <-chan struct{}) {
	w.lane <- laneItem{hold: until}
}

// recordLifecycle stores one run event and updates the run's summary; it
// runs on the lane's goroutine.
func (w *run) recordLifecycle(ctx context.Context, ev bus.RunEvent) {
	id := fmt.Sprintf("%s-%s-%d", w.d.RunID, ev.Event, ev.Turn)
	if err := w.rec.Record(context.WithoutCancel(ctx), ev, id); err != nil {
		w.r.log.Error("publish run event", "err", err, "run_id", w.d.RunID, "event", ev.Event, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
	}
}

// laneDepth bounds the lifecycle events queued for the store; a run emits a
// handful per turn, so the run never waits on it in practice.
const laneDepth = 16

// startLane starts the goroutine that records the run's lifecycle events
// in the order they were queued. The returned function closes the lane and
// returns once every queued event is recorded.
func (w *run) startLane(ctx context.Context) (closeAndWait func()) {
	w.lane = make(chan laneItem, laneDepth)
	w.rec = runlog.NewRecorder(w.r.opts.Bus)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for it := range w.lane {
			if it.hold != nil {
				t := time.NewTimer(laneHoldMax)
				select {
				case <-it.hold:
				case <-t.C:
				}
				t.Stop()
				continue
			}
			w.recordLifecycle(ctx, it.ev)
			if it.stored != nil {
				close(it.stored)
			}
		}
	}()
	return func() {
		close(w.lane)
		<-done
	}
}

// record stores one turn event durably, in order. It joins the events
// appended since the last commit (everything read from the agent in one
// go is stored as one message; see runlog.Writer.AppendTurn); commit, or any
// lifecycle event, sends them, with at most a window of messages awaiting
// acknowledgement (back-pressure beyond that; nothing is dropped).
func (w *run) record(ctx context.Context, ev bus.TurnEvent) error {
	ev.RunID, ev.Turn, ev.Seq = w.d.RunID, w.turn, w.seq.Add(1)
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	if ev.SessionID == "" {
		ev.SessionID = w.session
	}
	if err := w.out.AppendTurn(context.WithoutCancel(ctx), ev); err != nil {
		return err
	}
	// The monotonic clock: ev.At is wall time only (UTC), and a clock
	// stepping back must not stop progress.
	w.prog.note(ev, time.Now())
	return nil
}

// execute runs the whole worker run and publishes its end.
func (w *run) execute(ctx context.Context) {
	log := w.r.log.With("run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
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
	stall := w.snap.Config.Claude.StallTimeoutMS
	if w.snap.Config.Agent.Kind == bus.AgentCodex {
		stall = w.snap.Config.Codex.StallTimeoutMS
	}
	w.prog = newProgress(w.r.opts.Bus, w.d.RunID, progressPeriod(time.Duration(stall)*time.Millisecond))
	pctx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		w.prog.run(pctx)
	}()
	status, errText := w.work(ctx)
	// run_finished says succeeded only when every agent event of the run
	// is stored (the writer's error sticks once a message could not be).
	if err := w.out.Flush(context.WithoutCancel(ctx)); err != nil && status == bus.RunSucceeded {
		status, errText = bus.RunFailed, storeFailed(err)
	}
	w.releaseFirst()
	stopProgress()
	<-progressDone
	// The run is over: it must not be cancelable or block a new dispatch
	// for the issue once its end is published.
	w.r.forget(w.d.RunID)
	end := w.base(bus.RunFinished)
	end.Status, end.Error = status, errText
	u := w.usage
	end.Usage, end.CostUSD, end.ExitCode, end.Signal = &u, w.cost, w.exitCode, w.signal
	w.lifecycle(ctx, end)
	// The end, and every event before it, is on record before the run
	// leaves the runner.
	closeLane()
	w.r.ended(w.d.RunID)
	if status == bus.RunSucceeded {
		log.Info("run finished", "status", status, "turns", w.turn, "session_id", w.session)
	} else {
		log.Warn("run finished", "status", status, "err", errText, "turns", w.turn, "session_id", w.session)
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

// work does the run and returns its terminal status and error.
func (w *run) work(ctx context.Context) (bus.RunStatus, string) {
	cfg := w.snap.Config
	if st, why, ok := w.interrupted(ctx); ok {
		return st, why
	}
	// The loader accepts agent.kind codex (the contract's schema), but this
	// runner speaks only the claude stream. Running claude.command for a
	// workflow that asked for codex would be a different agent than the
	// one configured; the run ends blocked instead, so the issue is held
	// (no retry loop) with the reason on the dashboard.
	if cfg.Agent.Kind == bus.AgentCodex {
		return bus.RunBlocked, ErrCodexUnsupported
	}
	b := w.r.opts.Bus
	iss, err := w.fullIssue(ctx)
	if err != nil {
		if st, why, ok := w.interrupted(ctx); ok {
			return st, why
		}
		return bus.RunFailed, err.Error()
	}
	timeout := cfg.Hooks.Timeout() + requestSlack
	// The first turn's process window (procscan.Window) is opened now,
	// while the workspace is prepared, not on the way to the agent's start
	// (it reads three files of /proc). Opened earlier, it only covers
	// more processes.
	firstSince := make(chan procscan.Window, 1)
	go func() { firstSince <- procscan.Open() }()

	pctx, cancel := context.WithTimeout(ctx, timeout)
	ready, err := bus.Ask(pctx, b, bus.WorkspacePrepare, bus.PrepareWorkspace{Issue: iss, RunID: w.d.RunID})
	cancel()
	if err != nil {
		// A shutdown (or a cancel) during the request is not the
		// workspace's failure.
		if st, why, ok := w.interrupted(ctx); ok {
			return st, why
		}
		return bus.RunFailed, "prepare workspace: " + err.Error()
	}
	// The agent must run exactly in the issue's workspace (spec §9.5).
	want := filepath.Join(cfg.Workspace.Root, w.d.Issue.Identifier)
	if filepath.Clean(ready.Path) != filepath.Clean(want) || !filepath.IsAbs(ready.Path) {
		return bus.RunFailed, fmt.Sprintf("workspace %q is not %q", ready.Path, want)
	}
	if st, err := os.Stat(ready.Path); err != nil || !st.IsDir() {
		return bus.RunFailed, fmt.Sprintf("workspace %s is not a directory", ready.Path)
	}
	w.path = ready.Path
	w.lifecycle(ctx, w.base(bus.RunWorkspaceReady))
	if st, why, ok := w.interrupted(ctx); ok {
		return st, why
	}

	// before_run is asked for only when the run's configuration has one:
	// the run follows the configuration it was dispatched with, and a
	// request that would run nothing costs a round trip on the way to the
	// agent's start.
	if strings.TrimSpace(cfg.Hooks.BeforeRun) != "" {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = bus.Ask(hctx, b, bus.WorkspaceHook, bus.RunHook{Hook: bus.HookBeforeRun, Issue: iss, RunID: w.d.RunID})
		cancel()
		if err != nil {
			if st, why, ok := w.interrupted(ctx); ok {
				return st, why
			}
			return bus.RunFailed, "before_run: " + err.Error()
		}
	}
	defer func() {
		// after_run runs whatever happened, even when the run was canceled.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if _, err := bus.Ask(actx, b, bus.WorkspaceHook, bus.RunHook{Hook: bus.HookAfterRun, Issue: iss, RunID: w.d.RunID}); err != nil {
			w.r.log.Warn("after_run failed (ignored)", "err", err, "run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
		}
	}()

	tpl, err := prompt.Parse(w.snap.PromptTemplate, 1)
	if err != nil {
		return bus.RunFailed, err.Error()
	}
	first, err := tpl.Render(iss, w.d.Attempt)
	if err != nil {
		return bus.RunFailed, err.Error()
	}

	maxTurns := max(cfg.Agent.MaxTurns, 1)
	issue := iss
	for w.turn = 1; w.turn <= maxTurns; w.turn++ {
		if st, why, ok := w.interrupted(ctx); ok {
			return st, why
		}
		text := first
		if w.turn > 1 {
			text = ContinuationPrompt
		}
		argv := w.r.argv(cfg, w.session)
		w.command = argv
		// turn_started opens the turn in a transcript; its prompt follows.
		// It is queued once the agent's start was tried, with the agent's
		// pid and the moment its start returned, and the prompt is stored
		// only after it, before the agent's first event, so a live reader
		// sees the turn open, then its prompt, then its events. Its At is
		// the turn's beginning, before the start.
		startedEv := w.base(bus.RunTurnStarted)
		turnStored := make(chan struct{})
		startTried := false
		started := func(pid int) {
			at := time.Now().UTC()
			if startTried {
				return
			}
			startTried = true
			if pid > 0 {
				startedEv.AgentPID, startedEv.AgentStartedAt = pid, &at
			}
			w.lifecycleStored(ctx, startedEv, turnStored)
			w.releaseFirst()
		}
		prompt := bus.TurnEvent{Kind: bus.TurnPrompt, Text: bound(text), At: time.Now().UTC()}
		promptSent := false
		sendPrompt := func() error {
			if promptSent {
				return nil
			}
			promptSent = true
			<-turnStored
			return w.record(ctx, prompt)
		}
		silence := time.Duration(cfg.Claude.TurnTimeoutMS) * time.Millisecond
		// The markers let a restarted scheduler find this run's processes,
		// descendants included, if Symphony dies while they run.
		env := append(w.r.childEnv(cfg), markerEnv+"="+w.d.RunID, "SYMPHONY_ISSUE_ID="+w.d.Issue.ID, "SYMPHONY_ISSUE_IDENTIFIER="+w.d.Issue.Identifier)
		spec := turnSpec{argv: argv, dir: w.path, env: env, stdin: text, silence: silence, runID: w.d.RunID, started: started,
			commit: func() error { return w.out.SendTurns(context.WithoutCancel(ctx)) }}
		if w.turn == 1 {
			spec.since = firstSince
		}
		out := runTurn(ctx, spec, w.cancel,
			func(ev bus.TurnEvent) error {
				if err := sendPrompt(); err != nil {
					return fmt.Errorf("record prompt: %w", err)
				}
				return w.record(ctx, ev)
			})
		// A turn that failed before its start was tried still opens.
		started(0)
		if err := sendPrompt(); err != nil {
			return bus.RunFailed, "record prompt: " + err.Error()
		}
		w.prog.flush(time.Now())
		if out.abandoned {
			w.r.log.Warn("a process that left the agent's process group held its output open after it exited; it was killed and reading stopped",
				"run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier, "grace", DrainGrace)
		}
		if out.sessionID != "" && w.session == "" {
			w.session = out.sessionID
			w.lifecycle(ctx, w.base(bus.RunSessionStarted))
		}
		w.exitCode, w.signal = out.exitCode, out.signal
		fin := w.base(bus.RunTurnFinished)
		if out.result != nil {
			// Usage and cost are per invocation: sum them over the run.
			u := out.result.Usage
			fin.Usage, fin.CostUSD = &u, out.result.CostUSD
			w.usage = w.usage.Add(u)
			if out.result.CostUSD != nil {
				c := *out.result.CostUSD
				if w.cost != nil {
					c += *w.cost
				}
				w.cost = &c
			}
		}
		fin.ExitCode, fin.Signal = out.exitCode, out.signal
		if out.status != bus.RunSucceeded {
			fin.Status, fin.Error = out.status, out.err
		}
		if out.stderr != "" && out.status != bus.RunSucceeded {
			_ = w.record(ctx, bus.TurnEvent{Kind: bus.TurnStderr, Text: bound(out.stderr)})
		}
		// The turn's end is recorded after every one of its events is
		// stored; a turn whose events the store refused did not succeed,
		// whatever its result line said.
		if err := w.out.Flush(context.WithoutCancel(ctx)); err != nil && out.status == bus.RunSucceeded {
			out.status, out.err = bus.RunFailed, storeFailed(err)
			fin.Status, fin.Error = out.status, out.err
		}
		w.lifecycle(ctx, fin)
		if out.status != bus.RunSucceeded {
			return out.status, out.err
		}
		if w.turn == maxTurns {
			break
		}
		if w.session == "" {
			// Without a session a continuation would reach an agent that
			// never saw the task: stop here; the scheduler checks back.
			w.r.log.Warn("no session id from the agent; not continuing", "run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
			break
		}
		// Continue only while the issue is still active (spec §7.1).
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		list, err := bus.Ask(rctx, b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{issue.ID}})
		cancel()
		if err != nil {
			return bus.RunSucceeded, ""
		}
		idx := slices.IndexFunc(list.Issues, func(i bus.Issue) bool { return i.ID == issue.ID })
		if idx < 0 || !active(cfg, list.Issues[idx]) {
			return bus.RunSucceeded, ""
		}
		issue = list.Issues[idx]
	}
	return bus.RunSucceeded, ""
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
			w.r.log.Warn("read the issue from the tracker failed; trying again", "err", err, "in", wait,
				"run_id", w.d.RunID, "issue_id", w.d.Issue.ID, "issue_identifier", w.d.Issue.Identifier)
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

var errNoConfig = errors.New("no workflow configuration loaded yet")
