package agentrunner

// Agent chaos tests (issue #11, part 3): the fake agent (internal/fakeagent)
// misbehaves in every way we could think of, on the real bus, through the
// real runner. Each case must end in a classified run status with a clear
// error, leave no process behind and keep memory bounded. No timing
// assertions: every wait is for an event, with a generous deadline.

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// chaosStderrBytes is the stderr flood of the chaos tests: 1 GiB (about
// 1.2 s under -race here), or CHAOS_STDERR_BYTES (e.g. 64M on a slow
// machine, 4G for a longer soak).
func chaosStderrBytes(t *testing.T) int64 {
	if v := os.Getenv("CHAOS_STDERR_BYTES"); v != "" {
		n, err := fakeagent.ParseBytes(v)
		if err != nil {
			t.Fatalf("CHAOS_STDERR_BYTES: %v", err)
		}
		return n
	}
	return 1 << 30
}

// chaosRun is one chaos case's outcome.
type chaosRun struct {
	end   bus.RunEvent
	turns []bus.TurnEvent
	// allocated is the runtime's TotalAlloc growth over the run: what the
	// whole test process (runner, bus, server) allocated meanwhile.
	allocated uint64
	// peakHeap is the highest live heap seen during the run, above the
	// heap before it (sampled every millisecond: a lower bound of the true
	// peak, but a buffer held for the length of a 50 MB read cannot hide).
	peakHeap int64
	took     time.Duration
}

// heapSampler records the peak of the live heap until stopped.
type heapSampler struct {
	stop chan struct{}
	done chan int64
}

func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan int64, 1)}
	base := liveHeap()
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		peak := base
		for {
			select {
			case <-h.stop:
				h.done <- peak - base
				return
			case <-tick.C:
				peak = max(peak, liveHeap())
			}
		}
	}()
	return h
}

// Stop ends the sampling and returns the peak growth.
func (h *heapSampler) Stop() int64 {
	close(h.stop)
	return <-h.done
}

