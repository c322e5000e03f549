// Package procscan finds and kills processes by an environment marker.
// Symphony marks every agent process with SYMPHONY_RUN_ID; the marker is
// inherited by everything the agent starts, so after a crash the processes
// of a run can be found and stopped even when they left their process group
// or outlived their parent. Linux only (it reads /proc).
package procscan

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Find returns the pids of live processes whose environment contains
// exactly key=value. Processes it may not read are skipped.
func Find(key, value string) ([]int, error) {
	want := []byte(key + "=" + value)
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process marked key=value and returns how many
// it signalled.
func Kill(key, value string) (int, error) {
	pids, err := Find(key, value)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		} else if !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Holding returns the pids of live processes, other than this one, with a
// descriptor open on the same pipe (or other inode) as f. It finds what
// keeps a child's output pipe open after the child died, even a process
// that left the child's process group and dropped its environment marker.
// Processes it may not read are skipped.
func Holding(f *os.File) ([]int, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("procscan: no inode for " + f.Name())
	}
	ino := strconv.FormatUint(sys.Ino, 10)
	want := map[string]bool{"pipe:[" + ino + "]": true, "socket:[" + ino + "]": true}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join("/proc", d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && want[target] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// KillHolding sends SIGKILL to every process Holding finds and returns how
// many it signalled.
func KillHolding(f *os.File) (int, error) {
	pids, err := Holding(f)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		} else if !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}
