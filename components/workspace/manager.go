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
	"github.com/symphony-oss/symphony/bus/safeid"
)

// ErrOutsideRoot is returned when a workspace path resolves outside the
// workspace root (a planted symlink, say).
var ErrOutsideRoot = errors.New("workspace path resolves outside the workspace root")

// ErrNotDirectory is returned when something other than a directory sits
// at a workspace path.
var ErrNotDirectory = errors.New("workspace path exists and is not a directory")

// Manager maps issues to directories under a root and keeps them there. It
// serializes work per identifier, so two requests for one workspace never
// interleave.
type Manager struct {
	locks sync.Map // identifier -> *sync.Mutex
	// removeAll stands in for os.RemoveAll in Remove (tests: a delete
	// cut short).
	removeAll func(path string) error
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
		return "", bus.WithCode(bus.CodeUnsafeIdentifier, err)
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
		return bus.WithCode(bus.CodeOutsideRoot, fmt.Errorf("%w: %s -> %s (root %s)", ErrOutsideRoot, path, realPath, realRoot))
	}
	return nil
}

// markerSuffix ends the name of the file that marks a workspace whose
// creation has not finished. The marker for <root>/<id> is
// <root>/.<id>.creating: beside the workspace, not in it (so after_create
// and the agent never see it), and never a workspace name itself, since
// '.' fails the identifier rule.
const markerSuffix = ".creating"

// markerPath returns the creation marker's path for identifier, which has
// passed the identifier rule.
func markerPath(root, identifier string) string {
	return filepath.Join(root, "."+identifier+markerSuffix)
}

// hasMarker reports whether a creation marker is present. Any kind of file
// counts, a symlink included (it is never followed).
func hasMarker(marker string) (bool, error) {
	_, err := os.Lstat(marker)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("inspect creation marker: %w", err)
	}
	return true, nil
}

// Why a marker is written: its text, for whoever finds one by hand.
const (
	creatingText = "symphony: this workspace's creation (after_create) has not finished; the next prepare recreates it\n"
	removingText = "symphony: this workspace's removal has not finished; the next prepare recreates it, the next removal finishes it\n"
)

// writeMarker records that the workspace is about to be created (or
// deleted), so that a crash before after_create finishes (or while the
// tree is half deleted) leaves evidence the next Prepare acts on. O_EXCL
// never follows a planted symlink; a marker already there (an earlier
// unfinished creation) serves as well.
func writeMarker(marker, text string) error {
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create workspace marker: %w", err)
	}
	// The marker's presence is the record (hasMarker reads nothing); its
	// text is for a person. A failed write (a full disk) must not stop a
	// removal, which is what frees the space.
	_, _ = f.WriteString(text)
	_ = f.Close()
	// Not synced to the disk: like the store without --sync-always, the
	// marker guards against a crash of the process (the page cache keeps
	// both entries), not of the machine; an fsync here would cost every
	// new workspace milliseconds on the way to the agent's start.
	return nil
}

// removeMarker deletes the creation marker (the link itself, if one was
// planted); a missing marker is fine.
func removeMarker(marker string) error {
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove creation marker: %w", err)
	}
	return nil
}

// existing inspects the workspace path. It reports false when nothing is
// there; anything there must be a real directory whose location is inside
// the root.
func existing(root, path string) (bool, error) {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
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
		return false, bus.WithCode(bus.CodeOutsideRoot, fmt.Errorf("%w: %s is a symbolic link", ErrOutsideRoot, path))
	}
	if !st.IsDir() {
		return false, bus.WithCode(bus.CodeNotADirectory, fmt.Errorf("%w: %s", ErrNotDirectory, path))
	}
	return true, contained(root, path)
}

// hookRunner runs a named hook script for an issue in a workspace.
type hookRunner func(ctx context.Context, name, script string, issue bus.Issue, dir string) (bus.HookResult, error)

