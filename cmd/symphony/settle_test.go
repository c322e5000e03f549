package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitUntilFilesSay waits until every file contains marker (an after_run
// hook moved each issue on), failing with p's output after timeout.
func waitUntilFilesSay(t *testing.T, p *proc, files []string, marker string, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := 0
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil || !strings.Contains(string(raw), marker) {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d issues never reached %q\n%s", what, left, marker, p.all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settleAndStop gives the scheduler a second of polls (the last runs' ends
// are recorded meanwhile), then stops p with SIGTERM and requires exit 0.
func settleAndStop(t *testing.T, p *proc, what string) {
	t.Helper()
	time.Sleep(time.Second)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("%s: exit %d\n%s", what, code, p.all)
	}
}
