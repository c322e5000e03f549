package agentrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

const testTimeout = 60 * time.Second

// harness runs the agent runner on a real bus, with the workspace and
// tracker answered by small stand-ins (components do not import each other,
// so the real ones are exercised in their own packages and end to end).
type harness struct {
	t      *testing.T
	b      *bus.Bus
	root   string
	runEvs *bus.Subscription[bus.RunEvent]
	mu     sync.Mutex
	// issueBudget is what the next dispatches carry of the issue's
	// lifetime caps (nil: none).
	issueBudget *bus.IssueBudgetLeft
	// dayBudget is what they carry of the fleet's daily caps.
	dayBudget *bus.DayBudgetLeft
	// state is what the stand-in tracker answers for refreshes.
	state    string
	hooks    []string
	refreshs int
	// refreshFails is how many of the next refreshes fail (a tracker
	// blip).
	refreshFails int
	// onHook, when set, runs inside the stand-in's answer to a hook
	// request.
	onHook func(hook string)
	// stop stops the runner alone (as a shutdown of Symphony does) and
	// returns what its Run returned; the bus stays up.
	stop func() error
}

// defaultTemplate is the harness's prompt template.
const defaultTemplate = "Do {{ issue.identifier }}{% if attempt %} (attempt {{ attempt }}){% endif %}"

func newHarness(t *testing.T, mode string, mutate func(*bus.Config), environ ...string) *harness {
	t.Helper()
	return newHarnessTemplate(t, mode, defaultTemplate, mutate, environ...)
}

// newHarnessTemplate is newHarness with the config's prompt template.
func newHarnessTemplate(t *testing.T, mode, template string, mutate func(*bus.Config), environ ...string) *harness {
	t.Helper()
	return startHarness(t, mode, template, mutate, nil, environ...)
}

