package procscan

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFindAndKillByMarker(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 600 & sleep 600")
	cmd.Env = append(os.Environ(), "SYMPHONY_RUN_ID=procscan-test-run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // killed below on the happy path
	deadline := time.Now().Add(30 * time.Second)
	var pids []int
	for len(pids) < 3 {
		var err error
		if pids, err = Find("SYMPHONY_RUN_ID", "procscan-test-run"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("found %v, want the shell and both sleeps", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if other, _ := Find("SYMPHONY_RUN_ID", "procscan-test"); len(other) != 0 {
		t.Errorf("a prefix matched: %v", other)
	}
	n, err := Kill("SYMPHONY_RUN_ID", "procscan-test-run")
	if err != nil || n < 3 {
		t.Fatalf("killed %d: %v", n, err)
	}
	_ = cmd.Wait()
	for {
		left, _ := Find("SYMPHONY_RUN_ID", "procscan-test-run")
		alive := 0
		for _, pid := range left {
			if st, err := os.ReadFile("/proc/" + itoa(pid) + "/stat"); err == nil && !zombie(st) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still alive: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func zombie(stat []byte) bool {
	f := strings.Fields(string(stat))
	return len(f) > 2 && f[2] == "Z"
}

// TestHoldingFindsThePipeHolder: a process that holds the write end of a
// pipe is found through the read end, even with an empty environment and
// in its own session; a process without it is not.
func TestHoldingFindsThePipeHolder(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	holder := exec.Command("sleep", "600")
	holder.Env = []string{}
	holder.Stdout = w
	holder.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	other := exec.Command("sleep", "600")
	for _, c := range []*exec.Cmd{holder, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill() //nolint:errcheck // best effort on failure paths
	}
	w.Close()
	pids, err := Holding(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != holder.Process.Pid {
		t.Fatalf("holders %v, want [%d] (not %d)", pids, holder.Process.Pid, other.Process.Pid)
	}
	if n, err := KillHolding(r); err != nil || n != 1 {
		t.Fatalf("killed %d: %v", n, err)
	}
	// The holder is dead once the pipe reports EOF.
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from a pipe nobody wrote")
	}
	_ = holder.Wait()
}

// TestWindowFindsWhatStartedSince: a window finds a marked process started
// after it opened, in its own session and with the marker buried in its
// environment, and skips an older process carrying the same marker (which
// a full scan still finds).
func TestWindowFindsWhatStartedSince(t *testing.T) {
	const key, value = "SYMPHONY_RUN_ID", "procscan-window-run"
	start := func(setsid bool) *exec.Cmd {
		cmd := exec.Command("sleep", "600")
		cmd.Env = append([]string{"A=1", key + "=" + value}, os.Environ()...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	older := start(false)
	w := Open()
	if !w.ok {
		t.Fatal("no window on Linux with /proc")
	}
	newer := start(true)
	got, err := w.Find(key, value)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != newer.Process.Pid {
		t.Errorf("window found %v, want just the newer process %d (the older is %d)", got, newer.Process.Pid, older.Process.Pid)
	}
	all, err := Find(key, value)
	if err != nil || len(all) != 2 {
		t.Errorf("full scan found %v (%v), want both", all, err)
	}
	// A window that cannot be trusted searches everything.
	if got, err := (Window{}).Find(key, value); err != nil || len(got) != 2 {
		t.Errorf("untrusted window found %v (%v), want both", got, err)
	}
	if n, err := w.Kill(key, value); err != nil || n != 1 {
		t.Errorf("window killed %d (%v), want 1", n, err)
	}
	if err := newer.Wait(); err == nil {
		t.Error("the newer process exited cleanly; want it killed")
	}
	if err := syscall.Kill(older.Process.Pid, 0); err != nil {
		t.Errorf("the older process is gone (%v); the window must not touch it", err)
	}
}

func TestHandedOut(t *testing.T) {
	cases := []struct {
		pid, from, to int
		want          bool
	}{
		{101, 100, 200, true}, {200, 100, 200, true}, {100, 100, 200, false}, {201, 100, 200, false}, {50, 100, 200, false},
		// Wrapped at pid_max: from 32000 to 400.
		{32001, 32000, 400, true}, {301, 32000, 400, true}, {400, 32000, 400, true}, {401, 32000, 400, false}, {32000, 32000, 400, false},
		// Nothing handed out.
		{100, 100, 100, false}, {101, 100, 100, false},
	}
	for _, c := range cases {
		if got := handedOut(c.pid, c.from, c.to); got != c.want {
			t.Errorf("handedOut(%d, %d, %d) = %v", c.pid, c.from, c.to, got)
		}
	}
}

func TestHasEntry(t *testing.T) {
	env := []byte("A=1\x00SYMPHONY_RUN_ID=run-12\x00B=2\x00X=SYMPHONY_RUN_ID=run-1\x00LAST=run-1")
	for entry, want := range map[string]bool{
		"SYMPHONY_RUN_ID=run-12": true, "SYMPHONY_RUN_ID=run-1": false, "A=1": true, "LAST=run-1": true,
		"LAST=run": false, "B=": false, "=2": false, "": false,
	} {
		if got := hasEntry(env, []byte(entry)); got != want {
			t.Errorf("hasEntry(%q) = %v", entry, got)
		}
	}
}
