// Package workflow is the component that owns WORKFLOW.md. It watches the
// file (fsnotify on its directory, so editors that write a temporary file
// and rename it over the original are seen, plus a periodic re-check for
// events that never arrive), and publishes every valid version to KV
// symphony_config/current. An invalid edit never replaces the last good
// configuration: it is published as a symphony.workflow.error event, kept in
// symphony_config/status and logged, and the previous config stays in force;
// the operator hears of it through a workflow_rejected notification
// (symphony.notify.workflow_rejected, run by the notifier's notify.command),
// once per occurrence.
package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// Defaults for Options.
const (
	DefaultRecheck  = 2 * time.Second
	DefaultDebounce = 100 * time.Millisecond
)

// Options configures the component.
type Options struct {
	// Path is the WORKFLOW.md to watch.
	Path string
	Bus  *bus.Bus
	Log  *slog.Logger
	// Env is the environment config values are resolved against.
	Env workflowfile.Env
	// Recheck is the interval of the safety re-read (default 2s).
	Recheck time.Duration
	// Debounce waits for a burst of file events to settle (default 100ms).
	Debounce time.Duration
}

// Component watches and publishes the workflow configuration.
type Component struct {
	opts Options
	path string
	log  *slog.Logger
	// noWatch disables fsnotify (tests of the re-check).
	noWatch bool
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("workflow: a bus is required")
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("workflow: path: %w", err)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Env.LookupEnv == nil {
		opts.Env = workflowfile.OSEnv()
	}
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	return &Component{opts: opts, path: abs, log: opts.Log.With("component", bus.CompWorkflow, "path", abs)}, nil
}

// Name is "workflow".
func (c *Component) Name() string { return bus.CompWorkflow }

// state is what one Run remembers between loads.
type state struct {
	version  int64  // version of the config in KV
	checksum string // checksum of the file behind the config in KV
	// content identifies the config in KV by what components see (config,
	// template, path), not by the file's bytes: the same file can mean a
	// different config when the environment or the defaults changed.
	content string
	// statusSet is false until this Run has written the status once, so a
	// restart clears a stale error left by a previous process.
	statusSet bool
	// suspect is a failure seen once; it is reported only when the next
	// load (a debounce later) fails the same way, so an editor caught
	// between truncate and write does not raise a false alarm.
	suspect string
	// lastBad is the last reported failure, so a broken file is reported
	// once, not at every re-check.
	lastBad string
}