// startHarness is newHarnessTemplate; with mcp set, the bus has its tool
// listener and the runner offers runs their tracker tools, starting mcp as
// their MCP server.
func startHarness(t *testing.T, mode, template string, mutate func(*bus.Config), mcp []string, environ ...string) *harness {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir(), ToolListener: mcp != nil})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, b: b, root: filepath.Join(t.TempDir(), "ws"), state: "In Progress"}
	ctx, cancel := context.WithCancel(context.Background())
	if h.runEvs, err = bus.Subscribe(ctx, b, bus.RunEvents); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.WorkspacePrepare, func(_ context.Context, _ string, req bus.PrepareWorkspace) (bus.WorkspaceReady, error) {
		p := filepath.Join(h.root, req.Issue.Identifier)
		return bus.WorkspaceReady{Path: p, CreatedNow: true}, os.MkdirAll(p, 0o755)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.WorkspaceHook, func(_ context.Context, _ string, req bus.RunHook) (bus.HookResult, error) {
		h.mu.Lock()
		h.hooks = append(h.hooks, req.Hook)
		on := h.onHook
		h.mu.Unlock()
		if on != nil {
			on(req.Hook)
		}
		return bus.HookResult{Hook: req.Hook, Ran: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.TrackerRefresh, func(_ context.Context, _ string, req bus.IssuesByIDs) (bus.IssueList, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.refreshs++
		if h.refreshFails > 0 {
			h.refreshFails--
			return bus.IssueList{}, errors.New("tracker unavailable (test)")
		}
		iss := testIssue()
		iss.State = h.state
		return bus.IssueList{Issues: []bus.Issue{iss}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	cfg := bus.Config{
		Tracker:   bus.TrackerConfig{ActiveStates: []string{"Todo", "In Progress"}, TerminalStates: []string{"Done"}, Provider: bus.TrackerProvider{APIKey: bus.NewSecret("MY_TRACKER_KEY", "")}},
		Workspace: bus.WorkspaceConfig{Root: h.root},
		Hooks:     bus.HooksConfig{TimeoutMS: 5000},
		Agent:     bus.AgentConfig{Kind: "claude", MaxTurns: 3},
		Claude:    bus.ClaudeConfig{Command: os.Args[0], TurnTimeoutMS: 20000, Model: "fake-model", PermissionMode: "acceptEdits", AllowedTools: []string{"Read", "Write"}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if _, err := bus.Put(t.Context(), b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 7, Config: cfg, PromptTemplate: template}); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), fakeEnv+"="+mode)
	env = append(env, environ...)
	comp, err := New(Options{Bus: b, Environ: func() []string { return env }, MCPCommand: mcp})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	runCtx, stopRun := context.WithCancel(ctx)
	go func() { done <- comp.Run(runCtx) }()
	h.stop = sync.OnceValue(func() error {
		stopRun()
		return <-done
	})
	t.Cleanup(func() {
		cancel()
		if err := h.stop(); err != nil {
			t.Error(err)
		}
		_ = b.Close(context.Background())
	})
	return h
}

func testIssue() bus.Issue {
	return bus.Issue{ID: "issue-1", Identifier: "ABC-1", Title: "Fix it", State: "Todo", Dispatchable: true, Labels: []string{}}
}

// dispatch sends a dispatch, retrying until the runner has its config.
func (h *harness) dispatch(runID string) {
	h.t.Helper()
	h.dispatchIssue(runID, testIssue())
}

// dispatchIssue is dispatch of the given issue.
func (h *harness) dispatchIssue(runID string, iss bus.Issue) {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		ctx, cancel := context.WithTimeout(h.t.Context(), 2*time.Second)
		_, err := bus.Ask(ctx, h.b, bus.AgentDispatch, bus.Dispatch{RunID: runID, Issue: iss, IssueBudget: h.issueBudget, DayBudget: h.dayBudget})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("dispatch: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finished waits for the run's run_finished event, collecting the others.
func (h *harness) finished() (bus.RunEvent, []bus.RunEvent) {
	h.t.Helper()
	var all []bus.RunEvent
	for {
		select {
		case m := <-h.runEvs.C():
			all = append(all, m.Data)
			if m.Data.Event == bus.RunFinished {
				return m.Data, all
			}
		case <-time.After(testTimeout):
			h.t.Fatalf("no run_finished; saw %+v", all)
		}
	}
}

// waitAgentRunning waits until the run's agent is running: its prompt and
// init line are stored.
func (h *harness) waitAgentRunning(runID string) {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for len(h.turns(runID)) < 2 {
		if time.Now().After(deadline) {
			h.t.Fatal("agent never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) turns(runID string) []bus.TurnEvent {
	h.t.Helper()
	var out []bus.TurnEvent
	for m, err := range bus.History(h.t.Context(), h.b, bus.TurnEvents, runID) {
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, m.Data)
	}
	return out
}

func TestRunContinuesUntilMaxTurns(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Hooks.BeforeRun = "true" })
	h.dispatch("run-1")
	end, all := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 {
		t.Fatalf("end %+v", end)
	}
	if end.Usage == nil || end.Usage.InputTokens != 30 || end.Usage.OutputTokens != 15 || end.CostUSD == nil || *end.CostUSD != 0.75 {
		t.Errorf("usage and cost must be summed over 3 invocations: %+v %v", end.Usage, end.CostUSD)
	}
	kinds := map[bus.RunEventKind]int{}
	for _, e := range all {
		kinds[e.Event]++
	}
	if kinds[bus.RunDispatched] != 1 || kinds[bus.RunWorkspaceReady] != 1 || kinds[bus.RunSessionStarted] != 1 || kinds[bus.RunTurnStarted] != 3 || kinds[bus.RunTurnFinished] != 3 {
		t.Errorf("lifecycle %v", kinds)
	}
	if end.ConfigVersion != 7 || end.Workspace != filepath.Join(h.root, "ABC-1") || !strings.Contains(strings.Join(end.Command, " "), "--resume 11111111-2222-4333-8444-555555555555") {
		t.Errorf("record: %+v", end)
	}
	evs := h.turns("run-1")
	var prompts []string
	resumed := 0
	parseErrs := 0
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("seq %d at %d", e.Seq, i)
		}
		switch e.Kind {
		case bus.TurnPrompt:
			prompts = append(prompts, e.Text)
		case bus.TurnText:
			if strings.Contains(e.Text, "resumed=true") {
				resumed++
			}
		case bus.TurnParseError:
			parseErrs++
		}
	}
	if len(prompts) != 3 || prompts[0] != "Do ABC-1" || prompts[1] != ContinuationPrompt {
		t.Errorf("prompts %q", prompts)
	}
	if resumed != 2 || parseErrs != 3 {
		t.Errorf("resumed turns %d (want 2), parse errors %d (want 3)", resumed, parseErrs)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if strings.Join(h.hooks, ",") != "before_run,after_run" || h.refreshs != 2 {
		t.Errorf("hooks %v, refreshes %d", h.hooks, h.refreshs)
	}
}

func TestRunStopsWhenIssueLeavesActiveStates(t *testing.T) {
	h := newHarness(t, "ok", nil)
	h.mu.Lock()
	h.state = "Human Review"
	h.mu.Unlock()
	h.dispatch("run-2")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 1 {
		t.Errorf("end %+v", end)
	}
}

func TestRunOutcomes(t *testing.T) {
	cases := []struct {
		mode   string
		status bus.RunStatus
		err    string
		mutate func(*bus.Config)
	}{
		{"exit3", bus.RunFailed, "fatal: something broke", nil},
		{"nothing", bus.RunFailed, "without a result", nil},
		{"api-error", bus.RunFailed, "API Error: 500 boom", nil},
		{"denied", bus.RunBlocked, "denied permission for Write", nil},
		{"result-then-exit1", bus.RunSucceeded, "", func(c *bus.Config) { c.Agent.MaxTurns = 1 }},
		{"silent", bus.RunTimedOut, "no output from the agent", func(c *bus.Config) { c.Claude.TurnTimeoutMS = 300 }},
		{"stderr-flood", bus.RunSucceeded, "", func(c *bus.Config) { c.Agent.MaxTurns = 1 }},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			h := newHarness(t, c.mode, c.mutate)
			h.dispatch("run-" + c.mode)
			end, _ := h.finished()
			if end.Status != c.status || !strings.Contains(end.Error, c.err) {
				t.Errorf("end %s %q, want %s %q", end.Status, end.Error, c.status, c.err)
			}
			h.mu.Lock()
			hooks := strings.Join(h.hooks, ",")
			h.mu.Unlock()
			if !strings.HasSuffix(hooks, "after_run") {
				t.Errorf("after_run did not run: %s", hooks)
			}
		})
	}
}

// sleeperGone waits until the fake agent's background child is dead.
func sleeperGone(t *testing.T, pidFile string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	var pid int
	for pid == 0 {
		raw, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		if time.Now().After(deadline) {
			t.Fatal("no sleeper pid recorded")
		}
		if pid == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Fields(string(stat))[2] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's child %d outlived the turn", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStragglerDoesNotHoldTheTurn: a background job holding stdout open
// after a good result neither delays the outcome nor changes it, and is
// killed.
func TestStragglerDoesNotHoldTheTurn(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHarness(t, "straggler", func(c *bus.Config) { c.Agent.MaxTurns = 1 }, "SLEEPER_PID_FILE="+pidFile)
	start := time.Now()
	h.dispatch("run-s")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded {
		t.Errorf("end %s %q", end.Status, end.Error)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the straggler held the turn for %v", d)
	}
	sleeperGone(t, pidFile)
}

func TestCancelKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHarness(t, "hang", nil, "SLEEPER_PID_FILE="+pidFile)
	h.dispatch("run-c")
	h.waitAgentRunning("run-c")
	started := time.Now()
	res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-c", Reason: "issue moved to Done", Status: bus.RunCanceled})
	if err != nil || !res.Found {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	end, _ := h.finished()
	if end.Status != bus.RunCanceled || end.Error != "issue moved to Done" || end.Signal != "killed" {
		t.Errorf("end %+v (signal %q)", end, end.Signal)
	}
	if d := time.Since(started); d < KillGrace-time.Second || d > KillGrace+20*time.Second {
		t.Errorf("a SIGTERM-ignoring agent was killed after %v, want about %v", d, KillGrace)
	}
	// Once its end is on record (a moment after run_finished is seen) the
	// run is no longer known.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if res, _ := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-c"}); !res.Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a finished run is still cancelable")
		}
	}
	sleeperGone(t, pidFile)
}

// TestChildEnvironmentHasNoTrackerSecret: the agent never inherits the
// tracker's key: not under its configured name, not under the names its
// tracker's tools read (for GitHub GH_TOKEN and the rest), not copied
// under any other name.
func TestChildEnvironmentHasNoTrackerSecret(t *testing.T) {
	for _, kind := range []string{bus.TrackerLinear, bus.TrackerGitHub} {
		t.Run(kind, func(t *testing.T) { childEnvHasNoSecret(t, kind) })
	}
}

func childEnvHasNoSecret(t *testing.T, kind string) {
	env := []string{"LINEAR_API_KEY=lin_secret", "MY_TRACKER_KEY=other_secret", "KEEP_ME=yes", "COPY_OF_KEY=other_secret"}
	if kind == bus.TrackerGitHub {
		env = append(env, "GH_TOKEN=gh1_secret", "GITHUB_TOKEN=gh2_secret", "GH_ENTERPRISE_TOKEN=gh3_secret", "GITHUB_ENTERPRISE_TOKEN=gh4_secret")
	}
	h := newHarness(t, "env", func(c *bus.Config) {
		c.Agent.MaxTurns = 1
		c.Tracker.Kind = kind
	}, env...)
	h.dispatch("run-e")
	if end, _ := h.finished(); end.Status != bus.RunSucceeded {
		t.Fatalf("end %+v", end)
	}
	var texts []string
	for _, e := range h.turns("run-e") {
		if e.Kind == bus.TurnText {
			texts = append(texts, e.Text)
		}
	}
	if fmt.Sprint(texts) != "[KEEP_ME=yes]" {
		t.Errorf("the child saw %v", texts)
	}
}

func TestDispatchRefusals(t *testing.T) {
	h := newHarness(t, "hang", nil)
	h.dispatch("run-x")
	_, err := bus.Ask(t.Context(), h.b, bus.AgentDispatch, bus.Dispatch{RunID: "run-y", Issue: testIssue()})
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Code != "already_running" {
		t.Errorf("second run for the same issue: %v", err)
	}
	bad := testIssue()
	bad.ID, bad.Identifier = "other", "../x"
	if _, err := bus.Ask(t.Context(), h.b, bus.AgentDispatch, bus.Dispatch{RunID: "run-z", Issue: bad}); !errors.As(err, &re) || re.Code != "unsafe_identifier" {
		t.Errorf("unsafe identifier: %v", err)
	}
	_, _ = bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-x"})
	h.finished()
}

// TestCancelOfAnEndingRunIsFound: between the agent's end and its recorded
// end a cancel is answered "found" and the run is listed as live, so the
// scheduler (a restarted one too) never records the run a second time as
// lost.
func TestCancelOfAnEndingRunIsFound(t *testing.T) {
	// The runner's state, as its owner goroutine holds it.
	c := newRunSet()
	c.runs["r1"] = &run{d: bus.Dispatch{RunID: "r1"}, cancel: make(chan canceled, 1)}
	c.forget("r1")
	if !c.cancel(bus.CancelRun{RunID: "r1"}) {
		t.Error("cancel of an ending run not found: the scheduler would record it as interrupted")
	}
	// A scheduler starting now (a supervisor restart) lists it as live,
	// so it adopts the run and waits for its end.
	if l := c.live(); len(l.Runs) != 1 || l.Runs[0].RunID != "r1" {
		t.Errorf("live runs %+v while r1's end is being recorded, want r1", l.Runs)
	}
	c.ended("r1")
	if c.cancel(bus.CancelRun{RunID: "r1"}) {
		t.Error("cancel of a run whose end is recorded reported found")
	}
	if l := c.live(); len(l.Runs) != 0 {
		t.Errorf("live runs %+v after r1's end is on record", l.Runs)
	}
}

// TestLifecycleRecordedInOrder: lifecycle events are stored off the run's
// path (its lane) but in the order the run emitted them, and the run's
// summary holds its end once the run is over.
func TestLifecycleRecordedInOrder(t *testing.T) {
	h := newHarness(t, "ok", nil)
	h.dispatch("run-order")
	end, all := h.finished()
	if end.Status != bus.RunSucceeded {
		t.Fatalf("end %+v", end)
	}
	var got []string
	for _, e := range all {
		got = append(got, string(e.Event))
	}
	want := "dispatched workspace_ready turn_started session_started turn_finished turn_started turn_finished turn_started turn_finished run_finished"
	if strings.Join(got, " ") != want {
		t.Errorf("lifecycle\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	// A subscriber may see run_finished a moment before the store has it
	// (the server hands a stored subject's message to subscribers and to
	// the stream at once): the stored record is read until it ends.
	var stored []string
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(10 * time.Millisecond) {
		stored = stored[:0]
		for m, err := range bus.History(t.Context(), h.b, bus.RunEvents, "run-order") {
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, string(m.Data.Event))
		}
		if len(stored) > 0 && stored[len(stored)-1] == string(bus.RunFinished) || time.Now().After(deadline) {
			break
		}
	}
	if strings.Join(stored, " ") != want {
		t.Errorf("stored\n got %s\nwant %s", strings.Join(stored, " "), want)
	}
	// A live reader sees each turn open before its prompt, and the prompt
	// before the turn's first agent event: in store time, turn n's
	// turn_started precedes its prompt, which precedes its other events.
	opened := map[int]time.Time{}
	for m, err := range bus.History(t.Context(), h.b, bus.RunEvents, "run-order") {
		if err != nil {
			t.Fatal(err)
		}
		if m.Data.Event == bus.RunTurnStarted {
			opened[m.Data.Turn] = m.Time
		}
	}
	prompted := map[int]bool{}
	for m, err := range bus.History(t.Context(), h.b, bus.TurnEvents, "run-order") {
		if err != nil {
			t.Fatal(err)
		}
		turn := m.Data.Turn
		if m.Time.Before(opened[turn]) {
			t.Errorf("turn %d: %s stored before its turn_started", turn, m.Data.Kind)
		}
		if m.Data.Kind == bus.TurnPrompt {
			prompted[turn] = true
		} else if !prompted[turn] {
			t.Errorf("turn %d: %s stored before the prompt", turn, m.Data.Kind)
		}
	}
	if len(prompted) != 3 {
		t.Errorf("prompts stored for %d turns, want 3", len(prompted))
	}
	// No before_run in the run's configuration: only after_run is asked.
	h.mu.Lock()
	hooks := strings.Join(h.hooks, ",")
	h.mu.Unlock()
	if hooks != "after_run" {
		t.Errorf("hook requests %s, want after_run alone", hooks)
	}
	// Once the runner no longer knows the run (a cancel finds it neither
	// live nor ending), its end is on record.
	k, err := bus.RunSummaries.Key("run-order")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for {
		res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-order", Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner still knows the run")
		}
		time.Sleep(time.Millisecond)
	}
	if e, err := bus.Get(t.Context(), h.b, k); err != nil || e.Value.Ended == nil || e.Value.Status != bus.RunSucceeded {
		t.Errorf("the run left the runner with its summary %+v (%v)", e.Value, err)
	}
}

// TestAgentThatCannotStartEndsTheRun: the lane holds turn_started until
// the agent's start was tried; a start that fails releases it too, and the
// run ends with every lifecycle event on record.
// TestExpensivePromptFailsTheRun: the render budget applies to each prompt
// the runner renders, not only to the trial render at load: a template
// that loops without end for this issue (the trial render's sample issue
// would have passed) fails the run with a template_render_error at once,
// before any agent starts, instead of spinning the runner.
func TestExpensivePromptFailsTheRun(t *testing.T) {
	h := newHarnessTemplate(t, "ok", "Do {{ issue.identifier }}{% if issue.identifier == 'ABC-1' %}{% for i in (1..100000) %}{% for j in (1..100000) %}{% endfor %}{% endfor %}{% endif %}", nil)
	h.dispatch("run-bomb")
	end, all := h.finished()
	if end.Status != bus.RunFailed || !strings.Contains(end.Error, "template_render_error") || !strings.Contains(end.Error, "render budget exceeded") {
		t.Errorf("end %s %q, want failed with the render budget", end.Status, end.Error)
	}
	for _, e := range all {
		if e.Event == bus.RunTurnStarted {
			t.Errorf("an agent turn started: %+v", e)
		}
	}
}

func TestAgentThatCannotStartEndsTheRun(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Claude.Command = filepath.Join(t.TempDir(), "no-such-agent") })
	h.dispatch("run-nostart")
	end, all := h.finished()
	if end.Status != bus.RunFailed || !strings.Contains(end.Error, "start agent") {
		t.Errorf("end %s %q, want failed: start agent", end.Status, end.Error)
	}
	var got []string
	for _, e := range all {
		got = append(got, string(e.Event))
	}
	if want := "dispatched workspace_ready turn_started turn_finished run_finished"; strings.Join(got, " ") != want {
		t.Errorf("lifecycle %s, want %s", strings.Join(got, " "), want)
	}
	for _, e := range all {
		if e.Event == bus.RunTurnStarted && (e.AgentPID != 0 || e.AgentStartedAt != nil) {
			t.Errorf("turn_started of an agent that never started says pid %d started at %v", e.AgentPID, e.AgentStartedAt)
		}
	}
}

