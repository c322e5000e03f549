package agentrunner

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/internal/secretenv"
)

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Environ is the parent environment of agent children (default
	// os.Environ); tracker secrets are always removed from it.
	Environ func() []string
	// MCPCommand starts Symphony's MCP server for a run (`symphony mcp`:
	// the binary's path and "mcp"). Empty: runs get no tracker tools. The
	// bus must be opened with ToolListener for runs to get them.
	MCPCommand []string
}

// Component is the agent runner. Its state (the configuration and the
// runs it has) belongs to the goroutine of Run (see owner); the request
// handlers and the runs reach it through messages.
type Component struct {
	opts Options
	log  *slog.Logger
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
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompAgentRunner)}, nil
}

// Name is "agentrunner".
func (c *Component) Name() string { return bus.CompAgentRunner }

// Run serves dispatch and cancel requests until ctx ends; then it cancels
// every run in flight and waits for them (after_run included).
func (c *Component) Run(ctx context.Context) error {
	// Everything below is owned by this context; an early error cancels it
	// before the deferred waits, so nothing waits on a server still live.
	ctx, cancel := context.WithCancel(ctx)
	o := newOwner(c, ctx)
	// The runner's responders and watch belong to its client; closing it
	// (last) waits for the handlers in flight.
	cl := c.opts.Bus.Client(bus.CompAgentRunner)
	defer func() {
		cancel()
		// The owner serves the runs until the last one has left.
		_ = o.loop(ctx, nil)
		o.runs.Wait()
		close(o.exited)
		cl.Close()
	}()
	if _, err := bus.ServeN(ctx, cl, bus.AgentDispatch, 16, func(_ context.Context, _ string, d bus.Dispatch) (bus.DispatchAccepted, error) {
		return o.dispatch(d)
	}); err != nil {
		return components.Stopped(ctx, err)
	}
	if _, err := bus.ServeN(ctx, cl, bus.AgentCancel, 16, func(_ context.Context, _ string, req bus.CancelRun) (bus.CancelResult, error) {
		found, err := o.cancel(req)
		return bus.CancelResult{Found: found}, err
	}); err != nil {
		return components.Stopped(ctx, err)
	}
	if _, err := bus.Serve(ctx, cl, bus.AgentRuns, func(context.Context, string, bus.ListRuns) (bus.LiveRuns, error) {
		return o.live()
	}); err != nil {
		return components.Stopped(ctx, err)
	}
	configs, err := bus.Watch(ctx, cl, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	return o.loop(ctx, configs.C())
}

var errNoConfig = errors.New("no workflow configuration loaded yet")

// childEnv is the agent's environment: the parent's minus every variable
// holding the tracker's credential (internal/secretenv: the configured
// variable, the tracker's well-known names, any copy of the key's value)
// and the run markers, which the run sets itself.
func (c *Component) childEnv(snap bus.ConfigSnapshot) []string {
	drop := map[string]bool{"LINEAR_API_KEY": true, markerEnv: true, "SYMPHONY_ISSUE_ID": true, "SYMPHONY_ISSUE_IDENTIFIER": true,
		// A run's credential reaches its MCP server through the MCP
		// config only, never through the agent's environment.
		bus.ToolEnvURL: true, bus.ToolEnvToken: true, bus.ToolEnvRun: true, bus.ToolEnvInbox: true}
	parent := c.opts.Environ()
	secret := secretenv.Drop(snap, parent)
	var env []string
	for _, kv := range parent {
		name, value, _ := strings.Cut(kv, "=")
		if !drop[name] && !secret(name, value) {
			env = append(env, kv)
		}
	}
	return env
}

// unsafeDispatch refuses a dispatch whose ids could reach a path, a
// subject or a command line unchecked.
func unsafeDispatch(d bus.Dispatch) error {
	if !safeid.Valid(d.RunID) {
		return bus.WithCode(bus.CodeBadRequest, errors.New("run id "+safeid.Quote(d.RunID)+" must match "+safeid.Rule))
	}
	if err := safeid.Check(d.Issue.Identifier); err != nil {
		return bus.WithCode(bus.CodeUnsafeIdentifier, errors.New(err.Error()))
	}
	return nil
}
