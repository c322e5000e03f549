package workspace

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

func TestComponentOverTheBus(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "ws")
	comp, err := New(Options{Bus: b, Environ: func() []string { return testEnviron(t) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events, err := bus.Subscribe(ctx, b, bus.WorkspaceHookEvents)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = b.Close(context.Background())
	})
	cfg := cfgWith(root, bus.HooksConfig{AfterCreate: "echo hello", BeforeRun: "echo nope >&2; exit 4", TimeoutMS: 10000})
	if _, err := bus.Put(t.Context(), b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 1, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	iss := issue("ABC-9")
	var ready bus.WorkspaceReady
	deadline := time.Now().Add(testTimeout)
	for {
		// The component may still be starting: ask until it has the config.
		rctx, rcancel := context.WithTimeout(t.Context(), time.Second)
		ready, err = bus.Ask(rctx, b, bus.WorkspacePrepare, bus.PrepareWorkspace{Issue: iss, RunID: "run-1"})
		rcancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || !ready.CreatedNow || ready.Path != filepath.Join(root, "ABC-9") {
		t.Fatalf("prepare: %+v %v", ready, err)
	}
	wantSubject, _ := bus.WorkspaceHookEvents.Subject("run-1", bus.HookAfterCreate)
	want := []bus.HookPhase{bus.HookStarted, bus.HookFinished}
	for _, phase := range want {
		select {
		case m := <-events.C():
			ev := m.Data
			if ev.Phase != phase || ev.Hook != bus.HookAfterCreate || ev.Issue.ID != iss.ID || ev.Issue.Identifier != "ABC-9" || ev.RunID != "run-1" || m.Subject != wantSubject {
				t.Errorf("event %+v on %s", ev, m.Subject)
			}
			if phase == bus.HookFinished && ev.Output != "hello\n" {
				t.Errorf("output %q", ev.Output)
			}
		case <-time.After(testTimeout):
			t.Fatal("no hook event")
		}
	}
	_, err = bus.Ask(t.Context(), b, bus.WorkspaceHook, bus.RunHook{Hook: bus.HookBeforeRun, Issue: iss})
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Code != "hook_failed" {
		t.Errorf("before_run failure: %v", err)
	}
	bad := issue("../etc")
	if _, err := bus.Ask(t.Context(), b, bus.WorkspacePrepare, bus.PrepareWorkspace{Issue: bad}); !errors.As(err, &re) || re.Code != "unsafe_identifier" {
		t.Errorf("unsafe identifier: %v", err)
	}
	rm, err := bus.Ask(t.Context(), b, bus.WorkspaceRemove, bus.RemoveWorkspace{Issue: iss})
	if err != nil || !rm.Existed {
		t.Errorf("remove: %+v %v", rm, err)
	}
}

// TestLongHookOutputKeepsTheError: a hook that prints a lot and then fails
// is reported by its last line, in the error and in the published event.
func TestLongHookOutputKeepsTheError(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	comp, err := New(Options{Bus: b, Environ: func() []string { return testEnviron(t) }})
	if err != nil {
		t.Fatal(err)
	}
	events, err := bus.Subscribe(t.Context(), b, bus.WorkspaceHookEvents)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgWith(t.TempDir(), bus.HooksConfig{TimeoutMS: 10000})
	script := `head -c 100000 /dev/zero | tr '\0' x; echo; echo "fatal: the real reason" >&2; exit 3`
	_, err = comp.runner(bus.ConfigSnapshot{Config: cfg}, "run-2", "")(t.Context(), bus.HookBeforeRun, script, issue("ABC-12"), t.TempDir())
	var he *HookError
	if !errors.As(err, &he) || he.ExitCode != 3 || !strings.HasSuffix(err.Error(), "fatal: the real reason") {
		t.Fatalf("err = %v", err)
	}
	if !strings.HasSuffix(he.Output, "fatal: the real reason\n") || len(he.Output) > MaxHookOutput+100 {
		t.Errorf("kept output: %d bytes, ends %q", len(he.Output), he.Output[max(0, len(he.Output)-60):])
	}
	for {
		select {
		case m := <-events.C():
			ev := m.Data
			if ev.Phase == bus.HookStarted {
				continue
			}
			if ev.Phase != bus.HookFailed || ev.ExitCode != 3 || !strings.HasSuffix(ev.Output, "fatal: the real reason\n") ||
				!strings.Contains(ev.Error, "fatal: the real reason") || len(ev.Output) > LogHookOutput+40 {
				t.Errorf("event: phase %s exit %d error %q output %d bytes ending %q", ev.Phase, ev.ExitCode, ev.Error, len(ev.Output), ev.Output[max(0, len(ev.Output)-60):])
			}
			return
		case <-time.After(testTimeout):
			t.Fatal("no hook event")
		}
	}
}

// TestHookLogLinesCarryRunAndSession: every log line of a run's hook
// carries its run_id and, once the agent has one, its session_id, as
// every other line of the run does (SPEC §13.1).
func TestHookLogLinesCarryRunAndSession(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	var logged syncBuffer
	comp, err := New(Options{Bus: b, Log: slog.New(slog.NewTextHandler(&logged, nil)), Environ: func() []string { return testEnviron(t) }})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgWith(t.TempDir(), bus.HooksConfig{TimeoutMS: 10000})
	for _, script := range []string{"true", "exit 4"} {
		_, _ = comp.runner(bus.ConfigSnapshot{Config: cfg}, "run-7", "sess-9")(t.Context(), bus.HookAfterRun, script, issue("ABC-7"), t.TempDir())
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	hookLines := 0
	for _, l := range lines {
		if !strings.Contains(l, "hook=") {
			continue
		}
		hookLines++
		if !strings.Contains(l, "run_id=run-7") || !strings.Contains(l, "session_id=sess-9") {
			t.Errorf("hook line without run_id or session_id: %s", l)
		}
	}
	if hookLines < 4 {
		t.Errorf("%d hook lines, want started and ended for both hooks:\n%s", hookLines, logged.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
