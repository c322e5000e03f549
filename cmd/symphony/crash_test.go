package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// fakeAgentEnv makes the test binary act as a slow agent (see TestMain).
const fakeAgentEnv = "SYMPHONY_TEST_FAKE_AGENT"

// fakeAgent is a slow agent: it starts a background child (which inherits
// the run marker and outlives it), prints its init line and waits. The
// issue CRASH-5 fails at once instead, to leave a retry queued.
func fakeAgent() int {
	switch os.Getenv(fakeAgentEnv) {
	case "chatty":
		return chattyAgent()
	case "contract":
		return contractAgent()
	}
	if os.Getenv("SYMPHONY_ISSUE_IDENTIFIER") == "CRASH-5" {
		fmt.Fprintln(os.Stderr, "failing on purpose")
		return 1
	}
	bg := exec.Command("sleep", "600")
	_ = bg.Start()
	fmt.Printf(`{"type":"system","subtype":"init","session_id":"s-%d","cwd":"x","model":"fake"}`+"\n", os.Getpid())
	time.Sleep(10 * time.Minute)
	return 0
}

// liveRuns maps issue identifier to the distinct run ids of its live
// (non-zombie) processes.
func liveRuns(t *testing.T, issues []string) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for _, id := range issues {
		pids, err := procscan.Find("SYMPHONY_ISSUE_IDENTIFIER", id)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || strings.Fields(string(stat))[2] == "Z" {
				continue
			}
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			for _, kv := range strings.Split(string(env), "\x00") {
				if run, ok := strings.CutPrefix(kv, "SYMPHONY_RUN_ID="); ok {
					if out[id] == nil {
						out[id] = map[string]bool{}
					}
					out[id][run] = true
				}
			}
		}
	}
	return out
}

