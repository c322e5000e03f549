package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/components/agentrunner"
	"github.com/symphony-oss/symphony/components/scheduler"
	"github.com/symphony-oss/symphony/components/tracker"
	"github.com/symphony-oss/symphony/components/workflow"
	"github.com/symphony-oss/symphony/components/workspace"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// backlog is Symphony's components in this process on a real embedded bus,
// the files tracker reading dir/issues.
type backlog struct {
	dir  string
	b    *bus.Bus
	stop func()
}

// writeBacklog writes n issue files, each with a description of descBytes
// that names its issue, and a workflow whose agent saves its prompt in the
// workspace; maxAgents agents run at once.
func writeBacklog(tb testing.TB, dir string, n, descBytes, maxAgents, pollMS int) {
	tb.Helper()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		tb.Fatal(err)
	}
	for k := range n {
		id := fmt.Sprintf("BIG-%d", k)
		line := "Description of " + id + ". "
		desc := strings.Repeat(line, descBytes/len(line)+1)[:descBytes]
		writeFileTB(tb, filepath.Join(issues, id+".md"), fmt.Sprintf("---\ntitle: Issue %d\nstate: Todo\npriority: %d\n---\n%s\n", k, k%4+1, desc))
	}
	agent := filepath.Join(dir, "agent.sh")
	writeFileTB(tb, agent, "#!/bin/sh\ncat > prompt.tmp && mv prompt.tmp prompt.txt\n")
	if err := os.Chmod(agent, 0o755); err != nil {
		tb.Fatal(err)
	}
	writeFileTB(tb, filepath.Join(dir, "WORKFLOW.md"), fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}}
