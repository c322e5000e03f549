package workspace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestRootLocks: a root is held once per process lifetime; another holder
// (here a second set of locks, as a second instance would be) is refused
// with the root and the holder's pid, until the first lets go.
func TestRootLocks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	var first, second RootLocks
	if err := first.Hold(root); err != nil {
		t.Fatal(err)
	}
	if err := first.Hold(root + "/"); err != nil {
		t.Fatalf("holding again: %v", err)
	}
	err := second.Hold(root)
	var inUse *RootInUseError
	if !errors.As(err, &inUse) || inUse.Root != root || inUse.PID != os.Getpid() || !strings.Contains(err.Error(), "workspace root "+root+" is in use by process") {
		t.Fatalf("second holder: %v", err)
	}
	if _, err := Path(root, RootLockName); err == nil {
		t.Fatal("the lock file's name passes the identifier rule")
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := second.Hold(root); err != nil {
		t.Fatalf("after release: %v", err)
	}
	_ = second.Release()
}

// TestComponentRefusesARootHeldElsewhere: a workspace component whose root
// another instance holds refuses every request with workspace_root_in_use
// and leaves the other's workspace alone.
func TestComponentRefusesARootHeldElsewhere(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	var other RootLocks
	if err := other.Hold(root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Release() })
	theirs := filepath.Join(root, "ABC-1")
	if err := os.MkdirAll(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	comp, err := New(Options{Bus: b, Environ: func() []string { return testEnviron(t) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = b.Close(context.Background())
	})
	if _, err := bus.Put(t.Context(), b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 1, Config: cfgWith(root, bus.HooksConfig{})}); err != nil {
		t.Fatal(err)
	}
	var re *bus.RemoteError
	deadline := time.Now().Add(testTimeout)
	for {
		rctx, rcancel := context.WithTimeout(t.Context(), time.Second)
		_, err = bus.Ask(rctx, b, bus.WorkspaceRemove, bus.RemoveWorkspace{Issue: issue("ABC-1"), RunID: "run-1"})
		rcancel()
		if (errors.As(err, &re) && re.Code != bus.CodeNoConfig) || time.Now().After(deadline) {
			break
		}
	}
	if !errors.As(err, &re) || re.Code != bus.CodeRootInUse || !strings.Contains(err.Error(), root) {
		t.Fatalf("remove on a root held elsewhere: %v", err)
	}
	if _, err := bus.Ask(t.Context(), b, bus.WorkspacePrepare, bus.PrepareWorkspace{Issue: issue("ABC-2"), RunID: "run-2"}); !errors.As(err, &re) || re.Code != bus.CodeRootInUse {
		t.Errorf("prepare on a root held elsewhere: %v", err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("the other instance's workspace: %v", err)
	}
}