// Prepare creates or reuses the issue's workspace. after_create runs only
// when the directory is new; if it fails the new directory is removed.
//
// A creation marker (see markerPath) exists from before the mkdir until
// after_create has succeeded. Finding one means an earlier creation was cut
// short (Symphony killed during a clone, say): the directory is discarded
// and created again, with after_create, instead of being reused half-made.
func (m *Manager) Prepare(ctx context.Context, cfg bus.Config, issue bus.Issue, run hookRunner) (bus.WorkspaceReady, error) {
	path, err := Path(cfg.Workspace.Root, issue.Identifier)
	if err != nil {
		return bus.WorkspaceReady{}, err
	}
	defer m.lock(issue.Identifier)()
	root := filepath.Dir(path)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return bus.WorkspaceReady{}, fmt.Errorf("create workspace root: %w", err)
	}
	marker := markerPath(root, issue.Identifier)
	unfinished, err := hasMarker(marker)
	if err != nil {
		return bus.WorkspaceReady{}, err
	}
	found, err := existing(root, path)
	if err != nil {
		// A symlink or a file at the path is refused whether or not a
		// creation was under way: it is never followed or removed here.
		return bus.WorkspaceReady{}, err
	}
	switch {
	case found && !unfinished:
		return bus.WorkspaceReady{Path: path}, nil
	case found:
		// No before_remove: this never was a finished workspace, and its
		// hook could act on a half-cloned tree. existing has checked it
		// is a real directory inside the root; RemoveAll does not follow
		// symlinks within it.
		if err := os.RemoveAll(path); err != nil {
			return bus.WorkspaceReady{}, fmt.Errorf("discard unfinished workspace %s: %w", path, err)
		}
	}
	if err := writeMarker(marker, creatingText); err != nil {
		return bus.WorkspaceReady{}, err
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		// Nothing was made; the marker would only make a later Prepare
		// discard a directory that is not ours.
		return bus.WorkspaceReady{}, errors.Join(fmt.Errorf("create workspace: %w", err), removeMarker(marker))
	}
	if err := contained(root, path); err != nil {
		return bus.WorkspaceReady{}, abandon(path, marker, err)
	}
	if strings.TrimSpace(cfg.Hooks.AfterCreate) != "" {
		if _, err := run(ctx, bus.HookAfterCreate, cfg.Hooks.AfterCreate, issue, path); err != nil {
			return bus.WorkspaceReady{}, abandon(path, marker, fmt.Errorf("after_create: %w", err))
		}
	}
	if err := removeMarker(marker); err != nil {
		// Left in place, the marker would make the next Prepare redo the
		// creation, which is safe; reporting it keeps this run out of a
		// workspace that is about to be discarded.
		return bus.WorkspaceReady{}, fmt.Errorf("finish workspace creation: %w", err)
	}
	return bus.WorkspaceReady{Path: path, CreatedNow: true}, nil
}

// abandon removes a workspace whose creation failed, then its marker. The
// marker stays if the directory could not be removed, so the next Prepare
// tries again rather than reusing what is left.
func abandon(path, marker string, cause error) error {
	if err := os.RemoveAll(path); err != nil {
		return errors.Join(cause, fmt.Errorf("remove half-made workspace: %w", err))
	}
	if err := removeMarker(marker); err != nil {
		return errors.Join(cause, err)
	}
	return cause
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
		return bus.HookResult{}, bus.WithCode(bus.CodeBadRequest, fmt.Errorf("hook %q cannot be run on request (before_run or after_run)", name))
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
		return bus.HookResult{}, bus.WithCode(bus.CodeNoWorkspace, fmt.Errorf("no workspace directory at %s", path))
	}
	if err := contained(filepath.Dir(path), path); err != nil {
		return bus.HookResult{}, err
	}
	return run(ctx, name, script, issue, path)
}

// Remove runs before_remove (failure logged by the runner, removal goes
// on) and deletes the workspace. A symlink at the path is removed itself,
// never followed, and no hook runs in its target. A workspace whose
// creation never finished (its marker is there) gets no before_remove
// either, for the reason Prepare gives; the marker goes after it.
//
// The marker is also written after before_remove and before the delete: a
// crash (or a failure) part way through the delete leaves a half-deleted
// tree, which the next Prepare must not reuse as a finished workspace (it
// recreates it) and the next Remove finishes without running before_remove
// again. A crash during before_remove leaves the workspace whole and
// unmarked: the start-up sweep removes it again, hook included.
func (m *Manager) Remove(ctx context.Context, cfg bus.Config, issue bus.Issue, run hookRunner) (bus.WorkspaceRemoved, error) {
	path, err := Path(cfg.Workspace.Root, issue.Identifier)
	if err != nil {
		return bus.WorkspaceRemoved{}, err
	}
	defer m.lock(issue.Identifier)()
	marker := markerPath(filepath.Dir(path), issue.Identifier)
	unfinished, err := hasMarker(marker)
	if err != nil {
		return bus.WorkspaceRemoved{}, err
	}
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return bus.WorkspaceRemoved{Path: path}, removeMarker(marker)
	}
	if err != nil {
		return bus.WorkspaceRemoved{}, fmt.Errorf("inspect workspace: %w", err)
	}
	if st.IsDir() && !unfinished && strings.TrimSpace(cfg.Hooks.BeforeRemove) != "" {
		_, _ = run(ctx, bus.HookBeforeRemove, cfg.Hooks.BeforeRemove, issue, path)
	}
	if st.IsDir() && !unfinished {
		if err := writeMarker(marker, removingText); err != nil {
			return bus.WorkspaceRemoved{}, err
		}
	}
	removeAll := m.removeAll
	if removeAll == nil {
		removeAll = os.RemoveAll
	}
	if err := removeAll(path); err != nil {
		return bus.WorkspaceRemoved{}, fmt.Errorf("remove workspace %s: %w", path, err)
	}
	// Only after the directory is gone: a marker without it is harmless,
	// a directory without its marker would be reused half-made.
	if err := removeMarker(marker); err != nil {
		return bus.WorkspaceRemoved{Path: path, Existed: true}, err
	}
	return bus.WorkspaceRemoved{Path: path, Existed: true}, nil
}
