package symphony_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bareMachine is a PATH holding only what a fresh Debian machine with Go
// has that the tasks need, plus fakes for id (root) and apt-get (records
// its arguments in the returned log instead of installing anything): no
// npm, no chromium, no git.
func bareMachine(t *testing.T) (path, aptLog string) {
	t.Helper()
	dir := t.TempDir()
	aptLog = filepath.Join(dir, "apt.log")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(goBin, filepath.Join(dir, "go")); err != nil {
		t.Fatal(err)
	}
	fakes := map[string]string{
		"id":      "#!/bin/sh\necho 0\n",
		"apt-get": "#!/bin/sh\necho \"$*\" >> '" + aptLog + "'\n",
	}
	for name, script := range fakes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, aptLog
}

// TestTestTaskInstallsWhatTheTestsNeed is the README's promise that
// `go tool task test` works on a fresh machine: on a PATH without npm,
// chromium or git, the test task's dependencies install all three with
// one apt-get update and one apt-get install (issue #19, item 10: it
// failed with "no chromium on PATH").
func TestTestTaskInstallsWhatTheTestsNeed(t *testing.T) {
	path, aptLog := bareMachine(t)
	task := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"tool", "task"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("task %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	// The test task installs packages before it tests (dry: nothing runs).
	out := task("--dry", "test")
	if i, j := strings.Index(out, "apt-get install"), strings.Index(out, "go test"); i < 0 || j < i {
		t.Fatalf("`task test` on a bare machine does not install system packages; dry run:\n%s", out)
	}

	// The system task installs every missing package, updating once.
	task("system")
	log, err := os.ReadFile(aptLog)
	if err != nil {
		t.Fatalf("apt-get was not called: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 || lines[0] != "update" {
		t.Fatalf("apt-get calls = %q, want update then one install", lines)
	}
	for _, pkg := range []string{"nodejs", "npm", "chromium", "git"} {
		if !strings.Contains(" "+lines[1]+" ", " "+pkg+" ") {
			t.Errorf("apt-get install %q does not install %s", lines[1], pkg)
		}
	}
}
