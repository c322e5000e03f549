package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunNotifiesRejectedReloadOnce: with the real binary, a rejected
// WORKFLOW.md reload runs notify.command once (not again at the re-checks
// while the bad file stays), a second bad edit once more, and after a
// restart the first bad edit again — the same occurrence, as the good
// version in force is the same — is not delivered again, while a third
// bad edit is.
func TestRunNotifiesRejectedReloadOnce(t *testing.T) {
	dir := t.TempDir()
	wf := filepath.Join(dir, "WORKFLOW.md")
	// A relative command runs beside WORKFLOW.md; each run appends a line.
	good := "---\ntracker:\n  kind: files\n  provider: {path: issues}\nnotify:\n  command: ./notify.sh\n  timeout_ms: 30000\n---\nWork on {{ issue.identifier }}.\n"
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(wf, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	if err := os.WriteFile(filepath.Join(dir, "notify.sh"), []byte("#!/bin/bash\necho \"$SYMPHONY_EVENT $SYMPHONY_EVENT_ID $(wc -c)\" >> notified.txt\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lines := func() []string {
		raw, err := os.ReadFile(filepath.Join(dir, "notified.txt"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Fields(strings.TrimSpace(strings.ReplaceAll(string(raw), "\n", " |\n")))
	}
	count := func() int { return strings.Count(strings.Join(lines(), " "), "workflow_rejected ") }
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(testTimeout)
		for count() < want {
			if time.Now().After(deadline) {
				t.Fatalf("notify.command ran %d times, want %d: %q", count(), want, lines())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	bad1 := strings.Replace(good, "notify:", "agent:\n  max_turns: -3\nnotify:", 1)
	bad2 := strings.Replace(good, "notify:", "agent:\n  max_turns: -4\nnotify:", 1)

	p := start(t, "run", wf)
	p.waitForEach(t, "symphony running", "workflow loaded")
	write(bad1)
	p.waitFor(t, "notification delivered")
	waitCount(1)
	// The re-check (every 2 s) reads the bad file again: nothing new (the
	// count at the end says so).
	time.Sleep(5 * time.Second)
	write(bad2)
	p.waitFor(t, "notification delivered")
	waitCount(2)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.all)
	}

	write(good)
	p = start(t, "run", wf)
	p.waitFor(t, "symphony running")
	write(bad1)
	p.waitFor(t, "workflow rejected")
	// A new bad edit is delivered; notifications are handled in order, so
	// once it is, the first edit's second rejection was handled before it
	// (dropped by the stream's duplicate window here, by the notifier's
	// record of handled ids after a longer pause: the component tests).
	bad3 := strings.Replace(good, "notify:", "agent:\n  max_turns: -5\nnotify:", 1)
	write(bad3)
	waitCount(3)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.all)
	}
	if n := count(); n != 3 {
		t.Errorf("notify.command ran %d times, want 3: %q", n, lines())
	}
	if got := strings.Join(lines(), " "); !strings.Contains(got, "workflow_rejected/v1/") {
		t.Errorf("the command did not get the event's id: %q", got)
	}
}
