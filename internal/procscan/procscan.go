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
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}
	return marked(pids, key, value), nil
}

// Kill sends SIGKILL to every process marked key=value and returns how many
// it signalled.
func Kill(key, value string) (int, error) {
	pids, err := Find(key, value)
	if err != nil {
		return 0, err
	}
	return killAll(pids)
}

// listPIDs lists the processes in /proc, this one excepted.
func listPIDs() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	pids := make([]int, 0, len(names))
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil && pid != self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// marked returns those of pids whose environment holds key=value. The
// environments are read with one reused buffer and matched in place: a
// search runs at the end of every agent turn, and allocating per process
// was most of its cost.
func marked(pids []int, key, value string) []int {
	want := []byte(key + "=" + value)
	buf := make([]byte, 16<<10)
	var out []int
	for _, pid := range pids {
		var env []byte
		var err error
		if env, buf, err = readEnviron(pid, buf); err == nil && hasEntry(env, want) {
			out = append(out, pid)
		}
	}
	return out
}

// readEnviron reads /proc/<pid>/environ into buf (grown when too small)
// and returns the content and the buffer to reuse.
func readEnviron(pid int, buf []byte) (env, next []byte, err error) {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/environ", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, buf, err
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, buf, err
		}
		if m == 0 {
			return buf[:n], buf, nil
		}
		n += m
	}
}

// hasEntry reports whether env (NUL-separated entries, as in
// /proc/<pid>/environ) holds entry exactly.
func hasEntry(env, entry []byte) bool {
	for len(env) > 0 {
		e := env
		if i := bytes.IndexByte(env, 0); i >= 0 {
			e, env = env[:i], env[i+1:]
		} else {
			env = nil
		}
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}

func killAll(pids []int) (int, error) {
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
	return killAll(pids)
}

// Window is a point in the kernel's pid allocation, taken before a process
// is started, so that a later search for what that process left behind
// reads only the processes created since instead of every process on the
// machine.
//
// Linux hands out pids in increasing order, wrapping at pid_max: every
// process (or thread) created after the window was opened has a pid in the
// cyclic range from the cursor at Open to the cursor now, unless the
// cursor went round the whole pid space meanwhile. The count of forks
// since boot (/proc/stat "processes", which counts threads too) tells
// when it might have: then, and whenever something cannot be read (no
// /proc of this pid namespace, say), the search falls back to reading
// every process. A marker env var plus this range finds an escaped daemon
// exactly as a full scan would, at a fraction of its cost: a full scan
// per agent turn was 11 % of Symphony's CPU with 50 agents.
type Window struct {
	cursor int    // the last pid handed out when the window opened
	forks  uint64 // forks since boot then
	pidMax int
	ok     bool
}

// wrapMargin is the share of the pid space that may be handed out after
// Open before a Window stops trusting its range: half, so that pids
// allocated by forks that failed (and so are not counted in the fork
// count) would have to number as many again as every successful fork to
// wrap the cursor unnoticed.
const wrapMargin = 2

// reservedPIDs is the kernel's RESERVED_PIDS: after a wrap the cursor
// restarts above it.
const reservedPIDs = 300

// Open opens a window now. Call it before starting the process whose
// descendants will be searched for.
func Open() Window {
	var w Window
	self, err := os.Readlink("/proc/self")
	if err != nil || self != strconv.Itoa(os.Getpid()) {
		// /proc is not this process's pid namespace: pids mean nothing.
		return w
	}
	cursor, err1 := lastPID()
	forks, err2 := forkCount()
	pidMax, err3 := readInt("/proc/sys/kernel/pid_max")
	if errors.Join(err1, err2, err3) != nil || pidMax <= 2*reservedPIDs {
		return w
	}
	return Window{cursor: cursor, forks: forks, pidMax: pidMax, ok: true}
}

// Find returns the pids of live processes marked key=value among those
// created since the window opened (among all of them when the window
// cannot be trusted).
func (w Window) Find(key, value string) ([]int, error) {
	if !w.ok {
		return Find(key, value)
	}
	// The processes are listed first and the cursor read after, so every
	// listed process created since Open is inside the range read.
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}
	cursor, err1 := lastPID()
	forks, err2 := forkCount()
	if errors.Join(err1, err2) != nil || forks < w.forks || forks-w.forks >= uint64((w.pidMax-reservedPIDs)/wrapMargin) {
		return marked(pids, key, value), nil
	}
	since := pids[:0]
	for _, pid := range pids {
		if handedOut(pid, w.cursor, cursor) {
			since = append(since, pid)
		}
	}
	return marked(since, key, value), nil
}

// handedOut reports whether pid lies in the cyclic range (from, to]: the
// pids handed out while the cursor moved from from to to, wrapping at
// pid_max when to is below from.
func handedOut(pid, from, to int) bool {
	if to >= from {
		return pid > from && pid <= to
	}
	return pid > from || pid <= to
}

// Kill sends SIGKILL to every process Find returns and reports how many it
// signalled.
func (w Window) Kill(key, value string) (int, error) {
	pids, err := w.Find(key, value)
	if err != nil {
		return 0, err
	}
	return killAll(pids)
}

// lastPID is the last pid handed out in this pid namespace.
func lastPID() (int, error) {
	if n, err := readInt("/proc/sys/kernel/ns_last_pid"); err == nil {
		return n, nil
	}
	// /proc/loadavg ends with the same figure: "0.00 0.01 0.05 1/85 5511".
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(raw)
	if len(f) < 5 {
		return 0, errors.New("procscan: malformed /proc/loadavg")
	}
	return strconv.Atoi(string(f[4]))
}

// forkCount is the number of forks since boot (/proc/stat "processes").
func forkCount() (uint64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range bytes.SplitSeq(raw, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("processes ")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return 0, errors.New("procscan: no fork count in /proc/stat")
}

func readInt(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(bytes.TrimSpace(raw)))
}
