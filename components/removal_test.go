package components_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/scheduler"
	"github.com/symphony-oss/symphony/components/workspace"
)

// removalWorld is the real scheduler and the real workspace component on a
// real bus, with the tracker and the agent runner stood in for.
type removalWorld struct {
	t    *testing.T
	b    *bus.Bus
	root string
	mu   sync.Mutex
	iss  map[string]bus.Issue
	// dispatches are the issues dispatched, in order, each with whether
	// its workspace directory existed at that moment.
	dispatches []dispatched
	live       map[string]bus.Dispatch
	asks       int // candidate lists served
}

// logBuf is a log sink a test reads while the scheduler writes to it.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// has reports whether one logged line holds every part.
func (l *logBuf) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.Lines(l.buf.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

type dispatched struct {
	id        string
	workspace bool
}

func (w *removalWorld) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, d := range w.dispatches {
		if d.id == id {
			n++
		}
	}
	return n
}

func (w *removalWorld) set(id, state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.iss[id] = bus.Issue{ID: id, Identifier: id, Title: "t " + id, State: state, Dispatchable: true}
}

// within polls cond for a generous bound (no fixed sleep decides a result).
func (w *removalWorld) within(d time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refresh has the scheduler poll the tracker now and waits until that
// poll's tick has run (a command answered after the candidate list was
// served: the scheduler does one thing at a time).
func (w *removalWorld) refresh() {
	w.t.Helper()
	w.mu.Lock()
	before := w.asks
	w.mu.Unlock()
	w.control(bus.ControlRefresh)
	w.within(30*time.Second, "a poll", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.asks > before })
	w.control(bus.ControlResume)
}

// control sends an operator command, again until the scheduler serves
// them (it may not yet at the start).
func (w *removalWorld) control(action bus.ControlAction) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(w.t.Context(), 5*time.Second)
		_, err := bus.Ask(ctx, w.b, bus.SchedulerControl, bus.Control{Action: action})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: %v", action, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBeforeRemoveDoesNotStallScheduling: an issue goes terminal while its
