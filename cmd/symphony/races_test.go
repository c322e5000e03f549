package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// TestNoRaceBetweenPollsAndRunEnds is the load under which peers
// dispatched whole batches twice, lost run records and marked good runs
// failed. 50 issues run at once; their agents write 200 events 10 ms
// apart; polls come every 100 ms; each run's after_run hook moves its
// issue out of the active states, so polls in flight keep reporting issues
// whose runs just ended. Each round checks: every issue dispatched exactly
// once, every run succeeded (the child's exit never races its last line),
// and every run stored every one of its agent events (no event dropped
// for a full channel).
func TestNoRaceBetweenPollsAndRunEnds(t *testing.T) {
	const issues, events = 50, 200
	agent := fakeagent.Build(t)
	t.Setenv("HOME", t.TempDir()) // a light login shell for the hooks
	for round := range envCount(t, "SYMPHONY_RACE_ROUNDS", 2) {
		dir := t.TempDir()
		issueDir := filepath.Join(dir, "issues")
		if err := os.MkdirAll(issueDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= issues; i++ {
			writeFile(t, filepath.Join(issueDir, fmt.Sprintf("RACE-%d.md", i)), fmt.Sprintf("---\ntitle: race %d\nstate: Todo\n---\n", i))
		}
		wrapper := filepath.Join(dir, "agent.sh")
		writeFile(t, wrapper, fmt.Sprintf("#!/bin/sh\nexport FAKEAGENT_EVENTS=%d FAKEAGENT_INTERVAL=10ms FAKEAGENT_SIZE=64\nexec %s \"$@\"\n", events, agent))
		if err := os.Chmod(wrapper, 0o755); err != nil {
			t.Fatal(err)
		}
		wf := filepath.Join(dir, "WORKFLOW.md")
		writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}, active_states: [Todo], terminal_states: [Done]}
polling: {interval_ms: 100}
workspace: {root: ws}
hooks:
  after_run: |
    sed -i 's/^state: .*/state: Human Review/' %q/"$ISSUE_IDENTIFIER.md"
agent: {max_concurrent_agents: 50, max_turns: 1}
claude: {command: %q, turn_timeout_ms: 60000, stall_timeout_ms: 60000}
---
Work on {{ issue.identifier }}.
`, issueDir, wrapper))
		dataDir := filepath.Join(dir, "data")
		p := start(t, "--data-dir", dataDir, "run", wf)
		p.waitFor(t, "symphony running")
		files := make([]string, issues)
		for i := range files {
			files[i] = filepath.Join(issueDir, fmt.Sprintf("RACE-%d.md", i+1))
		}
		what := fmt.Sprintf("round %d", round)
		waitUntilFilesSay(t, p, files, "Human Review", 3*time.Minute, what)
		// More polls while the last ends are recorded: none may dispatch.
		settleAndStop(t, p, what)
		b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		sums, err := runlog.Summaries(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		perIssue := map[string]int{}
		for _, s := range sums {
			perIssue[s.Issue.Identifier]++
			if s.Status != bus.RunSucceeded {
				t.Errorf("round %d: run %s of %s ended %s: %s", round, s.RunID, s.Issue.Identifier, s.Status, s.Error)
			}
			var n int
			for _, err := range bus.History(t.Context(), b, bus.TurnEvents, s.RunID) {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			// The prompt, the init line, every event and the result.
			if n != events+3 {
				t.Errorf("round %d: run %s stored %d agent events, want %d", round, s.RunID, n, events+3)
			}
		}
		for i := 1; i <= issues; i++ {
			if id := fmt.Sprintf("RACE-%d", i); perIssue[id] != 1 {
				t.Errorf("round %d: %s dispatched %d times", round, id, perIssue[id])
			}
		}
		_ = b.Close(context.Background())
		if t.Failed() {
			return
		}
		t.Logf("round %d: %d runs, all succeeded, %d agent events each, no issue dispatched twice", round+1, len(sums), events+3)
	}
}
