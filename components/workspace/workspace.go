// Package workspace is the component that owns per-issue workspace
// directories: <workspace.root>/<identifier>, created on first use, reused
// afterwards, removed when the issue is done. It runs the four hooks
// (after_create, before_run, after_run, before_remove) with bash -lc in the
// workspace, in their own process group, killed as a group at
// hooks.timeout_ms. Issue data reaches hooks only through the fixed
// environment variables ISSUE_ID, ISSUE_IDENTIFIER, ISSUE_TITLE,
// ISSUE_STATE, ISSUE_URL, ISSUE_LABELS (bounded, cut with a marker) and
// SYMPHONY_WORKSPACE, and through SYMPHONY_ISSUE_JSON, a file holding the
// whole issue for the hook's lifetime; the tracker secret's variable is
// removed unless hooks.inherit_secrets is true.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
)

// Concurrency is how many workspace requests are handled at once.
const Concurrency = 16

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Environ is the parent environment hooks inherit (default os.Environ).
	Environ func() []string
	// Roots holds the workspace roots for the process (default: the
	// component's own). The command takes the configured root before it
	// starts anything, to fail fast while another instance holds it, and
	// hands the same locks here; the component takes a root a reload
	// names before it touches it.
	Roots *RootLocks
}

// Component is the workspace component.
type Component struct {
	opts Options
	log  *slog.Logger
	mgr  Manager
	cfg  atomic.Pointer[bus.ConfigSnapshot]
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("workspace: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ
	}
	if opts.Roots == nil {
		opts.Roots = &RootLocks{}
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompWorkspace)}, nil
}

// Name is "workspace".
func (c *Component) Name() string { return bus.CompWorkspace }

// Run serves workspace requests until ctx ends.
func (c *Component) Run(ctx context.Context) error {
	// Everything this Run serves ends, and its handlers have returned,
	// once the client is closed.
	cl := c.opts.Bus.Client(bus.CompWorkspace)
	defer cl.Close()
	_, err := bus.ServeN(ctx, cl, bus.WorkspacePrepare, Concurrency, func(ctx context.Context, _ string, req bus.PrepareWorkspace) (bus.WorkspaceReady, error) {
		snap, err := c.config()
		if err != nil {
			return bus.WorkspaceReady{}, err
		}
		res, err := c.mgr.Prepare(ctx, snap.Config, req.Issue, c.runner(snap, req.RunID, ""))
		c.logResult("prepare", req.Issue, err, "path", res.Path, "created_now", res.CreatedNow)
		return res, err
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	_, err = bus.ServeN(ctx, cl, bus.WorkspaceHook, Concurrency, func(ctx context.Context, _ string, req bus.RunHook) (bus.HookResult, error) {
		snap, err := c.config()
		if err != nil {
			return bus.HookResult{}, err
		}
		return c.mgr.Hook(ctx, snap.Config, req.Hook, req.Issue, c.runner(snap, req.RunID, req.SessionID))
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	_, err = bus.ServeN(ctx, cl, bus.WorkspaceRemove, Concurrency, func(ctx context.Context, _ string, req bus.RemoveWorkspace) (bus.WorkspaceRemoved, error) {
		snap, err := c.config()
		if err != nil {
			return bus.WorkspaceRemoved{}, err
		}
		res, err := c.mgr.Remove(ctx, snap.Config, req.Issue, c.runner(snap, req.RunID, ""))
		c.logResult("remove", req.Issue, err, "path", res.Path, "existed", res.Existed)
		return res, err
	})
	if err != nil {
		return components.Stopped(ctx, err)
	}
	configs, err := bus.Watch(ctx, cl, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	for e := range configs.C() {
		c.cfg.Store(&e.Value)
		// A reload's root is taken at once, so a clash shows in the log
		// before the first request for it.
		if err := c.holdRoot(e.Value.Config); err != nil {
			c.log.Error("workspace root unavailable; requests for it are refused", "root", e.Value.Config.Workspace.Root, "err", err)
		}
	}
	return components.Stopped(ctx, fmt.Errorf("config watch ended: %w", configs.Err()))
}

// config is the configuration in force for a request, its workspace root
// held for this process (see RootLocks).
func (c *Component) config() (bus.ConfigSnapshot, error) {
	snap := c.cfg.Load()
	if snap == nil {
		return bus.ConfigSnapshot{}, bus.WithCode(bus.CodeNoConfig, errors.New("no workflow configuration loaded yet"))
	}
	if err := c.holdRoot(snap.Config); err != nil {
		return bus.ConfigSnapshot{}, err
	}
	return *snap, nil
}

func (c *Component) logResult(op string, issue bus.Issue, err error, attrs ...any) {
	attrs = append([]any{"issue_id", issue.ID, "issue_identifier", issue.Identifier}, attrs...)
	if err != nil {
		c.log.Warn("workspace "+op+" failed", append(attrs, "err", err)...)
		return
	}
	c.log.Info("workspace "+op, attrs...)
}

// runner returns the hook runner for one request: it reads the timeout and
// the secret's variable from cfg (live config), publishes start and end
// events and logs the outcome. Its log lines carry the run and, once the
// agent has one, the session (SPEC §13.1).
func (c *Component) runner(snap bus.ConfigSnapshot, runID, sessionID string) hookRunner {
	cfg := snap.Config
	return func(ctx context.Context, name, script string, issue bus.Issue, dir string) (bus.HookResult, error) {
		ref := bus.IssueRef{ID: issue.ID, Identifier: issue.Identifier, Title: issue.Title, URL: deref(issue.URL), State: issue.State}
		log := c.log.With("issue_id", issue.ID, "issue_identifier", issue.Identifier, "hook", name, "workspace", dir)
		if runID != "" {
			log = log.With("run_id", runID)
		}
		if sessionID != "" {
			log = log.With("session_id", sessionID)
		}
		c.publish(name, bus.HookEvent{Hook: name, Phase: bus.HookStarted, Issue: ref, RunID: runID, Workspace: dir, At: time.Now().UTC()})
		log.Info("hook started")
		parent := c.opts.Environ()
		out, dur, err := runHook(ctx, name, script, dir, parent, secretDrop(snap, parent), issue, cfg.Hooks.Timeout())
		ev := bus.HookEvent{Hook: name, Phase: bus.HookFinished, Issue: ref, RunID: runID, Workspace: dir, At: time.Now().UTC(),
			DurationMS: dur.Milliseconds(), Output: truncate(out, LogHookOutput)}
		var he *HookError
		if errors.As(err, &he) {
			ev.Phase, ev.ExitCode, ev.Error = bus.HookFailed, he.ExitCode, err.Error()
			if he.TimedOut {
				ev.Phase = bus.HookTimedOut
			}
			log.Warn("hook "+string(ev.Phase), "err", err, "duration", dur, "output", ev.Output)
		} else {
			log.Info("hook finished", "duration", dur)
		}
		c.publish(name, ev)
		if err != nil {
			return bus.HookResult{}, err
		}
		return bus.HookResult{Hook: name, Ran: true, DurationMS: dur.Milliseconds(), Output: truncate(out, LogHookOutput)}, nil
	}
}

func (c *Component) publish(hook string, ev bus.HookEvent) {
	run := ev.RunID
	if run == "" {
		run = bus.NoRun
	}
	if _, err := bus.PublishDurable(context.Background(), c.opts.Bus, bus.WorkspaceHookEvents, ev, "", run, hook); err != nil {
		c.log.Warn("publish hook event", "err", err, "issue_id", ev.Issue.ID, "issue_identifier", ev.Issue.Identifier)
	}
}
