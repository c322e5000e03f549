package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
	"github.com/symphony-oss/symphony/testkit/natscluster"
)

// clusterWorkflow writes n issues (prefix-1…) and a WORKFLOW.md whose
// agent is the fake one with events at interval, and whose after_run hook
// moves the issue to Done.
func clusterWorkflow(t *testing.T, prefix string, n int, interval string) (wf string, ids []string) {
	t.Helper()
	agent := fakeagent.Build(t)
	dir := t.TempDir()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		ids = append(ids, id)
		writeFile(t, filepath.Join(issues, id+".md"), fmt.Sprintf("---\ntitle: %s\nstate: Todo\npriority: %d\n---\n", id, i%4+1))
	}
	wrapper := filepath.Join(dir, "agent.sh")
	writeFile(t, wrapper, "#!/bin/sh\nexport FAKEAGENT_EVENTS=20 FAKEAGENT_INTERVAL="+interval+"\nexec "+agent+" \"$@\"\n")
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	wf = filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}, active_states: [Todo], terminal_states: [Done]}
polling: {interval_ms: 300}
workspace: {root: ws}
hooks:
  after_run: |
    sed -i 's/^state: .*/state: Done/' %q/"$ISSUE_IDENTIFIER.md"
agent: {max_concurrent_agents: 10, max_turns: 1, max_retry_backoff_ms: 1000}
claude: {command: %q, turn_timeout_ms: 60000, stall_timeout_ms: 60000}
---
Work on {{ issue.identifier }}.
`, issues, wrapper))
	t.Setenv("HOME", t.TempDir()) // a light login shell for the hooks
	return wf, ids
}

// TestRunOnCluster: `symphony run --nats` on a real three-server cluster
// runs every issue once and exits (--once); `symphony runs --nats` then
// lists every run as succeeded from the cluster; the embedded server's
// flags are refused with --nats.
func TestRunOnCluster(t *testing.T) {
	c := natscluster.Start(t, 3)
	wf, ids := clusterWorkflow(t, "CL", 3, "1ms")
	r := start(t, "run", wf, "--nats", c.URLs(), "--once")
	if code := r.wait(t); code != 0 {
		t.Fatalf("run --nats --once exited %d\n%s", code, r.all)
	}
	code, out := runCLI(t, "runs", "--nats", c.URLs(), "--json")
	if code != 0 {
		t.Fatalf("runs --nats exited %d: %s", code, out)
	}
	for _, id := range ids {
		if !strings.Contains(out, `"identifier":"`+id+`"`) {
			t.Errorf("runs --nats does not list %s:\n%s", id, out)
		}
	}
	if n := strings.Count(out, `"status":"succeeded"`); n != len(ids) {
		t.Errorf("%d succeeded runs listed, want %d:\n%s", n, len(ids), out)
	}
	runID := between(out, `"run_id":"`, `"`)
	code, out = runCLI(t, "replay", "--nats", c.URLs(), "--jsonl", runID)
	if code != 0 || !strings.Contains(out, runID) || !strings.Contains(out, "Work on") {
		t.Errorf("replay --nats --jsonl %s: exit %d\n%s", runID, code, out)
	}
	code, out = runCLI(t, "run", wf, "--nats", c.URLs(), "--nats-listen", "127.0.0.1:0")
	if code != exitUsage || !strings.Contains(out, "--nats-listen is for the embedded server") {
		t.Fatalf("run --nats --nats-listen: exit %d, %s", code, out)
	}
}

// between is the text of s after the first from, up to the next to.
func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

// issuesDone reports whether every issue file under the workflow's
// issues/ directory says state Done.
func issuesDone(t *testing.T, wf string, ids []string) int {
	t.Helper()
	done := 0
	for _, id := range ids {
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(wf), "issues", id+".md"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "state: Done") {
			done++
		}
	}
	return done
}

// noTwoRuns fails the test when the process table shows processes of two
// runs alive for one issue.
func noTwoRuns(t *testing.T, ids []string) {
	t.Helper()
	for id, runs := range liveRuns(t, ids) {
		if len(runs) > 1 {
			t.Fatalf("issue %s has processes of two runs alive: %v", id, runs)
		}
	}
}

// member is one `symphony run --nats` of a test cluster, its output read
// all along (a member that schedules hundreds of runs writes more lines
// than proc's channel holds, and an unread pipe would keep its exit from
// being seen).
type member struct {
	p    *proc
	dir  string
	mu   sync.Mutex
	out  strings.Builder
	seen int // how far waitFor has looked
}

func startMember(t *testing.T, args ...string) *member {
	t.Helper()
	m := &member{dir: t.TempDir()}
	m.p = start(t, append(args, "--data-dir", m.dir)...)
	go func() {
		for line := range m.p.lines {
			m.mu.Lock()
			m.out.WriteString(line + "\n")
			m.mu.Unlock()
		}
	}()
	return m
}

// output is everything the member wrote so far.
func (m *member) output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// waitFor waits for a line, after what earlier waits matched, containing
// one of wants, and returns that want.
func (m *member) waitFor(t *testing.T, wants ...string) string {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		m.mu.Lock()
		rest := m.out.String()[m.seen:]
		for _, line := range strings.SplitAfter(rest, "\n") {
			if !strings.HasSuffix(line, "\n") {
				break
			}
			m.seen += len(line)
			for _, w := range wants {
				if strings.Contains(line, w) {
					m.mu.Unlock()
					return w
				}
			}
		}
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("none of %q within %v; output:\n%s", wants, testTimeout, m.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exit waits for the member's end (SIGQUIT after 45 s, so that its
// goroutines are in the output) and returns its exit code.
func (m *member) exit(t *testing.T) int {
	t.Helper()
	timer := time.AfterFunc(45*time.Second, func() { _ = m.p.cmd.Process.Signal(syscall.SIGQUIT) })
	var err error
	select {
	case err = <-m.p.done:
	case <-time.After(testTimeout):
		t.Fatalf("a member did not end, even after SIGQUIT; output:\n%s", m.output())
	}
	if !timer.Stop() {
		time.Sleep(100 * time.Millisecond) // the reader's last lines
		t.Fatalf("a member did not exit within 45 s; its goroutines:\n%s", m.output())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// kill ends the member with kill -9.
func (m *member) kill(t *testing.T) {
	t.Helper()
	if err := m.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.exit(t)
}

// stop ends the member with SIGTERM; it must exit 0.
func (m *member) stop(t *testing.T) {
	t.Helper()
	_ = m.p.cmd.Process.Signal(syscall.SIGTERM)
	if code := m.exit(t); code != 0 {
		t.Fatalf("a member exited %d\n%s", code, m.output())
	}
}

// TestSchedulerFailover: `symphony run --nats` processes on a
// three-server cluster; one takes the scheduler lease, another stands by.
// Each round kills the active one with kill -9 while its agents run; the
// standby takes the lease over within a bound, records the dead process's
// runs interrupted, kills their leftovers and goes on; one NATS server is
// stopped (the one stopped in the round before restarted), and a new
// standby joins. Throughout, the process table never shows two runs alive
// for one issue, and no stored event disappears; at the end every issue is
// Done, every dispatched run has an end on record, and no agent process is
// left behind. `go tool task chaos` runs 200 issues and 5 rounds.
func TestSchedulerFailover(t *testing.T) {
	rounds := envCount(t, "SYMPHONY_CHAOS_FAILOVERS", 1)
	c := natscluster.Start(t, 3)
	wf, ids := clusterWorkflow(t, "FO", envCount(t, "SYMPHONY_CHAOS_CLUSTER_ISSUES", 8), "150ms")
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = procscan.Kill("SYMPHONY_ISSUE_IDENTIFIER", id)
		}
	})
	base := []string{"run", wf, "--nats", c.URLs(), "--lease-ttl", "3s"}
	var members []*member
	join := func(name string) *member {
		m := startMember(t, append(base, "--name", name)...)
		members = append(members, m)
		return m
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, m := range members {
				t.Logf("member m%d's output:\n%s", i, m.output())
			}
		}
	})
	active := join("m0")
	active.waitFor(t, "scheduler lease acquired")
	standby := join("m1")
	standby.waitFor(t, "standing by")
	checkSchedulerShown(t, active.dir, "m0", "m1")
	rb := dialRecord(t, c.URLs())
	deadline := time.Now().Add(testTimeout + time.Duration(len(ids))*time.Second)
	stopped := -1
	for round := range rounds {
		for len(liveRuns(t, ids)) < min(4, len(ids)-issuesDone(t, wf, ids)) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the active scheduler's agents never started", round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		noTwoRuns(t, ids)
		before := storedEvents(t, rb)
		killed := time.Now()
		active.kill(t)
		standby.waitFor(t, "scheduler lease acquired")
		if took := time.Since(killed); took > 3*time.Second+5*time.Second {
			t.Errorf("round %d: the standby took %s to take over with a 3s lease", round, took)
		}
		if stopped >= 0 {
			c.Restart(stopped)
		}
		stopped = round % 3
		c.Stop(stopped) // R3 keeps going with two servers of three
		if after := storedEvents(t, rb); after < before {
			t.Fatalf("round %d: %d stored events before the kill, %d after", round, before, after)
		}
		active, standby = standby, join(fmt.Sprintf("m%d", round+2))
		if standby.waitFor(t, "standing by", "scheduler lease acquired") != "standing by" {
			// The new active lost its lease while a server was stopped;
			// the newcomer took over. Both are valid: swap the roles.
			active, standby = standby, active
		}
	}
	for issuesDone(t, wf, ids) < len(ids) {
		noTwoRuns(t, ids)
		if time.Now().After(deadline) {
			t.Fatalf("not every issue reached Done: %d of %d", issuesDone(t, wf, ids), len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// prune reaches the active process's pruner through the cluster.
	if code, out := runCLI(t, "prune", "--nats", c.URLs(), "--older-than", "1h", "--dry-run"); code != 0 || !strings.Contains(out, "dry run") {
		t.Errorf("prune --nats --dry-run: exit %d, %s", code, out)
	}
	standby.stop(t)
	active.stop(t)
	checkClusterRecord(t, rb, ids)
	if live := liveRuns(t, ids); len(live) > 0 {
		t.Errorf("agent processes left behind: %v", live)
	}
}

// checkSchedulerShown waits until the dashboard API of the process whose
// data directory is dir names active as the scheduler and standby among
// the standbys.
func checkSchedulerShown(t *testing.T, dir, active, standby string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		raw, _ := os.ReadFile(filepath.Join(dir, "dashboard-url"))
		if u := strings.TrimSpace(string(raw)); u != "" {
			if resp, err := http.Get(u + "/api/v1/state"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(body), `"active": "`+active+`"`) && strings.Contains(string(body), `"name": "`+standby+`"`) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the dashboard never showed %s active and %s standing by:\n%s", active, standby, body)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dashboard in %s", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialRecord connects the test to the cluster, to read what is stored.
func dialRecord(t *testing.T, urls string) *bus.Bus {
	t.Helper()
	rb, err := bus.Dial(t.Context(), bus.RemoteOptions{URLs: strings.Split(urls, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rb.Close(context.Background()) })
	return rb
}

// storedEvents is how many messages the RUNS and TURNS streams hold, after
// checking that neither has a hole (an acknowledged event lost).
func storedEvents(t *testing.T, rb *bus.Bus) uint64 {
	t.Helper()
	var n uint64
	for _, name := range []string{bus.StreamRuns, bus.StreamTurns} {
		var err error
		for try := 0; try < 100; try++ { // the stream may be electing a leader
			var s jetstream.Stream
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			s, err = rb.JetStream().Stream(ctx, name)
			cancel()
			if err == nil {
				st := s.CachedInfo().State
				if st.Msgs != st.LastSeq-st.FirstSeq+1 && st.Msgs > 0 {
					t.Fatalf("stream %s has a hole: %d messages from %d to %d", name, st.Msgs, st.FirstSeq, st.LastSeq)
				}
				n += st.Msgs
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
	}
	return n
}

// checkClusterRecord reads the cluster's record: every dispatched run has
// an end; the lease's last token is at least 2 (a takeover happened).
func checkClusterRecord(t *testing.T, rb *bus.Bus, ids []string) {
	t.Helper()
	dispatched, finished := map[string]bool{}, map[string]bus.RunStatus{}
	for m, err := range bus.History(t.Context(), rb, bus.RunEvents) {
		if err != nil {
			t.Fatal(err)
		}
		switch m.Data.Event {
		case bus.RunDispatched:
			dispatched[m.Data.RunID] = true
		case bus.RunFinished:
			finished[m.Data.RunID] = m.Data.Status
		}
	}
	interrupted := 0
	for run := range dispatched {
		st, ok := finished[run]
		if !ok {
			t.Errorf("run %s was dispatched and never ended on record", run)
		}
		if st == bus.RunInterrupted {
			interrupted++
		}
	}
	if interrupted == 0 {
		t.Error("no run recorded interrupted: the killed scheduler's runs were not followed up")
	}
	if len(dispatched) < len(ids) {
		t.Errorf("%d runs dispatched for %d issues", len(dispatched), len(ids))
	}
	l, err := bus.Get(t.Context(), rb, bus.SchedulerLease)
	if err != nil || l.Value.Token < 2 || !l.Value.Released {
		t.Errorf("lease after the takeover and a clean stop: %+v, %v; want token ≥ 2, released", l.Value, err)
	}
}

// TestClusterConfigFiles: the three server configurations in
// testdata/cluster start a cluster (on free ports and temporary stores),
// and `symphony run --nats` runs on it with the user and password from the
// environment, which no hook sees; without the password it is refused.
func TestClusterConfigFiles(t *testing.T) {
	t.Setenv("SYMPHONY_NATS_PASSWORD", "cluster-test-password")
	files := []string{"../../testdata/cluster/n1.conf", "../../testdata/cluster/n2.conf", "../../testdata/cluster/n3.conf"}
	c := natscluster.StartFiles(t, files...)
	wf, ids := clusterWorkflow(t, "CF", 2, "1ms")
	// The before_run hook records whether it saw the NATS secrets.
	seen := filepath.Join(t.TempDir(), "seen")
	raw, err := os.ReadFile(wf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, wf, strings.Replace(string(raw), "hooks:\n", "hooks:\n  before_run: |\n    echo \"[$SYMPHONY_NATS_USER$SYMPHONY_NATS_PASSWORD]\" >> "+seen+"\n", 1))
	t.Setenv("SYMPHONY_NATS_USER", "symphony")
	r := start(t, "run", wf, "--nats", c.URLs(), "--once")
	if code := r.wait(t); code != 0 {
		t.Fatalf("run on the testdata cluster exited %d\n%s", code, r.all)
	}
	if n := issuesDone(t, wf, ids); n != len(ids) {
		t.Fatalf("%d of %d issues done\n%s", n, len(ids), r.all)
	}
	got, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(got), "[]") != len(ids) {
		t.Fatalf("hooks saw the NATS user or password: %q", got)
	}
	t.Setenv("SYMPHONY_NATS_PASSWORD", "wrong")
	code, out := runCLI(t, "runs", "--nats", c.URLs())
	if code == 0 || !strings.Contains(strings.ToLower(out), "authorization") {
		t.Fatalf("runs with a wrong password: exit %d, %s", code, out)
	}
}

// TestCutOffKillsAgents: the active scheduler cut off from NATS (its one
// server gone) cannot renew its lease; it kills its agents before the
// lease's TTL has passed since its last renewal, the moment from which a
// standby could take over, and says so.
func TestCutOffKillsAgents(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	wf, ids := clusterWorkflow(t, "CUT", 3, "500ms")
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = procscan.Kill("SYMPHONY_ISSUE_IDENTIFIER", id)
		}
	})
	const ttl = 5 * time.Second
	r := start(t, "run", wf, "--nats", s.ClientURL(), "--lease-ttl", ttl.String())
	r.waitFor(t, "scheduler lease acquired")
	deadline := time.Now().Add(testTimeout)
	for len(liveRuns(t, ids)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("agents never started\n%s", r.all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Shutdown()
	// The last renewal was sent at most a renewal period before the cut.
	cut := time.Now().Add(-ttl / bus.RenewEvery)
	for len(liveRuns(t, ids)) > 0 {
		if time.Since(cut) > ttl {
			t.Fatalf("agents still alive %s after the last possible renewal (lease TTL %s): %v", time.Since(cut), ttl, liveRuns(t, ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("agents gone %s after the last possible renewal (TTL %s)", time.Since(cut), ttl)
	r.waitFor(t, "lease lost: killed this process's agents")
	// Its components then stop slowly against a cluster that is gone
	// (each request waits for its timeout); that is not this test's
	// business.
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	r.wait(t)
}
