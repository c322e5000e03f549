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
