package fakeagent

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Package is the import path of the fake agent's main package.
const Package = "github.com/symphony-oss/symphony/testkit/cmd/fakeagent"

// Build compiles the fake agent into a temporary directory of tb and
// returns the binary's path. A separate binary rather than the test binary
// re-executed: the fake then behaves the same in every package's tests and
// can be used as claude.command by hand. It is built without the race
// detector (it stands in for the agent; it is not the code under test), and
// the build cache makes every build after the first one quick. The working
// directory must be inside this module, as it is in its tests.
func Build(tb testing.TB) string {
	tb.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("build the fake agent: no go command: %v", err)
	}
	out := filepath.Join(tb.TempDir(), "fakeagent")
	cmd := exec.Command(gobin, "build", "-o", out, Package)
	cmd.Env = os.Environ()
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build the fake agent: %v\n%s", err, b)
	}
	return out
}

// OpenGate makes a named pipe for FAKEAGENT_GATE in a temporary directory
// of tb and opens it for reading and writing: opening so never blocks,
// and the fakes' own opens do not wait for a writer. Writing n bytes lets
// n fakes go on; the pipe is closed when tb ends.
func OpenGate(tb testing.TB) (path string, gate *os.File) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "gate")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		tb.Fatalf("make the gate: %v", err)
	}
	gate, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatalf("open the gate: %v", err)
	}
	tb.Cleanup(func() { gate.Close() })
	return path, gate
}
