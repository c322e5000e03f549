package procscan

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
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