// TestCrashAndRestart kills a real `symphony run` with kill -9 while five
// agents run, starts it again on the same data dir, and checks that every
// in-flight run is recorded as interrupted, every issue is dispatched again
// exactly once, no issue ever has processes of two runs alive, and the
// retry queue survived.
func TestCrashAndRestart(t *testing.T) {
	dir := t.TempDir()
	issuesDir := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issuesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("CRASH-%d", i)
		ids = append(ids, id)
		writeFile(t, filepath.Join(issuesDir, id+".md"), fmt.Sprintf("---\ntitle: crash %d\nstate: Todo\npriority: %d\n---\n", i, i%4+1))
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}}
polling: {interval_ms: 500}
workspace: {root: ws}
agent: {max_concurrent_agents: 10, max_turns: 1, max_retry_backoff_ms: 600000}
claude: {command: %q, turn_timeout_ms: 600000, stall_timeout_ms: 600000}
---
Work on {{ issue.identifier }}.
`, os.Args[0]))
	t.Setenv(fakeAgentEnv, "1")
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = procscan.Kill("SYMPHONY_ISSUE_IDENTIFIER", id)
		}
	})

	first := start(t, "run", wf)
	first.waitFor(t, "symphony running")
	first.waitFor(t, "retry queued") // CRASH-5 failed: a retry is queued
	failedAt := time.Now()
	deadline := time.Now().Add(testTimeout)
	for {
		live := liveRuns(t, ids[:4])
		if len(live) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents never all started: %v\n%s", live, first.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := liveRuns(t, ids[:4])
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait(t)

	// With the instance dead, note the queued retry's due time.
	dataDir := filepath.Join(dir, ".symphony")
	dueBefore := retryDue(t, dataDir, "CRASH-5")

	second := start(t, "run", wf)
	second.waitFor(t, "symphony running")
	// Until every issue runs again, sample the process table: processes of
	// two different runs of one issue must never be alive together.
	deadline = time.Now().Add(testTimeout)
	for {
		live := liveRuns(t, ids[:4])
		for id, runs := range live {
			if len(runs) > 1 {
				t.Fatalf("issue %s has processes of two runs alive: %v", id, runs)
			}
		}
		fresh := 0
		for id, runs := range live {
			for run := range runs {
				if !before[id][run] {
					fresh++
				}
			}
		}
		if fresh == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every issue was dispatched again: %v\n%s", live, second.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Keep watching for a few poll intervals: no second dispatch, no
	// overlap.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for id, runs := range liveRuns(t, ids[:4]) {
			if len(runs) > 1 {
				t.Fatalf("issue %s has processes of two runs alive: %v", id, runs)
			}
		}
	}
	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	if code := second.wait(t); code != 0 {
		t.Fatalf("second run exited %d\n%s", code, second.all)
	}

	// Read the record with the instance stopped.
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	// The crashed runs are recorded interrupted once each (by the second
	// instance); the re-dispatched ones, cut short by its SIGTERM, end
	// interrupted too, by their own runner, saying so.
	interrupted := map[string]int{}
	dispatched := map[string]int{}
	for m, err := range bus.History(t.Context(), b, bus.RunEvents) {
		if err != nil {
			t.Fatal(err)
		}
		id := m.Data.Issue.Identifier
		switch {
		case m.Data.Event == bus.RunFinished && before[id][m.Data.RunID]:
			if m.Data.Status == bus.RunInterrupted {
				interrupted[id]++
			}
		case m.Data.Event == bus.RunFinished && id != "CRASH-5":
			if m.Data.Status != bus.RunInterrupted || m.Data.Error != "symphony is shutting down" {
				t.Errorf("%s: the re-dispatched run ended %s %q at the shutdown, want interrupted: symphony is shutting down", id, m.Data.Status, m.Data.Error)
			}
		case m.Data.Event == bus.RunDispatched:
			dispatched[id]++
		}
	}
	for _, id := range ids[:4] {
		if interrupted[id] != 1 || dispatched[id] != 2 {
			t.Errorf("%s: %d interrupted of the crashed run, %d dispatched; want 1 and 2 (first run, one re-dispatch)", id, interrupted[id], dispatched[id])
		}
	}
	if interrupted["CRASH-5"] != 0 {
		t.Error("CRASH-5 had no run in flight; it must not be recorded as interrupted")
	}
	k, _ := bus.Retries.Key("CRASH-5")
	r, err := bus.Get(t.Context(), b, k)
	switch {
	case err != nil:
		t.Errorf("the retry queue did not survive: %v", err)
	case time.Since(failedAt) < 9*time.Second:
		// The 10 s retry has not fired yet: it must be exactly the one
		// queued before the crash.
		if r.Value.Attempt != 1 || !r.Value.DueAt.Equal(dueBefore) {
			t.Errorf("retry changed across the restart: before due %v, after %+v", dueBefore, r.Value)
		}
	default:
		// A slow machine: the retry fired after the restart; it must not
		// have fired before its original due time.
		if r.Value.DueAt.Before(dueBefore) {
			t.Errorf("retry fired early: %+v, due %v", r.Value, dueBefore)
		}
	}
	// The background children of the interrupted runs were killed.
	for id, runs := range before {
		for run := range runs {
			if pids, _ := procscan.Find("SYMPHONY_RUN_ID", run); len(pids) > 0 {
				alive := 0
				for _, pid := range pids {
					if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Fields(string(st))[2] != "Z" {
						alive++
					}
				}
				if alive > 0 {
					t.Errorf("%s: %d processes of the interrupted run %s still alive", id, alive, run)
				}
			}
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// retryDue reads a queued retry's due time from a stopped instance's store.
func retryDue(t *testing.T, dataDir, issueID string) time.Time {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	k, _ := bus.Retries.Key(issueID)
	r, err := bus.Get(t.Context(), b, k)
	if err != nil {
		t.Fatalf("no retry queued for %s before the crash: %v", issueID, err)
	}
	return r.Value.DueAt
}

// chattyAgent streams like a working claude: an init line, then every
// 250 ms a step of assistant text with now and then a tool call and its
// result, for up to ten minutes (a test cancels it long before).
func chattyAgent() int {
	session := fmt.Sprintf("chatty-%d", os.Getpid())
	fmt.Printf(`{"type":"system","subtype":"init","session_id":%q,"cwd":"x","model":"fake"}`+"\n", session)
	for i := 1; i <= 2400; i++ {
		fmt.Printf(`{"type":"assistant","session_id":%q,"message":{"content":[{"type":"text","text":"Step %d: reading <b>the code</b>"}]}}`+"\n", session, i)
		if i%3 == 0 {
			fmt.Printf(`{"type":"assistant","session_id":%q,"message":{"content":[{"type":"tool_use","id":"tu%d","name":"Bash","input":{"command":"ls -la step%d"}}]}}`+"\n", session, i, i)
			fmt.Printf(`{"type":"user","session_id":%q,"message":{"content":[{"type":"tool_result","tool_use_id":"tu%d","content":"file%d.go\nfile%d_test.go"}]}}`+"\n", session, i, i, i)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return 0
}
