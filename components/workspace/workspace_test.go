package workspace

import (
	"context"
	"errors"
	"path/filepath"
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
