package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/runlog"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// envCount reads a positive count from the environment (the long versions
// in go tool task chaos), else def (the short versions in the suite).
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestChaosKillLoop starts `symphony run` on 10 issues whose agents stream
// for about a second, kills it with SIGKILL at random moments (during
// dispatch, mid-turn, during the after_run hook), restarts it each time,
// then lets it finish, and finally kills a prune mid-way. It checks that:
//   - no event JetStream acknowledged is ever lost (the TURNS stream has no
//     hole and never shrinks across a kill);
//   - at no sampled moment two agent processes of different runs are alive
//     for one issue;
//   - every issue is eventually processed (its after_run hook moved it to
//     Done);
//   - every run has an end on record (interrupted where the process died);
//   - no agent or hook process is left behind;
//   - a prune killed mid-way leaves a store that opens, and the next prune
//     finishes it.
func TestChaosKillLoop(t *testing.T) {
	kills := envCount(t, "SYMPHONY_CHAOS_KILLS", 4) // task chaos: 20
	agent := fakeagent.Build(t)
	dir := t.TempDir()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 1; i <= 10; i++ {
		id := fmt.Sprintf("KILL-%d", i)
		ids = append(ids, id)
		writeFile(t, filepath.Join(issues, id+".md"), fmt.Sprintf("---\ntitle: kill %d\nstate: Todo\npriority: %d\n---\n", i, i%4+1))
	}
	wrapper := filepath.Join(dir, "agent.sh")
	writeFile(t, wrapper, "#!/bin/sh\nexport FAKEAGENT_EVENTS=50 FAKEAGENT_INTERVAL=20ms FAKEAGENT_SIZE=128\nexec "+agent+" \"$@\"\n")
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}, active_states: [Todo], terminal_states: [Done]}
polling: {interval_ms: 300}
workspace: {root: ws}
hooks:
  after_run: |
    sleep 0.1
    sed -i 's/^state: .*/state: Done/' %q/"$ISSUE_IDENTIFIER.md"
agent: {max_concurrent_agents: 10, max_turns: 1, max_retry_backoff_ms: 1000}
claude: {command: %q, turn_timeout_ms: 60000, stall_timeout_ms: 60000}
---
Work on {{ issue.identifier }}.
`, issues, wrapper))
	t.Setenv("HOME", t.TempDir()) // a light login shell for the hooks
	dataDir := filepath.Join(dir, "data")
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = procscan.Kill("SYMPHONY_ISSUE_IDENTIFIER", id)
		}
	})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	// watch samples the process table until stop: never two runs alive
	// for one issue.
	watch := func(stop <-chan struct{}, done chan<- string) {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for id, runs := range liveRuns(t, ids) {
				if len(runs) > 1 {
					done <- fmt.Sprintf("issue %s has processes of two runs alive: %v", id, runs)
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var stored uint64 // TURNS messages stored before the last kill
	killed := 0
	for k := range kills {
		p := start(t, "--data-dir", dataDir, "run", wf)
		p.waitFor(t, "symphony running")
		stop, done := make(chan struct{}), make(chan string, 1)
		go watch(stop, done)
		time.Sleep(time.Duration(50+rng.IntN(1200)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait(t)
		killed++
		close(stop)
		if msg, ok := <-done; ok {
			t.Fatal(msg)
		}
		stored = checkTurnsIntact(t, dataDir, stored, fmt.Sprintf("after kill %d", k+1))
	}
	// Let it finish: every issue Done.
	p := start(t, "--data-dir", dataDir, "run", wf)
	p.waitFor(t, "symphony running")
	stop, done := make(chan struct{}), make(chan string, 1)
	go watch(stop, done)
	files := make([]string, len(ids))
	for i, id := range ids {
		files[i] = filepath.Join(issues, id+".md")
	}
	waitUntilFilesSay(t, p, files, "state: Done", 2*time.Minute, fmt.Sprintf("after %d kills", killed))
	// The last runs end (their after_run moved them); give the scheduler
	// a few polls, then stop cleanly.
	settleAndStop(t, p, "final run")
	close(stop)
	if msg, ok := <-done; ok {
		t.Fatal(msg)
	}
	checkTurnsIntact(t, dataDir, stored, "at the end")
	for _, id := range ids {
		if pids, _ := procscan.Find("SYMPHONY_ISSUE_IDENTIFIER", id); len(liveOnly(pids)) > 0 {
			t.Errorf("issue %s left processes behind: %v", id, pids)
		}
	}
	// Every run has an end on record.
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	sums, err := runlog.Summaries(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]int{}
	for _, s := range sums {
		statuses[string(s.Status)]++
		if s.Ended == nil || s.Status == "running" {
			t.Errorf("run %s (%s) has no end on record", s.RunID, s.Issue.Identifier)
		}
	}
	_ = b.Close(context.Background())
	t.Logf("%d kills; %d runs: %v; %d agent events stored", killed, len(sums), statuses, stored)

	// Kill prune while it deletes: the store still opens, and a second
	// prune finishes the job, leaving no event of a pruned run behind.
	time.Sleep(50 * time.Millisecond)
	pr := start(t, "--data-dir", dataDir, "prune", "--older-than", "1ms")
	time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	pr.wait(t)
	if code, out := runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "1ms"); code != 0 {
		t.Fatalf("prune after a killed prune: exit %d\n%s", code, out)
	}
	b, err = bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("open after a killed prune: %v", err)
	}
	defer b.Close(context.Background())
	if left, err := runlog.Summaries(t.Context(), b); err != nil || len(left) != 0 {
		t.Fatalf("after prune: %d runs left, %v", len(left), err)
	}
	for _, name := range []string{bus.StreamRuns, bus.StreamTurns, bus.StreamHooks} {
		s, err := b.JetStream().Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			t.Errorf("stream %s keeps %d messages of pruned runs", name, info.State.Msgs)
		}
	}
}

// checkTurnsIntact opens the stopped instance's store and checks the TURNS
// stream has every message it had before (no hole, never fewer); it
// returns the count now.
func checkTurnsIntact(t *testing.T, dataDir string, before uint64, when string) uint64 {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("%s: open the store: %v", when, err)
	}
	defer b.Close(context.Background())
	s, err := b.JetStream().Stream(t.Context(), bus.StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := info.State
	if st.Msgs < before {
		t.Fatalf("%s: TURNS holds %d messages, %d were stored before: acknowledged events lost", when, st.Msgs, before)
	}
	if st.Msgs > 0 && (st.FirstSeq != 1 || st.LastSeq-st.FirstSeq+1 != st.Msgs) {
		t.Fatalf("%s: TURNS has holes: first %d last %d msgs %d", when, st.FirstSeq, st.LastSeq, st.Msgs)
	}
	return st.Msgs
}

// liveOnly keeps the pids that are alive and not zombies.
func liveOnly(pids []int) []int {
	var out []int
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && strings.Fields(string(stat))[2] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}
