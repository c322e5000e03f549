package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/safeid"
)

// ErrOutsideRoot is returned when a workspace path resolves outside the
// workspace root (a planted symlink, say).
var ErrOutsideRoot = errors.New("workspace path resolves outside the workspace root")

// ErrNotDirectory is returned when something other than a directory sits
// at a workspace path.
var ErrNotDirectory = errors.New("workspace path exists and is not a directory")

// codedError gives a bus error code to a failure.
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) Code() string  { return e.code }

// Manager maps issues to directories under a root and keeps them there. It
// serializes work per identifier, so two requests for one workspace never
// interleave.
type Manager struct {
	locks sync.Map // identifier -> *sync.Mutex
}

func (m *Manager) lock(id string) func() {
	mu, _ := m.locks.LoadOrStore(id, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// Path returns <root>/<identifier> after the identifier check, with root
// made absolute and cleaned. It does not touch the file system.
func Path(root, identifier string) (string, error) {
	if err := safeid.Check(identifier); err != nil {
		return "", &codedError{code: "unsafe_identifier", err: err}
	}
	if root == "" {
		return "", errors.New("workspace root is not configured")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("workspace root %q: %w", root, err)
	}
	return filepath.Join(filepath.Clean(abs), identifier), nil
}

// contained checks that path, with symlinks resolved, is a direct child of
// root with symlinks resolved.
func contained(root, path string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("resolve workspace root: %w", err)
	}
	realPath, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolve workspace: %w", err)
	}
	if filepath.Dir(realPath) != realRoot {
		return &codedError{code: "outside_root", err: fmt.Errorf("%w: %s -> %s (root %s)", ErrOutsideRoot, path, realPath, realRoot)}
	}
	return nil
}

// ensure creates the workspace directory if it is missing. created reports
// whether this call created it. An existing path must be a directory whose
// real location is inside the root.
func ensure(root, path string) (created bool, err error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return false, fmt.Errorf("create workspace root: %w", err)
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(path, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				return ensure(root, path)
			}
			return false, fmt.Errorf("create workspace: %w", err)
		}
		return true, contained(root, path)
	case err != nil:
		return false, fmt.Errorf("inspect workspace: %w", err)
	}
	if st.Mode()&os.ModeSymlink != 0 {
		// A link could point at another issue's workspace (inside the
		// root) or anywhere else: a workspace is a real directory or
		// nothing.
		if err := contained(root, path); err != nil {
			return false, err
		}
		return false, &codedError{code: "outside_root", err: fmt.Errorf("%w: %s is a symbolic link", ErrOutsideRoot, path)}
	}
	if !st.IsDir() {
		return false, &codedError{code: "not_a_directory", err: fmt.Errorf("%w: %s", ErrNotDirectory, path)}
	}
	return false, contained(root, path)
}

// hookRunner runs a named hook script for an issue in a workspace.
type hookRunner func(ctx context.Context, name, script string, issue bus.Issue, dir string) (bus.HookResult, error)

// Prepare creates or reuses the issue's workspace. after_create runs only
// when the directory is new; if it fails the new directory is removed.
func (m *Manager) Prepare(ctx context.Context, cfg bus.Config, issue bus.Issue, run hookRunner) (bus.WorkspaceReady, error) {
	path, err := Path(cfg.Workspace.Root, issue.Identifier)
	if err != nil {
		return bus.WorkspaceReady{}, err
	}
	defer m.lock(issue.Identifier)()
	root := filepath.Dir(path)
	created, err := ensure(root, path)
	if err != nil {
		if created {
			_ = os.RemoveAll(path)
		}
		return bus.WorkspaceReady{}, err
	}
	if created && strings.TrimSpace(cfg.Hooks.AfterCreate) != "" {
		if _, err := run(ctx, bus.HookAfterCreate, cfg.Hooks.AfterCreate, issue, path); err != nil {
			if rmErr := os.RemoveAll(path); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("remove half-made workspace: %w", rmErr))
			}
			return bus.WorkspaceReady{}, fmt.Errorf("after_create: %w", err)
		}
	}
	return bus.WorkspaceReady{Path: path, CreatedNow: created}, nil
}

// Hook runs before_run or after_run in the issue's existing workspace.
func (m *Manager) Hook(ctx context.Context, cfg bus.Config, name string, issue bus.Issue, run hookRunner) (bus.HookResult, error) {
	var script string
	switch name {
	case bus.HookBeforeRun:
		script = cfg.Hooks.BeforeRun
	case bus.HookAfterRun:
		script = cfg.Hooks.AfterRun
	default:
		return bus.HookResult{}, &codedError{code: "bad_request", err: fmt.Errorf("hook %q cannot be run on request (before_run or after_run)", name)}
	}
	path, err := Path(cfg.Workspace.Root, issue.Identifier)
	if err != nil {
		return bus.HookResult{}, err
	}
	defer m.lock(issue.Identifier)()
	if strings.TrimSpace(script) == "" {
		return bus.HookResult{Hook: name}, nil
	}
	st, err := os.Lstat(path)
	if err != nil || !st.IsDir() {
		return bus.HookResult{}, &codedError{code: "no_workspace", err: fmt.Errorf("no workspace directory at %s", path)}
	}
	if err := contained(filepath.Dir(path), path); err != nil {
		return bus.HookResult{}, err
	}
	return run(ctx, name, script, issue, path)
}

// Remove runs before_remove (failure logged by the runner, removal goes
// on) and deletes the workspace. A symlink at the path is removed itself,
// never followed, and no hook runs in its target.
func (m *Manager) Remove(ctx context.Context, cfg bus.Config, issue bus.Issue, run hookRunner) (bus.WorkspaceRemoved, error) {
	path, err := Path(cfg.Workspace.Root, issue.Identifier)
	if err != nil {
		return bus.WorkspaceRemoved{}, err
	}
	defer m.lock(issue.Identifier)()
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return bus.WorkspaceRemoved{Path: path}, nil
	}
	if err != nil {
		return bus.WorkspaceRemoved{}, fmt.Errorf("inspect workspace: %w", err)
	}
	if st.IsDir() && strings.TrimSpace(cfg.Hooks.BeforeRemove) != "" {
		_, _ = run(ctx, bus.HookBeforeRemove, cfg.Hooks.BeforeRemove, issue, path)
	}
	if err := os.RemoveAll(path); err != nil {
		return bus.WorkspaceRemoved{}, fmt.Errorf("remove workspace %s: %w", path, err)
	}
	return bus.WorkspaceRemoved{Path: path, Existed: true}, nil
}
