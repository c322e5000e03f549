package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// TestRunSurvivesAClosedLogPipe is `symphony run … | head -2` with head
// long gone: the real binary runs with stdout and stderr on a pipe whose
// read end is closed before it starts. Every write to them fails (EPIPE);
// the process must not die of SIGPIPE. After the pipe is closed it
// dispatches an issue, whose before_run hook and fake agent run to the
// end; /metrics counts the failed log writes; SIGTERM still stops it
// cleanly (exit 0). The hook also checks that SIGPIPE reaches its
// children with its default action (`yes | head -1`: yes dies of
// SIGPIPE, status 141), which it would not if Symphony ignored SIGPIPE
// instead of catching it.
func TestRunSurvivesAClosedLogPipe(t *testing.T) { runWithBrokenOutput(t, false) }

// TestRunSurvivesAnUnreadLogPipe is `symphony run … | less` with less
// stopped: stdout and stderr are a pipe (of one page, 4 KiB) that is
// open but never read, and debug logging fills it at once. A log write
// must not wait for the reader: the issue is still dispatched and run, and
// SIGTERM still stops the process within the bounded flush at exit.
func TestRunSurvivesAnUnreadLogPipe(t *testing.T) { runWithBrokenOutput(t, true) }

func runWithBrokenOutput(t *testing.T, unread bool) {
	agent := fakeagent.Build(t)
	dir := t.TempDir()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		t.Fatal(err)
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}}
polling: {interval_ms: 200}
workspace: {root: ws}
hooks:
  before_run: |
    yes | head -1 > /dev/null
    echo "${PIPESTATUS[0]}" > "../yes-status-$ISSUE_IDENTIFIER"
agent: {max_turns: 1}
claude: {command: %q}
---
Work on {{ issue.identifier }}.
`, agent))

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"run", wf, "--port", "0"}
	if unread {
		defer r.Close()
		const setPipeSize = 1031 // F_SETPIPE_SZ
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), setPipeSize, 4096); errno != 0 {
			t.Fatalf("F_SETPIPE_SZ: %v", errno)
		}
		args = append(args, "--log-level", "debug")
	} else {
		r.Close() // the reader (head) is gone before the first line
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// An empty HOME: the hook's login shell reads no profile.
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	alive := func(what string) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf("symphony run died %s: %v (%s)", what, err, cmd.ProcessState)
		default:
		}
	}

	// The dashboard's URL is in the data directory (stdout is gone).
	urlFile := filepath.Join(dir, ".symphony", "dashboard-url")
	var base string
	poll(t, "the dashboard URL", func() bool {
		alive("before the dashboard was up")
		b, err := os.ReadFile(urlFile)
		base = strings.TrimSpace(string(b))
		return err == nil && base != ""
	})
	failedWrites := regexp.MustCompile(`(?m)^symphony_log_write_errors_total\{reason="failed"\} (\d+)$`)
	counted := func() int {
		body := httpGet(t, base+"/metrics")
		m := failedWrites.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no symphony_log_write_errors_total in /metrics:\n%s", body)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if !unread {
		poll(t, "failed log writes counted", func() bool { return counted() > 0 })
	}

	// Now an issue arrives: it is dispatched, hooked and run after the
	// pipe closed.
	arrived := time.Now()
	writeFile(t, filepath.Join(issues, "PIPE-1.md"), "---\ntitle: after the pipe closed\nstate: Todo\n---\n")
	poll(t, "the run to succeed", func() bool {
		alive("while the issue was dispatched")
		return strings.Contains(httpGet(t, base+"/api/v1/runs?status=succeeded"), `"PIPE-1"`)
	})
	before := counted()
	t.Logf("run succeeded %v after the issue was written; %d failed log writes counted", time.Since(arrived).Round(time.Millisecond), before)
	alive("after the run")
	status, err := os.ReadFile(filepath.Join(dir, "ws", "yes-status-PIPE-1"))
	if err != nil || strings.TrimSpace(string(status)) != "141" {
		t.Errorf("yes | head -1 in the hook: yes ended with %q (%v), want 141 (killed by SIGPIPE, its default action)", status, err)
	}
	if before == 0 && !unread {
		t.Error("no failed log write counted")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v, want a clean exit", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("symphony run did not stop after SIGTERM")
	}
}

// poll checks cond every 50 ms until it holds, for testTimeout at most.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
