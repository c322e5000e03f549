package workspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/symphony-oss/symphony/bus"
)

// RootLockName is the file in a workspace root that the process using the
// root holds an exclusive flock on and writes its pid into. Its leading
// '.' keeps it from ever being a workspace (the identifier rule refuses
// it).
const RootLockName = ".symphony-root.lock"

// RootInUseError is a workspace root another process holds. Two
// instances on one root (the default $TMPDIR/symphony_workspaces is
// shared) would remove and read each other's workspaces whenever their
// identifiers coincide (GitHub's a.b and a_b repositories, forks, two
// Linear teams with one key).
type RootInUseError struct {
	Root string
	// PID is the holder's process id, 0 when it could not be read.
	PID int
}

func (e *RootInUseError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("workspace root %s is in use by %s (another symphony works in it; stop it or give this workflow its own workspace.root)", e.Root, holder)
}

// RootLocks holds the workspace roots this process works in, each for the
// rest of its life: the kernel drops an flock when the process exits,
// even on kill -9. A root, once held, stays held after a reload moves to
// another (its workspaces may still be removed). Safe for concurrent use;
// the zero value is ready.
type RootLocks struct {
	mu   sync.Mutex
	held map[string]*os.File
}

// Hold takes root (created if missing) for this process, or returns a
// *RootInUseError when another process holds it. Holding a root again is
// free.
func (l *RootLocks) Hold(root string) error {
	if root == "" {
		return errors.New("workspace root is not configured")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("workspace root %q: %w", root, err)
	}
	abs = filepath.Clean(abs)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[abs]; ok {
		return nil
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("create workspace root: %w", err)
	}
	path := filepath.Join(abs, RootLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open the workspace root's lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := readLockPID(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &RootInUseError{Root: abs, PID: pid}
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("write the workspace root's lock file: %w", err)
	}
	if l.held == nil {
		l.held = map[string]*os.File{}
	}
	l.held[abs] = f
	return nil
}

// Release lets go of every root (tests; a process just exits).
func (l *RootLocks) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for root, f := range l.held {
		errs = append(errs, f.Close())
		delete(l.held, root)
	}
	return errors.Join(errs...)
}

func readLockPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// holdRoot takes the root of cfg for a request, refusing it, with a code
// the scheduler shows, while another process holds the root.
func (c *Component) holdRoot(cfg bus.Config) error {
	err := c.opts.Roots.Hold(cfg.Workspace.Root)
	var inUse *RootInUseError
	if errors.As(err, &inUse) {
		return bus.WithCode(bus.CodeRootInUse, err)
	}
	return err
}
