package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestPruneAsksTheRunningPruner: against a running instance, `symphony
// prune` asks its pruner over the listener with the control token. Without
// --nats-allow-controls it says so and deletes nothing (the read token may
// not purge); with it, the old run is deleted and the recent one kept, and
// the control hint the instance prints pauses dispatch when pasted into a
// shell.
func TestPruneAsksTheRunningPruner(t *testing.T) {
	wf := writeWorkflow(t)
	dataDir := filepath.Join(filepath.Dir(wf), ".symphony")
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	recordRun(t, b, "run-old", "OLD-1", time.Now().Add(-48*time.Hour), bus.RunSucceeded)
	recordRun(t, b, "run-new", "NEW-1", time.Now().Add(-time.Minute), bus.RunSucceeded)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A listener without controls: refused, nothing deleted.
	p := start(t, "run", wf, "--nats-listen", "127.0.0.1:0")
	p.waitFor(t, "symphony running")
	code, out := runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "1d")
	if code == 0 || !strings.Contains(out, "--nats-allow-controls") || strings.Contains(out, "deleted 1") {
		t.Errorf("prune without the control token: exit %d\n%s", code, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.all)
	}

	p = start(t, "run", wf, "--nats-listen", "127.0.0.1:0", "--nats-allow-controls")
	// The hint is printed (stdout) and "running" logged (stderr): they
	// arrive in either order.
	hint := p.waitForEach(t, "operator commands over NATS", "symphony running")["operator commands over NATS"]
	code, out = runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "1d", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete run-old") || !strings.Contains(out, "1 run(s) older than 1d would be deleted; 1 kept") {
		t.Errorf("dry prune through the running instance: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "1d")
	if code != 0 || !strings.Contains(out, "deleted run-old") || !strings.Contains(out, "deleted 1 run(s) older than 1d") {
		t.Errorf("prune through the running instance: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "runs", "--json")
	if code != 0 || strings.Contains(out, "run-old") || !strings.Contains(out, "run-new") {
		t.Errorf("runs after the prune: exit %d\n%s", code, out)
	}

	// The printed control command, pasted into a shell, pauses dispatch.
	cmdline := hint[strings.Index(hint, "NATS_USER="):]
	nats, err := exec.Command("go", "tool", "-n", "nats").Output()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	sh := exec.CommandContext(ctx, "bash", "-c", strings.Replace(cmdline, "go tool nats ", strings.TrimSpace(string(nats))+" ", 1))
	sh.Env = append(sh.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "NATS_CONTEXT=")
	res, err := sh.CombinedOutput()
	if err != nil || !strings.Contains(string(res), `"paused":true`) {
		t.Errorf("the printed control command: %v\n%s", err, res)
	}
	control, err := os.ReadFile(filepath.Join(dataDir, bus.ControlTokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.all)
	}
	if !strings.Contains(hint, "$(cat ") || strings.Contains(p.all.String(), strings.TrimSpace(string(control))) {
		t.Errorf("the control token must be read from its file, never printed: %s", hint)
	}
	if _, err := os.Stat(filepath.Join(dataDir, bus.ControlTokenFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control token file left behind after a clean stop: %v", err)
	}
}