// TestRefusedAgentEventsFailTheRun: when the store refuses the run's agent
// events (a full TURNS stream that takes no new message), the run does not end
// succeeded, although the agent's result line said it did: run_finished
// succeeded means every event of the run is stored.
func TestRefusedAgentEventsFailTheRun(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Agent.MaxTurns = 1 })
	js := h.b.JetStream()
	s, err := js.Stream(t.Context(), bus.StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// The one message it takes is there already: the run's are refused.
	filler, err := bus.TurnEvents.Subject("filler", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), filler, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	h.dispatch("run-refused")
	end, all := h.finished()
	if end.Status != bus.RunFailed || !strings.Contains(end.Error, "maximum messages") {
		t.Errorf("run_finished %s %q with %d agent events stored, want failed naming the store's refusal", end.Status, end.Error, len(h.turns("run-refused")))
	}
	for _, e := range all {
		if e.Event == bus.RunTurnFinished && e.Status == bus.RunSucceeded {
			t.Errorf("turn %d recorded as succeeded with its events refused", e.Turn)
		}
	}
}

// TestShutdownRecordsRunsInterrupted: a run in flight when Symphony shuts
// down ends interrupted (the contract's word for a run a restart cut
// short, which the scheduler re-dispatches once), not canceled (an
// operator's or reconciliation's decision, which it does not).
func TestShutdownRecordsRunsInterrupted(t *testing.T) {
	h := newHarness(t, "hang", nil)
	h.dispatch("run-shut")
	h.waitAgentRunning("run-shut")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	evs := storedRunEvents(t, h.b, "run-shut")
	if len(evs) == 0 {
		t.Fatal("nothing stored")
	}
	end := evs[len(evs)-1].Data
	if end.Event != bus.RunFinished || end.Status != bus.RunInterrupted || end.Error != "symphony is shutting down" {
		t.Errorf("last stored event %s %s %q, want run_finished interrupted: symphony is shutting down", end.Event, end.Status, end.Error)
	}
}

