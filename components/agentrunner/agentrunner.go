// Package agentrunner is the component that runs coding agents. It takes a
// dispatch, asks the workspace component for the issue's workspace, runs
// before_run, renders the prompt, runs the agent (the claude CLI in
// stream-json mode) with the workspace as its working directory, turns its
// output into turn events (durable, in the TURNS stream), continues on the
// same session with --resume while the issue stays active, up to
// agent.max_turns, runs after_run, and publishes the run's end.
package agentrunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/runlog"
)

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Environ is the parent environment of agent children (default
	// os.Environ); tracker secrets are always removed from it.
	Environ func() []string
}

// Component is the agent runner.
type Component struct {
	opts Options
	log  *slog.Logger
	cfg  atomic.Pointer[bus.ConfigSnapshot]

	mu   sync.Mutex
	runs map[string]*run
	// ending are runs whose agent is done and whose end is being
	// recorded: no longer cancelable or blocking a new dispatch, but a
	// cancel for one is answered "found" (it is ending anyway), and the
	// live-runs list includes them, so the scheduler (a restarted one too)
	// never records a second, "interrupted" end for one.
	ending map[string]bus.Dispatch
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("agentrunner: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompAgentRunner), runs: map[string]*run{}, ending: map[string]bus.Dispatch{}}, nil
}

// Name is "agentrunner".
func (c *Component) Name() string { return bus.CompAgentRunner }

// Run serves dispatch and cancel requests until ctx ends; then it cancels
// every run in flight and waits for them (after_run included).
func (c *Component) Run(ctx context.Context) error {
	// Everything below is owned by this context; an early error cancels it
	// before the deferred waits, so nothing waits on a server still live.
	ctx, cancel := context.WithCancel(ctx)
	var runs sync.WaitGroup
	var dones []<-chan struct{}
	defer func() {
		cancel()
		runs.Wait()
		for _, d := range dones {
			<-d
		}
	}()
	d1, err := bus.ServeN(ctx, c.opts.Bus, bus.AgentDispatch, 16, func(_ context.Context, _ string, d bus.Dispatch) (bus.DispatchAccepted, error) {
		return c.start(ctx, &runs, d)
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	dones = append(dones, d1)
	d2, err := bus.ServeN(ctx, c.opts.Bus, bus.AgentCancel, 16, func(_ context.Context, _ string, req bus.CancelRun) (bus.CancelResult, error) {
		return bus.CancelResult{Found: c.cancelRun(req)}, nil
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	dones = append(dones, d2)
	d3, err := bus.Serve(ctx, c.opts.Bus, bus.AgentRuns, func(context.Context, string, bus.ListRuns) (bus.LiveRuns, error) {
		return c.liveRuns(), nil
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	dones = append(dones, d3)
	configs, err := bus.Watch(ctx, c.opts.Bus, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	for e := range configs.C() {
		c.cfg.Store(&e.Value)
	}
	return components.Stopped(ctx, fmt.Errorf("config watch ended: %w", configs.Err()))
}

// liveRuns lists the runs in flight, those whose end is being recorded
// included: a scheduler that starts meanwhile adopts them and gets their
// end, instead of recording them as interrupted beside it. Their issues
// are outlines (what the scheduler keeps of a running issue), so the
// answer stays small however long the issues are.
func (c *Component) liveRuns() bus.LiveRuns {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := bus.LiveRuns{Runs: []bus.Dispatch{}}
	for _, r := range c.runs {
		d := r.d
		d.Issue = d.Issue.Outline()
		out.Runs = append(out.Runs, d)
	}
	for _, d := range c.ending {
		d.Issue = d.Issue.Outline()
		out.Runs = append(out.Runs, d)
	}
	return out
}

type codedErr struct {
	code string
	msg  string
}

func (e *codedErr) Error() string { return e.msg }
func (e *codedErr) Code() string  { return e.code }

// start accepts a dispatch and runs it in a goroutine owned by runs and ctx.
func (c *Component) start(ctx context.Context, runs *sync.WaitGroup, d bus.Dispatch) (bus.DispatchAccepted, error) {
	snap := c.cfg.Load()
	if snap == nil {
		return bus.DispatchAccepted{}, &codedErr{"no_config", errNoConfig.Error()}
	}
	if !safeid.Valid(d.RunID) {
		return bus.DispatchAccepted{}, &codedErr{"bad_request", "run id " + safeid.Quote(d.RunID) + " must match " + safeid.Rule}
	}
	if err := safeid.Check(d.Issue.Identifier); err != nil {
		return bus.DispatchAccepted{}, &codedErr{"unsafe_identifier", err.Error()}
	}
	c.mu.Lock()
	for _, r := range c.runs {
		if r.d.Issue.ID == d.Issue.ID {
			c.mu.Unlock()
			return bus.DispatchAccepted{}, &codedErr{"already_running", "issue " + d.Issue.Identifier + " already has run " + r.d.RunID}
		}
	}
	if _, dup := c.runs[d.RunID]; dup {
		c.mu.Unlock()
		return bus.DispatchAccepted{}, &codedErr{"duplicate_run", "run " + d.RunID + " exists"}
	}
	w := &run{r: c, d: d, snap: *snap, cancel: make(chan canceled, 1), out: runlog.NewWriter(c.opts.Bus, 0)}
	c.runs[d.RunID] = w
	c.mu.Unlock()
	runs.Go(func() {
		// However execute ends, the run leaves both sets.
		defer func() {
			c.mu.Lock()
			delete(c.runs, d.RunID)
			delete(c.ending, d.RunID)
			c.mu.Unlock()
		}()
		w.execute(ctx)
	})
	return bus.DispatchAccepted{RunID: d.RunID}, nil
}

// forget takes a run out of the live set while its end is recorded;
// ended drops it for good once the end is on record.
func (c *Component) forget(runID string) {
	c.mu.Lock()
	if w, ok := c.runs[runID]; ok {
		c.ending[runID] = w.d
		delete(c.runs, runID)
	}
	c.mu.Unlock()
}

func (c *Component) ended(runID string) {
	c.mu.Lock()
	delete(c.ending, runID)
	c.mu.Unlock()
}

func (c *Component) cancelRun(req bus.CancelRun) bool {
	c.mu.Lock()
	w, ok := c.runs[req.RunID]
	_, ending := c.ending[req.RunID]
	c.mu.Unlock()
	if ending {
		return true // its end is being recorded
	}
	if !ok {
		return false
	}
	status := req.Status
	if status == "" {
		status = bus.RunCanceled
	}
	select {
	case w.cancel <- canceled{status: status, reason: req.Reason}:
	default: // already being canceled
	}
	return true
}

// ErrCodexUnsupported is the error of a run dispatched while agent.kind is
// codex: this build has no codex runner.
const ErrCodexUnsupported = "agent.kind is codex, and this build has no codex runner yet: set agent.kind: claude (the issue is held until cleared or its state changes)"

// argv is the claude command line for a turn; session resumes it.
func (c *Component) argv(cfg bus.Config, session string) []string {
	bin := cfg.Claude.Command
	if v := strings.TrimSpace(getenv(c.opts.Environ(), "CLAUDE_CLI")); v != "" {
		bin = v
	}
	argv := []string{bin, "-p", "--output-format", "stream-json", "--verbose"}
	if cfg.Claude.Model != "" {
		argv = append(argv, "--model", cfg.Claude.Model)
	}
	if cfg.Claude.PermissionMode != "" {
		argv = append(argv, "--permission-mode", cfg.Claude.PermissionMode)
	}
	if len(cfg.Claude.AllowedTools) > 0 {
		argv = append(argv, "--allowedTools", strings.Join(cfg.Claude.AllowedTools, ","))
	}
	argv = append(argv, cfg.Claude.ExtraArgs...)
	if session != "" {
		argv = append(argv, "--resume", session)
	}
	return argv
}

// childEnv is the agent's environment: the parent's minus every tracker
// secret (LINEAR_API_KEY and the variable the config resolved).
func (c *Component) childEnv(cfg bus.Config) []string {
	drop := map[string]bool{"LINEAR_API_KEY": true, "SYMPHONY_RUN_ID": true, "SYMPHONY_ISSUE_ID": true, "SYMPHONY_ISSUE_IDENTIFIER": true}
	if v := cfg.Tracker.Provider.APIKey.Env(); v != "" {
		drop[v] = true
	}
	var env []string
	for _, kv := range c.opts.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] {
			env = append(env, kv)
		}
	}
	return env
}

func getenv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