// agent runs; reconciliation stops the run and the workspace component
// runs its before_remove, a real hook that blocks on a fifo the test
// holds. Meanwhile another issue is dispatched, and the first, reopened,
// is not dispatched until its removal has finished (its workspace is gone
// when the new run is dispatched). The scheduler used to wait for the
// removal in its loop: nothing else was dispatched until the hook ended.
func TestBeforeRemoveDoesNotStallScheduling(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "ws")
	fifo := filepath.Join(dir, "R-1.fifo")
	started := filepath.Join(dir, "before-remove-started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// However the test ends, the hook is let go (a no-op once it is).
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
	})
	b, err := bus.Open(t.Context(), bus.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	w := &removalWorld{t: t, b: b, root: root, iss: map[string]bus.Issue{}, live: map[string]bus.Dispatch{}}
	w.set("R-1", "Todo")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = b.Close(context.Background())
	})
	serveList := func(req bus.Request[bus.IssuesByStates, bus.IssueList], count bool) {
		if _, err := bus.ServeN(ctx, b, req, 4, func(_ context.Context, _ string, q bus.IssuesByStates) (bus.IssueList, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if count {
				w.asks++
			}
			out := bus.IssueList{FetchedAt: time.Now()}
			for _, i := range w.iss {
				for _, s := range q.States {
					if i.State == s {
						out.Issues = append(out.Issues, i)
					}
				}
			}
			return out, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	serveList(bus.TrackerCandidates, true)
	serveList(bus.TrackerTerminal, false)
	if _, err := bus.ServeN(ctx, b, bus.TrackerRefresh, 4, func(_ context.Context, _ string, q bus.IssuesByIDs) (bus.IssueList, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		out := bus.IssueList{FetchedAt: time.Now()}
		for _, id := range q.IDs {
			if i, ok := w.iss[id]; ok {
				out.Issues = append(out.Issues, i)
			}
		}
		return out, nil
	}); err != nil {
		t.Fatal(err)
	}
	// The agent runner: a dispatch makes the workspace (as its prepare
	// would) and runs until canceled; a cancel ends the run.
	if _, err := bus.ServeN(ctx, b, bus.AgentDispatch, 4, func(_ context.Context, _ string, d bus.Dispatch) (bus.DispatchAccepted, error) {
		path := filepath.Join(root, d.Issue.Identifier)
		_, statErr := os.Lstat(path)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return bus.DispatchAccepted{}, err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.dispatches = append(w.dispatches, dispatched{id: d.Issue.ID, workspace: statErr == nil})
		w.live[d.RunID] = d
		return bus.DispatchAccepted{RunID: d.RunID}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ServeN(ctx, b, bus.AgentCancel, 4, func(_ context.Context, _ string, req bus.CancelRun) (bus.CancelResult, error) {
		w.mu.Lock()
		d, ok := w.live[req.RunID]
		delete(w.live, req.RunID)
		w.mu.Unlock()
		if ok {
			ev := bus.RunEvent{RunID: d.RunID, Event: bus.RunFinished, At: time.Now(), Issue: d.Issue.Ref(), Status: req.Status}
			if _, err := bus.PublishDurable(context.Background(), b, bus.RunEvents, ev, "", d.RunID, string(bus.RunFinished)); err != nil {
				return bus.CancelResult{}, err
			}
		}
		return bus.CancelResult{Found: ok}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.AgentRuns, func(context.Context, string, bus.ListRuns) (bus.LiveRuns, error) {
		return bus.LiveRuns{Runs: []bus.Dispatch{}}, nil
	}); err != nil {
		t.Fatal(err)
	}

	cfg := bus.Config{
		Tracker: bus.TrackerConfig{ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"},
			Provider: bus.TrackerProvider{APIKey: bus.NewSecret("LINEAR_API_KEY", "")}},
		Polling:   bus.PollingConfig{IntervalMS: 3600000},
		Workspace: bus.WorkspaceConfig{Root: root},
		// The hook waits for the test, not for a time: up to the default
		// timeout of 60 s, longer than any bound below.
		Hooks: bus.HooksConfig{TimeoutMS: 60000, BeforeRemove: `: > ` + started + `; if [ -p ` + fifo + ` ] && [ "$ISSUE_IDENTIFIER" = R-1 ]; then cat ` + fifo + ` > /dev/null; rm -f ` + fifo + `; fi`},
		Agent: bus.AgentConfig{Kind: "claude", MaxConcurrentAgents: 4, MaxRetryBackoffMS: 300000, MaxConcurrentAgentsByState: map[string]int{}},
	}
	if _, err := bus.Put(t.Context(), b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 1, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir() // a light login shell for the hook
	ws, err := workspace.New(workspace.Options{Bus: b, Environ: func() []string { return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home} }})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	sched, err := scheduler.New(scheduler.Options{Bus: b, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Run(context.Context) error }{ws, sched} {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}

	const prompt = 30 * time.Second // generous; the hook would hold a waiting loop for 60 s
	w.within(prompt, "R-1 dispatched", func() bool { w.refresh(); return w.count("R-1") == 1 })
	// R-1 goes terminal: a poll's reconcile stops its run; the run's end
	// removes its workspace, and before_remove blocks on the fifo.
	w.set("R-1", "Done")
	w.refresh()
	w.within(prompt, "before_remove started", func() bool { _, err := os.Stat(started); return err == nil })
	began := time.Now()

	w.set("N-1", "Todo")
	w.within(prompt, "N-1 dispatched while R-1's before_remove runs", func() bool { w.refresh(); return w.count("N-1") == 1 })
	t.Logf("N-1 dispatched %v after R-1's before_remove began (the hook still runs)", time.Since(began).Round(time.Millisecond))

	// Reopened while its removal runs: polls pass R-1 over.
	w.set("R-1", "Todo")
	w.within(prompt, "a poll passed R-1 over for its removal", func() bool {
		w.refresh()
		return logs.has("dispatch waits for the issue's workspace removal", "issue_id=R-1")
	})
	w.refresh()
	if n := w.count("R-1"); n != 1 {
		t.Fatalf("R-1 dispatched %d times while its before_remove ran", n)
	}
	if _, err := os.Lstat(filepath.Join(root, "R-1")); err != nil {
		t.Fatalf("R-1's workspace is gone while before_remove still runs: %v", err)
	}

	// The hook ends: the workspace goes, then R-1 is dispatched again
	// (no poll needed), into no leftover workspace.
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	w.within(prompt, "R-1 dispatched again after its removal", func() bool { return w.count("R-1") == 2 })
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dispatches {
		if d.id == "R-1" && d.workspace {
			t.Errorf("R-1 dispatched while its old workspace was still there: %+v", w.dispatches)
		}
	}
	if _, err := os.Lstat(fifo); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hook did not finish: %v", err)
	}
}