func (r chaosRun) count(kind bus.TurnEventKind) int {
	n := 0
	for _, e := range r.turns {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (r chaosRun) first(kind bus.TurnEventKind) *bus.TurnEvent {
	for i := range r.turns {
		if r.turns[i].Kind == kind {
			return &r.turns[i]
		}
	}
	return nil
}

// chaos runs one turn of the fake agent (built once per test into bin)
// with the fake's environment env, through the runner on a real bus.
// during, if set, runs once the agent has printed its init line.
func chaos(t *testing.T, bin, runID string, mutate func(*bus.Config), during func(*harness), env ...string) chaosRun {
	t.Helper()
	// CLAUDE_CLI (set to run the real-CLI tests) would win over the
	// configured command.
	t.Setenv("CLAUDE_CLI", bin)
	h := newHarness(t, "", func(c *bus.Config) {
		c.Claude.Command = bin
		c.Agent.MaxTurns = 1
		if mutate != nil {
			mutate(c)
		}
	}, env...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	heap := sampleHeap()
	start := time.Now()
	h.dispatch(runID)
	if during != nil {
		waitFor(t, "the agent's init line", func() bool {
			for _, e := range h.turns(runID) {
				if e.Kind == bus.TurnInit {
					return true
				}
			}
			return false
		})
		during(h)
	}
	end, _ := h.finished()
	took := time.Since(start)
	peak := heap.Stop()
	runtime.ReadMemStats(&after)
	r := chaosRun{end: end, turns: h.turns(runID), allocated: after.TotalAlloc - before.TotalAlloc, peakHeap: peak, took: took}
	if end.Error != "" && end.Status == bus.RunSucceeded {
		t.Errorf("a succeeded run with an error: %q", end.Error)
	}
	if end.Status != bus.RunSucceeded && end.Error == "" {
		t.Errorf("a %s run without an error", end.Status)
	}
	noProcessesLeft(t, runID)
	return r
}

// waitFor polls cond until it holds, failing after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// noProcessesLeft waits until no live process carries the run's marker
// (SIGKILL is delivered asynchronously), failing after testTimeout.
func noProcessesLeft(t *testing.T, runID string) {
	t.Helper()
	waitFor(t, "the run's processes to die", func() bool {
		pids, err := procscan.Find("SYMPHONY_RUN_ID", runID)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// killDaemonAtCleanup kills the daemon whose pid the fake will write to
// pidFile when the test ends, whichever way it ends (registered before the
// run, so a failing test leaks nothing either).
func killDaemonAtCleanup(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		if raw, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// daemonPID reads the pid the fake's daemon left in pidFile.
func daemonPID(t *testing.T, pidFile string) int {
	t.Helper()
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("no daemon pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func expect(t *testing.T, r chaosRun, status bus.RunStatus, errParts ...string) {
	t.Helper()
	if r.end.Status != status {
		t.Errorf("status %s (%q), want %s", r.end.Status, r.end.Error, status)
	}
	for _, p := range errParts {
		if !strings.Contains(r.end.Error, p) {
			t.Errorf("error %q does not say %q", r.end.Error, p)
		}
	}
	t.Logf("%s: %s %q in %v, %d turn events, %.1f MiB allocated, live heap peak +%.1f MiB", t.Name(), r.end.Status, r.end.Error,
		r.took.Round(time.Millisecond), len(r.turns), float64(r.allocated)/(1<<20), float64(r.peakHeap)/(1<<20))
}

func TestChaosHang(t *testing.T) {
	bin := fakeagent.Build(t)
	t.Run("turn timeout", func(t *testing.T) {
		r := chaos(t, bin, "run-hang-timeout", func(c *bus.Config) { c.Claude.TurnTimeoutMS = 300 }, nil,
			"FAKEAGENT_MODE=hang", "FAKEAGENT_EVENTS=3")
		expect(t, r, bus.RunTimedOut, "no output from the agent for 300ms")
		if r.end.Signal != "terminated" || r.count(bus.TurnText) != 1 {
			t.Errorf("signal %q, texts %d", r.end.Signal, r.count(bus.TurnText))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		r := chaos(t, bin, "run-hang-cancel", nil, func(h *harness) {
			res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-hang-cancel", Reason: "issue moved to Done", Status: bus.RunCanceled})
			if err != nil || !res.Found {
				t.Errorf("cancel: %+v %v", res, err)
			}
		}, "FAKEAGENT_MODE=hang")
		expect(t, r, bus.RunCanceled, "issue moved to Done")
		if r.end.Signal != "terminated" {
			t.Errorf("signal %q", r.end.Signal)
		}
	})
	t.Run("stall cancel of a SIGTERM-proof agent", func(t *testing.T) {
		r := chaos(t, bin, "run-hang-stalled", nil, func(h *harness) {
			_, _ = bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-hang-stalled", Reason: "no agent event for 300000ms", Status: bus.RunStalled})
		}, "FAKEAGENT_MODE=hang", "FAKEAGENT_IGNORE_SIGTERM=1")
		expect(t, r, bus.RunStalled, "no agent event")
		if r.end.Signal != "killed" {
			t.Errorf("signal %q, want killed after the grace period", r.end.Signal)
		}
	})
}

func TestChaosCrash(t *testing.T) {
	bin := fakeagent.Build(t)
	t.Run("exit status", func(t *testing.T) {
		r := chaos(t, bin, "run-crash", nil, nil, "FAKEAGENT_MODE=crash", "FAKEAGENT_EXIT_CODE=3")
		expect(t, r, bus.RunFailed, "exit status 3", "without a result", "fakeagent: simulated crash")
		if r.end.ExitCode == nil || *r.end.ExitCode != 3 || r.first(bus.TurnStderr) == nil {
			t.Errorf("exit code %v, stderr event %v", r.end.ExitCode, r.first(bus.TurnStderr))
		}
	})
	t.Run("signal", func(t *testing.T) {
		r := chaos(t, bin, "run-crash-signal", nil, nil, "FAKEAGENT_MODE=crash", "FAKEAGENT_CRASH_SIGNAL=KILL")
		expect(t, r, bus.RunFailed, "signal: killed", "without a result")
		if r.end.Signal != "killed" {
			t.Errorf("signal %q", r.end.Signal)
		}
	})
	t.Run("exit 0 without a result", func(t *testing.T) {
		r := chaos(t, bin, "run-exit0", nil, nil, "FAKEAGENT_MODE=exit0_no_result")
		expect(t, r, bus.RunFailed, "the agent exited without a result")
		if r.end.ExitCode == nil || *r.end.ExitCode != 0 || r.count(bus.TurnText) != 3 {
			t.Errorf("exit code %v, texts %d", r.end.ExitCode, r.count(bus.TurnText))
		}
	})
	t.Run("error result", func(t *testing.T) {
		r := chaos(t, bin, "run-error-result", nil, nil, "FAKEAGENT_MODE=error_result")
		expect(t, r, bus.RunFailed, "the agent reported an error (API status 500)", "API Error: 500")
	})
	t.Run("asks for permission", func(t *testing.T) {
		r := chaos(t, bin, "run-permission", nil, nil, "FAKEAGENT_MODE=ask_permission")
		expect(t, r, bus.RunBlocked, "denied permission for Write", "needs an operator")
	})
}

func TestChaosGarbage(t *testing.T) {
	bin := fakeagent.Build(t)
	for _, mode := range []string{"garbage", "binary"} {
		t.Run(mode, func(t *testing.T) {
			r := chaos(t, bin, "run-"+mode, nil, nil, "FAKEAGENT_MODE="+mode, "FAKEAGENT_EVENTS=60", "FAKEAGENT_SIZE=512")
			expect(t, r, bus.RunSucceeded)
			if r.count(bus.TurnParseError) != 60 || r.count(bus.TurnText) != 20 || r.count(bus.TurnToolResult) != 20 || r.count(bus.TurnOutcome) != 1 {
				t.Errorf("parse errors %d (want 60), texts %d, tool results %d, results %d", r.count(bus.TurnParseError),
					r.count(bus.TurnText), r.count(bus.TurnToolResult), r.count(bus.TurnOutcome))
			}
			if r.end.Usage == nil || r.end.Usage.OutputTokens != 600 || r.end.CostUSD == nil || *r.end.CostUSD != 0.01 {
				t.Errorf("usage %+v cost %v", r.end.Usage, r.end.CostUSD)
			}
		})
	}
}

// TestChaosHugeLine: one 50 MB line (the cap is 10 MiB) is dropped and
// counted, the events after it are read, and it is never held whole.
func TestChaosHugeLine(t *testing.T) {
	bin := fakeagent.Build(t)
	const size = 50_000_000
	r := chaos(t, bin, "run-huge", nil, nil, "FAKEAGENT_MODE=huge_line", "FAKEAGENT_LINE_BYTES="+strconv.Itoa(size), "FAKEAGENT_EVENTS=6")
	expect(t, r, bus.RunSucceeded)
	pe := r.first(bus.TurnParseError)
	if r.count(bus.TurnParseError) != 1 || pe == nil || !strings.Contains(pe.Text, "line longer than 10485760 bytes dropped") {
		t.Errorf("parse errors %d: %+v", r.count(bus.TurnParseError), pe)
	}
	if r.count(bus.TurnText) != 2 || r.count(bus.TurnToolUse) != 2 || r.count(bus.TurnOutcome) != 1 {
		t.Errorf("the events after the long line: %d texts, %d tool uses, %d results", r.count(bus.TurnText), r.count(bus.TurnToolUse), r.count(bus.TurnOutcome))
	}
	// Holding the line whole would keep at least its 50 MB live; the cap
	// keeps one buffer of about 10 MiB (plus its last copy while growing).
	if r.peakHeap >= size {
		t.Errorf("the live heap grew by %d bytes while a %d-byte line went by: it was buffered whole", r.peakHeap, size)
	}
}

// TestChaosStderrFlood: a flood of stderr is drained (the child is never
// blocked on it), only the 8 KiB tail is kept, and memory stays bounded.
func TestChaosStderrFlood(t *testing.T) {
	bin := fakeagent.Build(t)
	n := chaosStderrBytes(t)
	flood := "FAKEAGENT_STDERR_BYTES=" + strconv.FormatInt(n, 10)
	t.Run("then a good result", func(t *testing.T) {
		r := chaos(t, bin, "run-flood", nil, nil, "FAKEAGENT_MODE=stderr_flood", flood)
		expect(t, r, bus.RunSucceeded)
		t.Logf("%d MiB of stderr in %v: %.0f MiB/s", n>>20, r.took.Round(time.Millisecond), float64(n)/(1<<20)/r.took.Seconds())
		if r.allocated > 64<<20 || r.peakHeap > 16<<20 {
			t.Errorf("%d bytes allocated, live heap +%d bytes while %d bytes of stderr went by", r.allocated, r.peakHeap, n)
		}
	})
	t.Run("then a crash", func(t *testing.T) {
		r := chaos(t, bin, "run-flood-crash", nil, nil, "FAKEAGENT_MODE=crash", flood)
		expect(t, r, bus.RunFailed, "without a result: fakeagent: simulated crash (mode crash)")
		se := r.first(bus.TurnStderr)
		if se == nil {
			t.Fatal("no stderr event")
		}
		crash := "fakeagent: simulated crash (mode crash)\n"
		total := n + int64(len(crash))
		prefix := "[… " + strconv.FormatInt(total-StderrTail, 10) + " bytes]"
		if !strings.HasPrefix(se.Text, prefix) || len(se.Text) != len(prefix)+StderrTail ||
			!strings.HasSuffix(se.Text, fakeagent.StderrFloodEnd+crash) {
			t.Errorf("stderr kept: %d bytes, %.60q … %.80q; want %s and the last %d bytes", len(se.Text), se.Text, se.Text[max(0, len(se.Text)-80):], prefix, StderrTail)
		}
		if r.allocated > 64<<20 || r.peakHeap > 16<<20 {
			t.Errorf("%d bytes allocated, live heap +%d bytes while %d bytes of stderr went by", r.allocated, r.peakHeap, n)
		}
	})
}

// TestChaosForkDaemon: an agent that starts a daemon and exits. Whatever
// the daemon does — stay in the agent's process group or leave it for its
// own session, close the agent's output or hold it open — the run ends with
// its result and the daemon is dead afterwards.
func TestChaosForkDaemon(t *testing.T) {
	bin := fakeagent.Build(t)
	cases := []struct {
		name               string
		setsid, stdio, env string
	}{
		{"in the group", "0", "null", "keep"},
		{"in the group, holding stdout", "0", "inherit", "keep"},
		{"own session", "1", "null", "keep"},
		{"own session, holding stdout", "1", "inherit", "keep"},
		// Out of the group and without the run marker: only its hold on
		// the agent's pipes finds it (DrainGrace after the agent exits).
		{"own session, holding stdout, no marker", "1", "inherit", "scrub"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			killDaemonAtCleanup(t, pidFile)
			runID := "run-daemon-" + strconv.Itoa(i)
			r := chaos(t, bin, runID, nil, nil, "FAKEAGENT_MODE=fork_daemon", "FAKEAGENT_PIDFILE="+pidFile,
				"FAKEAGENT_DAEMON_SETSID="+c.setsid, "FAKEAGENT_DAEMON_STDIO="+c.stdio, "FAKEAGENT_DAEMON_ENV="+c.env)
			pid := daemonPID(t, pidFile)
			expect(t, r, bus.RunSucceeded)
			waitFor(t, "the daemon to die", func() bool { return !alive(pid) })
		})
	}
}

// cpuTime is the CPU time this process has used so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestChaosShutdownDoesNotSpin: symphony shutting down while an agent
// ignores SIGTERM waits out KillGrace without burning a core. (The runner
// used to select on the closed ctx.Done in a loop for the whole grace.)
func TestChaosShutdownDoesNotSpin(t *testing.T) {
	bin := fakeagent.Build(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	env := append(os.Environ(), "FAKEAGENT_MODE=hang", "FAKEAGENT_IGNORE_SIGTERM=1", "FAKEAGENT_EVENTS=0")
	spec := turnSpec{argv: []string{bin, "-p", "--output-format", "stream-json", "--verbose"}, dir: t.TempDir(), env: env,
		stdin: "prompt", silence: time.Hour}
	var before time.Duration
	out := runTurn(ctx, spec, nil, func(ev bus.TurnEvent) error {
		if ev.Kind == bus.TurnInit {
			before = cpuTime(t)
			cancel()
		}
		return nil
	})
	used := cpuTime(t) - before
	if out.status != bus.RunInterrupted || out.signal != "killed" {
		t.Errorf("outcome %s %q, signal %q", out.status, out.err, out.signal)
	}
	t.Logf("CPU used while waiting %v for a SIGTERM-proof agent: %v", KillGrace, used)
	if used > KillGrace/2 {
		t.Errorf("%v of CPU while waiting %v for the agent to die: the loop spins", used, KillGrace)
	}
}

// TestChaosDrainLosesNothing: an agent that exits while a daemon without
// the run marker holds its stdout, with its output still queued behind a
// slow bus when the drain grace runs out: every event is still recorded.
func TestChaosDrainLosesNothing(t *testing.T) {
	bin := fakeagent.Build(t)
	const runID = "run-drain"
	pidFile := filepath.Join(t.TempDir(), "pid")
	killDaemonAtCleanup(t, pidFile)
	// 12 events of 2-4 KB (34 KB): the pipe (64 KiB) holds them all, so
	// the agent can exit before the bus takes anything.
	env := append(os.Environ(), "FAKEAGENT_MODE=fork_daemon", "FAKEAGENT_EVENTS=12", "FAKEAGENT_SIZE=2000",
		"FAKEAGENT_PIDFILE="+pidFile, "FAKEAGENT_DAEMON_STDIO=inherit", "FAKEAGENT_DAEMON_ENV=scrub", markerEnv+"="+runID)
	spec := turnSpec{argv: []string{bin, "-p", "--output-format", "stream-json", "--verbose"}, dir: t.TempDir(), env: env,
		stdin: "prompt", silence: time.Hour, runID: runID}
	kinds := map[bus.TurnEventKind]int{}
	out := runTurn(t.Context(), spec, nil, func(ev bus.TurnEvent) error {
		if len(kinds) == 0 {
			// The agent is gone before the bus took anything.
			noProcessesLeft(t, runID)
		}
		// A slow bus: the drain grace runs out with events still queued.
		time.Sleep(DrainGrace / 8)
		kinds[ev.Kind]++
		return nil
	})
	pid := daemonPID(t, pidFile)
	if out.status != bus.RunSucceeded || kinds[bus.TurnInit] != 1 || kinds[bus.TurnText] != 4 || kinds[bus.TurnToolUse] != 4 ||
		kinds[bus.TurnToolResult] != 4 || kinds[bus.TurnOutcome] != 1 {
		t.Errorf("outcome %s %q, events %v", out.status, out.err, kinds)
	}
	waitFor(t, "the daemon to die", func() bool { return !alive(pid) })
}

// TestPipeEmpty: the drain's guard tells a pipe with unread bytes from an
// empty one.
func TestPipeEmpty(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if !pipeEmpty(r) {
		t.Error("a new pipe is not empty")
	}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if pipeEmpty(r) {
		t.Error("a pipe holding 3 bytes is empty")
	}
	if _, err := io.ReadFull(r, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if !pipeEmpty(r) {
		t.Error("a pipe read to its end is not empty")
	}
	r.Close()
	if !pipeEmpty(r) {
		t.Error("a closed pipe must count as empty")
	}
}