// TestShutdownDuringAHookRecordsInterrupted: a shutdown while the run
// waits for its before_run hook ends it interrupted too, not failed: the
// hook request ends with the runner's context, which is not the hook's
// failure (a failed end is retried with backoff after the restart).
func TestShutdownDuringAHookRecordsInterrupted(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, "ok", func(c *bus.Config) { c.Hooks.BeforeRun = "make setup" })
	t.Cleanup(func() { close(release) }) // runs before the harness's cleanup
	inHook := make(chan struct{}, 1)
	h.mu.Lock()
	h.onHook = func(hook string) {
		if hook == bus.HookBeforeRun {
			inHook <- struct{}{}
			<-release
		}
	}
	h.mu.Unlock()
	h.dispatch("run-hookshut")
	select {
	case <-inHook:
	case <-time.After(testTimeout):
		t.Fatal("before_run never requested")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	evs := storedRunEvents(t, h.b, "run-hookshut")
	if len(evs) == 0 {
		t.Fatal("nothing stored")
	}
	if end := evs[len(evs)-1].Data; end.Event != bus.RunFinished || end.Status != bus.RunInterrupted {
		t.Errorf("last stored event %s %s %q, want run_finished interrupted", end.Event, end.Status, end.Error)
	}
}

// storedRunEvents reads the run's lifecycle events from the store, with
// the time each was stored.
func storedRunEvents(t *testing.T, b *bus.Bus, runID string) []bus.Message[bus.RunEvent] {
	t.Helper()
	var out []bus.Message[bus.RunEvent]
	for m, err := range bus.History(t.Context(), b, bus.RunEvents, runID) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestTurnStartedCarriesTheAgentProcess: each turn's turn_started names
// the process the turn ran (its pid, as the agent itself saw it) and when
// its start returned, after the turn began and before the agent's first
// event. With no hook on the way, nothing of the run is stored before its
// first agent was started (the lane holds), and then every event is.
func TestTurnStartedCarriesTheAgentProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	h := newHarness(t, "ok", nil, "FAKE_PID_FILE="+pidFile)
	h.dispatch("run-pid")
	if end, _ := h.finished(); end.Status != bus.RunSucceeded {
		t.Fatalf("end %+v", end)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(raw))
	stored := storedRunEvents(t, h.b, "run-pid")
	firstEvent := map[int]time.Time{}
	for _, ev := range h.turns("run-pid") {
		if _, ok := firstEvent[ev.Turn]; !ok && ev.Kind != bus.TurnPrompt {
			firstEvent[ev.Turn] = ev.At
		}
	}
	var started []bus.RunEvent
	for _, m := range stored {
		if m.Data.Event == bus.RunTurnStarted {
			started = append(started, m.Data)
		}
	}
	if len(started) != 3 || len(pids) != 3 {
		t.Fatalf("%d turn_started events, %d agent processes; want 3 of each", len(started), len(pids))
	}
	for i, ev := range started {
		if strconv.Itoa(ev.AgentPID) != pids[i] {
			t.Errorf("turn %d: pid %d on record, the agent was %s", ev.Turn, ev.AgentPID, pids[i])
		}
		at := ev.AgentStartedAt
		switch {
		case at == nil:
			t.Errorf("turn %d: no start time", ev.Turn)
		case at.Before(ev.At):
			t.Errorf("turn %d: agent started at %v, before the turn began at %v", ev.Turn, *at, ev.At)
		case at.After(firstEvent[ev.Turn]):
			t.Errorf("turn %d: agent started at %v, after its first event at %v", ev.Turn, *at, firstEvent[ev.Turn])
		}
	}
	// The lane held until the first agent's start was tried.
	for _, m := range stored[:2] {
		if m.Time.Before(*started[0].AgentStartedAt) {
			t.Errorf("%s stored at %v, before the first agent started (%v)", m.Data.Event, m.Time, *started[0].AgentStartedAt)
		}
	}
	// The export carries them as documented.
	raw, err = json.Marshal(started[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"agent_pid":`+pids[0]) || !strings.Contains(string(raw), `"agent_started_at":`) {
		t.Errorf("turn_started JSON %s lacks agent_pid or agent_started_at", raw)
	}
}

// TestRunOnRecordWhileAHookRuns: a hook can take minutes, so with one on
// the way to the agent the lane does not hold: the run is on record while
// its before_run hook runs.
func TestRunOnRecordWhileAHookRuns(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Hooks.BeforeRun = "true"; c.Agent.MaxTurns = 1 })
	seen := make(chan bool, 1)
	h.mu.Lock()
	h.onHook = func(hook string) {
		if hook != bus.HookBeforeRun {
			return
		}
		// Well within laneHoldMax: a hold would show here.
		deadline := time.Now().Add(laneHoldMax / 2)
		for time.Now().Before(deadline) {
			for m, err := range bus.History(t.Context(), h.b, bus.RunEvents, "run-hook") {
				if err == nil && m.Data.Event == bus.RunWorkspaceReady {
					seen <- true
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		seen <- false
	}
	h.mu.Unlock()
	h.dispatch("run-hook")
	if end, _ := h.finished(); end.Status != bus.RunSucceeded {
		t.Fatalf("end %+v", end)
	}
	if !<-seen {
		t.Error("dispatched and workspace_ready were not on record while before_run ran")
	}
}

// TestTrackerBlipAtTheStartIsRetried: a run dispatched with an outline
// reads its full issue from the tracker before anything else. A tracker
// that fails that read once is asked again, and the run goes on, instead
// of failing and costing the issue an attempt and a backoff although no
// agent ran.
func TestTrackerBlipAtTheStartIsRetried(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Agent.MaxTurns = 1 })
	h.mu.Lock()
	h.refreshFails = 1
	h.mu.Unlock()
	iss := testIssue()
	desc := strings.Repeat("A long description. ", 200)
	iss.Description = &desc
	outline := iss.Outline()
	if !outline.IsOutline {
		t.Fatal("the issue is small enough to go whole")
	}
	h.dispatchIssue("run-blip", outline)
	fin, _ := h.finished()
	if fin.Status != bus.RunSucceeded {
		t.Fatalf("run %s: %s", fin.Status, fin.Error)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refreshs < 2 {
		t.Errorf("the tracker was asked %d times, want the failed read and its retry", h.refreshs)
	}
}

// TestConcurrentDispatchesOfOneIssue: dispatches for one issue arriving
// at once (the handlers run concurrently) are decided one at a time by the
// runner's owner goroutine: exactly one is accepted, the others are
// refused as already running.
func TestConcurrentDispatchesOfOneIssue(t *testing.T) {
	h := newHarness(t, "hang", nil)
	h.dispatch("run-first") // the runner has its config
	_, _ = bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-first"})
	h.finished()
	// Once the first run has left, the issue is free again.
	waitFor(t, "the first run to leave", func() bool {
		res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-first"})
		return err == nil && !res.Found
	})
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := bus.Ask(t.Context(), h.b, bus.AgentDispatch, bus.Dispatch{RunID: "run-c" + strconv.Itoa(i), Issue: testIssue()})
			errs <- err
		}()
	}
	accepted := 0
	for range n {
		err := <-errs
		var re *bus.RemoteError
		switch {
		case err == nil:
			accepted++
		case !errors.As(err, &re) || re.Code != "already_running":
			t.Errorf("dispatch: %v, want accepted or already_running", err)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d of %d concurrent dispatches for one issue accepted, want 1", accepted, n)
	}
	live, err := bus.Ask(t.Context(), h.b, bus.AgentRuns, bus.ListRuns{})
	if err != nil || len(live.Runs) != 1 {
		t.Fatalf("live runs %+v (%v), want the one accepted", live.Runs, err)
	}
	if _, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: live.Runs[0].RunID}); err != nil {
		t.Fatal(err)
	}
	h.finished()
}