polling: {interval_ms: %d}
workspace: {root: ws}
agent: {max_concurrent_agents: %d, max_turns: 1}
claude: {command: %q, turn_timeout_ms: 600000, stall_timeout_ms: 600000}
---
Work on {{ issue.identifier }}: {{ issue.description }}
`, pollMS, maxAgents, agent))
}

// startBacklog runs the components on a bus whose server accepts messages
// of at most maxPayload bytes (0: the default).
func startBacklog(tb testing.TB, dir string, maxPayload int32) *backlog {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("BACKLOG_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	b, err := bus.Open(ctx, bus.Options{DataDir: filepath.Join(dir, "data"), MaxPayload: maxPayload, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	var comps []components.Component
	add := func(c components.Component, err error) {
		if err != nil {
			tb.Fatal(err)
		}
		comps = append(comps, c)
	}
	add(workflow.New(workflow.Options{Log: log, Path: filepath.Join(dir, "WORKFLOW.md"), Bus: b, Env: workflowfile.OSEnv()}))
	add(tracker.New(tracker.Options{Log: log, Bus: b, Env: workflowfile.OSEnv()}))
	add(workspace.New(workspace.Options{Log: log, Bus: b}))
	add(agentrunner.New(agentrunner.Options{Log: log, Bus: b}))
	add(scheduler.New(scheduler.Options{Log: log, Bus: b}))
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	bl := &backlog{dir: dir, b: b}
	bl.stop = func() {
		cancel()
		wg.Wait()
		_ = b.Close(context.Background())
	}
	tb.Cleanup(bl.stop)
	return bl
}

// firstPrompt waits for an agent to have saved its prompt and returns the
// issue it ran for and the prompt.
func (bl *backlog) firstPrompt(tb testing.TB, within time.Duration) (string, string) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		matches, _ := filepath.Glob(filepath.Join(bl.dir, "ws", "*", "prompt.txt"))
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err == nil {
				return filepath.Base(filepath.Dir(m)), string(data)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("no agent started within %s", within)
	return "", ""
}

// TestLargeBacklogDispatches: 800 active issues with 12 KB descriptions
// on the files tracker (9.6 MB of candidates), through the real embedded
// bus: an agent starts, and its prompt has its issue's whole description.
// On a server whose max payload is 64 KiB the same holds. Before the
// snapshot carried outlines in parts, every poll failed to publish
// ("maximum payload exceeded") and no agent ever started.
func TestLargeBacklogDispatches(t *testing.T) {
	for _, c := range []struct {
		name       string
		maxPayload int32
	}{{"default", 0}, {"max_payload=64KiB", 64 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeBacklog(t, dir, 800, 12000, 1, 3600000)
			bl := startBacklog(t, dir, c.maxPayload)
			id, prompt := bl.firstPrompt(t, 2*time.Minute)
			want := "Description of " + id + ". "
			if !strings.HasPrefix(prompt, "Work on "+id+": "+want) || strings.Count(prompt, want) != 12000/len(want) || strings.Contains(prompt, bus.CutMarker) {
				t.Errorf("prompt of %s (%d bytes) is not its whole description: %.100q", id, len(prompt), prompt)
			}
			// The highest priority went first.
			var k int
			if _, err := fmt.Sscanf(id, "BIG-%d", &k); err != nil || k%4 != 0 {
				t.Errorf("first dispatch %s is not of priority 1", id)
			}
		})
	}
}

// TestHugeIssueIsCutNotStuck: one issue whose title is 200 KB and whose
// description is 100 KB, on a server whose
// max payload is 64 KiB: it is dispatched with both cut, each ending with
// the cut note, instead of failing every poll.
func TestHugeIssueIsCutNotStuck(t *testing.T) {
	dir := t.TempDir()
	writeBacklog(t, dir, 0, 0, 1, 3600000)
	// The title is as long as an issue file's front matter may be (YAML
	// over 256 KiB is refused before it is parsed, yamlbound.MaxBytes):
	// far over one issue's bound on a 64 KiB server.
	title := strings.Repeat("t", 200000)
	desc := strings.Repeat("d", 100000)
	writeFileTB(t, filepath.Join(dir, "issues", "HUGE-1.md"), "---\ntitle: "+title+"\nstate: Todo\n---\n"+desc+"\n")
	bl := startBacklog(t, dir, 64<<10)
	id, prompt := bl.firstPrompt(t, 2*time.Minute)
	if id != "HUGE-1" || strings.Count(prompt, bus.CutMarker) != 1 || len(prompt) > bus.IssueLimit(64<<10) {
		t.Errorf("prompt of %s: %d bytes, %d cut notes: %.200q", id, len(prompt), strings.Count(prompt, bus.CutMarker), prompt)
	}
}

// BenchmarkBacklog10k: 10,000 active issues with 4 KB descriptions on the
// files tracker; Symphony's components in this process on a real bus, one
// agent at a time (it saves its prompt and sleeps). Each round starts the
// components afresh (a new data directory and workspace root, the issue
// files kept) and lets three more polls run, a second apart, beside the
// running agent. Figures:
//
//   - first-dispatch-ms: the first poll's start → the first agent's
//     turn_started (its full issue read by id, its workspace made);
//   - cpu-ms/poll: user+sys CPU of the process per poll while the agent
//     runs (the poll, the snapshot's parts, the tick's plan and reconcile);
//   - peak-rss-MB: the process's peak resident set (VmHWM).
func BenchmarkBacklog10k(b *testing.B) {
	dir := b.TempDir()
	writeBacklog(b, dir, 10000, 4096, 1, 1000)
	writeFileTB(b, filepath.Join(dir, "agent.sh"), "#!/bin/sh\ncat > prompt.tmp && mv prompt.tmp prompt.txt\nexec sleep 600\n")
	var firsts []time.Duration
	var cpu time.Duration
	polls := 0
	round := 0
	for b.Loop() {
		round++
		rdir := filepath.Join(dir, "round"+strconv.Itoa(round))
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"issues", "agent.sh"} {
			if err := os.Symlink(filepath.Join(dir, name), filepath.Join(rdir, name)); err != nil {
				b.Fatal(err)
			}
		}
		wf, err := os.ReadFile(filepath.Join(dir, "WORKFLOW.md"))
		if err != nil {
			b.Fatal(err)
		}
		writeFileTB(b, filepath.Join(rdir, "WORKFLOW.md"), string(wf))
		bl := startBacklogWatch(b, rdir)
		var first time.Time
		var started time.Time
		for started.IsZero() {
			select {
			case m := <-bl.snaps.C():
				if first.IsZero() {
					first = m.Data.FetchedAt
				}
			case m := <-bl.runs.C():
				if m.Data.Event == bus.RunTurnStarted {
					started = time.Now()
				}
			case <-time.After(2 * time.Minute):
				b.Fatal("no agent started")
			}
		}
		if first.IsZero() {
			b.Fatal("the turn started before any snapshot")
		}
		firsts = append(firsts, started.Sub(first))
		// Three polls beside the running agent.
		cpu0 := processCPU(b)
		for n := 0; n < 3; {
			select {
			case <-bl.snaps.C():
				n++
			case <-time.After(2 * time.Minute):
				b.Fatal("no further poll")
			}
		}
		cpu += processCPU(b) - cpu0
		polls += 3
		bl.stop()
		// Each round leaves a workspace and a store; the next is fresh.
		_ = os.RemoveAll(rdir)
	}
	slices.Sort(firsts)
	b.ReportMetric(float64(firsts[len(firsts)/2].Microseconds())/1000, "first-dispatch-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(polls), "cpu-ms/poll")
	b.ReportMetric(selfPeakRSSMB(b), "peak-rss-MB")
}

// backlogWatch is a backlog with subscriptions to its snapshots and run
// events.
type backlogWatch struct {
	*backlog
	snaps *bus.Subscription[bus.CandidateSnapshot]
	runs  *bus.Subscription[bus.RunEvent]
}

func startBacklogWatch(tb testing.TB, dir string) *backlogWatch {
	tb.Helper()
	bl := startBacklog(tb, dir, 0)
	ctx, cancel := context.WithCancel(context.Background())
	stop := bl.stop
	bl.stop = func() {
		cancel()
		stop()
	}
	w := &backlogWatch{backlog: bl}
	var err error
	if w.snaps, err = bus.Subscribe(ctx, bl.b, bus.TrackerSnapshots); err != nil {
		tb.Fatal(err)
	}
	if w.runs, err = bus.Subscribe(ctx, bl.b, bus.RunEvents); err != nil {
		tb.Fatal(err)
	}
	return w
}

// processCPU is this process's user+system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfPeakRSSMB is this process's peak resident set (VmHWM) in MiB.
func selfPeakRSSMB(tb testing.TB) float64 {
	st, ok := procStatus(os.Getpid())
	if !ok {
		tb.Fatal("no /proc status")
	}
	return mib(st["VmHWM"])
}