// contentKey hashes what a snapshot means to its readers.
func contentKey(s bus.ConfigSnapshot) string {
	raw, err := json.Marshal(struct {
		Config   bus.Config
		Template string
		Path     string
		Warnings []string
	}{s.Config, s.PromptTemplate, s.Path, s.Warnings})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Run loads the file, publishes it, and keeps watching until ctx ends.
func (c *Component) Run(ctx context.Context) error {
	var st state
	cur, err := bus.Get(ctx, c.opts.Bus, bus.ConfigCurrent)
	switch {
	case err == nil:
		st.version, st.checksum, st.content = cur.Value.Version, cur.Value.Checksum, contentKey(cur.Value)
	case !errors.Is(err, bus.ErrKeyNotFound):
		return fmt.Errorf("read current config: %w", err)
	}

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", c.path, err)
	}
	defer w.Close()
	if c.noWatch {
		c.log.Debug("file events disabled")
	} else if err := w.Add(filepath.Dir(c.path)); err != nil {
		// Without events the re-check still notices edits, only later.
		c.log.Warn("cannot watch the workflow directory; relying on the periodic re-check", "err", err)
	}

	if err := c.reload(ctx, &st); err != nil {
		return components.Stopped(ctx, err)
	}
	recheck := time.NewTicker(c.opts.Recheck)
	defer recheck.Stop()
	debounce := time.NewTimer(c.opts.Debounce)
	if st.suspect == "" {
		debounce.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if filepath.Clean(ev.Name) == c.path {
				debounce.Reset(c.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			c.log.Warn("file watcher error", "err", err)
		case <-debounce.C:
			if err := c.reload(ctx, &st); err != nil {
				return components.Stopped(ctx, err)
			}
		case <-recheck.C:
			if err := c.reload(ctx, &st); err != nil {
				return components.Stopped(ctx, err)
			}
		}
		if st.suspect != "" {
			// A failure seen once: look again shortly before reporting it.
			debounce.Reset(c.opts.Debounce)
		}
	}
}

// reload loads the file and publishes the outcome when it changed. It
// returns an error only when the bus fails.
func (c *Component) reload(ctx context.Context, st *state) error {
	res, err := workflowfile.Load(c.path, c.opts.Env)
	now := time.Now().UTC()
	if err != nil {
		var we *workflowfile.Error
		if !errors.As(err, &we) {
			we = &workflowfile.Error{Class: workflowfile.ClassParse, Path: c.path, Message: err.Error()}
		}
		key := we.Error()
		if key == st.lastBad {
			return nil
		}
		if key != st.suspect {
			st.suspect = key
			return nil
		}
		st.suspect = ""
		st.lastBad = key
		payload := we.Payload()
		payload.At = now
		c.log.Error("workflow rejected; the last good config stays in force",
			"class", payload.Class, "key", payload.Key, "line", payload.Line, "err", payload.Message, "version_in_force", st.version)
		if err := bus.Publish(c.opts.Bus, bus.WorkflowErrors, payload); err != nil {
			return fmt.Errorf("publish workflow error: %w", err)
		}
		if err := c.notifyRejected(ctx, st, we, now); err != nil {
			return err
		}
		st.statusSet = true
		if _, err := bus.Put(ctx, c.opts.Bus, bus.ConfigStatus, bus.WorkflowStatus{Valid: false, Version: st.version, Checksum: st.checksum, At: now, Error: &payload}); err != nil {
			return fmt.Errorf("store workflow status: %w", err)
		}
		return nil
	}
	wasBad := st.lastBad != ""
	st.lastBad, st.suspect = "", ""
	snap := res.Snapshot()
	if key := contentKey(snap); key == st.content {
		if wasBad || !st.statusSet {
			// Unchanged, but the status may say otherwise (reverted to the
			// version in force, or a previous process left an error).
			return c.putStatus(ctx, st, now)
		}
		return nil
	}
	snap.Version = st.version + 1
	snap.LoadedAt = now
	if _, err := bus.Put(ctx, c.opts.Bus, bus.ConfigCurrent, snap); err != nil {
		return fmt.Errorf("store config: %w", err)
	}
	st.version, st.checksum, st.content = snap.Version, snap.Checksum, contentKey(snap)
	for _, w := range res.Warnings {
		c.log.Warn("workflow warning", "warning", w)
	}
	c.log.Info("workflow loaded", "version", snap.Version, "checksum", snap.Checksum[:12])
	return c.putStatus(ctx, st, now)
}

func (c *Component) putStatus(ctx context.Context, st *state, now time.Time) error {
	st.statusSet = true
	if _, err := bus.Put(ctx, c.opts.Bus, bus.ConfigStatus, bus.WorkflowStatus{Valid: true, Version: st.version, Checksum: st.checksum, At: now}); err != nil {
		return fmt.Errorf("store workflow status: %w", err)
	}
	return nil
}

// notifyRejected tells the operator (notify.command) that an edit was
// rejected. The notification's id names the occurrence: the version in
// force and a digest of the rejected file with its error. The same bad
// file read again (the re-check, a restart) is the same occurrence and is
// delivered once; a new bad edit, or the same one after a good version
// came in between, is a new one.
func (c *Component) notifyRejected(ctx context.Context, st *state, we *workflowfile.Error, now time.Time) error {
	h := sha256.New()
	if f, err := os.Open(c.path); err == nil {
		// As much as the loader reads: a larger file is refused unread.
		_, _ = io.Copy(h, io.LimitReader(f, workflowfile.MaxSize+1))
		_ = f.Close()
	}
	h.Write([]byte{0})
	h.Write([]byte(we.Error()))
	id := fmt.Sprintf("%s/v%d/%s", bus.NotifyWorkflowRejected, st.version, hex.EncodeToString(h.Sum(nil))[:32])
	n := bus.Notification{ID: id, Event: bus.NotifyWorkflowRejected, At: now,
		Reason: fmt.Sprintf("WORKFLOW.md rejected, version %d stays in force: %s", st.version, we.Error())}
	if _, err := bus.PublishDurable(ctx, c.opts.Bus, bus.Notifications, n, id, string(bus.NotifyWorkflowRejected)); err != nil {
		return fmt.Errorf("publish the workflow_rejected notification: %w", err)
	}
	return nil
}
