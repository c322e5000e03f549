//go:build unix

package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFileName is the file in the data directory that the owning process
// holds an exclusive flock on and writes its pid into.
const LockFileName = "lock"

// DataDirInUseError is returned when another process holds the data directory.
type DataDirInUseError struct {
	Dir string
	// PID is the holder's process id, 0 when it could not be read.
	PID int
}

func (e *DataDirInUseError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s (a symphony already runs on it; stop it or pass another --data-dir)", e.Dir, holder)
}

// dirLock is an exclusive, process-scoped lock on a data directory. The
// kernel releases it when the process exits, even on kill -9, because it is
// an flock on an open file.
type dirLock struct{ f *os.File }

func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for waited := time.Duration(0); ; waited += lockRetry {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The lock is held. If the process that took it is gone (killed),
		// the holder is a child it was starting: between fork and exec a
		// child shares the lock's open file, until its exec closes it or it
		// dies with its parent. A restart right after a crash waits for
		// that instead of failing.
		pid := readPID(f)
		if pid <= 0 || alive(pid) || waited >= lockWaitForOrphans {
			f.Close()
			return nil, &DataDirInUseError{Dir: dir, PID: pid}
		}
		time.Sleep(lockRetry)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock file: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write lock file: %w", err)
	}
	return &dirLock{f: f}, nil
}

// lockWaitForOrphans bounds the wait for children of a dead holder to let
// go of the lock; lockRetry is how often it is tried meanwhile.
const (
	lockWaitForOrphans = 2 * time.Second
	lockRetry          = 20 * time.Millisecond
)

// alive reports whether a process with this pid exists (a pid reused by
// another process counts: the lock is then refused as before).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// release drops the lock. The pid stays in the file; it only means something
// while the flock is held.
func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
