package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// guardrailsFlag is the reference implementation's acknowledgement flag,
// which its service unit passes.
const guardrailsFlag = "--i-understand-that-this-will-be-running-without-the-usual-guardrails"

// refPort returns a port that was free a moment ago: the reference's
// service unit names a fixed port, so these tests do too instead of 0.
func refPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// TestReferenceCommandLine starts the built binary as the reference
// implementation's service would be started — no subcommand, `--port N`
// and the workflow path, then the same from the workflow's directory with
// no path — checks that it serves the API on that port, and stops it with
// SIGTERM, which must end it with exit 0 (SPEC §17.7).
func TestReferenceCommandLine(t *testing.T) {
	cases := []struct {
		name string
		args func(wf string, port int) []string
		dir  bool // run in the workflow's directory
	}{
		{"path", func(wf string, port int) []string { return []string{"--port", strconv.Itoa(port), wf} }, false},
		{"default ./WORKFLOW.md", func(_ string, port int) []string { return []string{"--port", strconv.Itoa(port)} }, true},
		{"acknowledgement and logs root", func(wf string, port int) []string {
			return []string{guardrailsFlag, "--logs-root", filepath.Join(filepath.Dir(wf), "logs"), "--port", strconv.Itoa(port), wf}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wf := writeWorkflow(t)
			port := refPort(t)
			cmd := exec.Command(binary, tc.args(wf, port)...)
			if tc.dir {
				cmd.Dir = filepath.Dir(wf)
			}
			p := startCmd(t, cmd)
			p.waitFor(t, fmt.Sprintf("dashboard on http://127.0.0.1:%d", port))
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/state", port))
			if err != nil {
				t.Fatal(err)
			}
			var state map[string]any
			err = json.NewDecoder(resp.Body).Decode(&state)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || state["counts"] == nil {
				t.Errorf("GET /api/v1/state: %d %v %v", resp.StatusCode, err, state)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t); code != 0 {
				t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, p.all)
			}
			if !strings.Contains(p.all.String(), "symphony stopped") {
				t.Errorf("no clean stop logged:\n%s", p.all)
			}
			if strings.Contains(strings.Join(cmd.Args, " "), "--logs-root") {
				logged, err := os.ReadFile(filepath.Join(filepath.Dir(wf), "logs", filepath.FromSlash("log/symphony.log")))
				if err != nil || !strings.Contains(string(logged), "symphony stopped") {
					t.Errorf("--logs-root: log file %v:\n%s", err, logged)
				}
			}
		})
	}
}

// TestReferenceCommandLineMissingWorkflow: with no path and no
// ./WORKFLOW.md the service does not start; it says which file is missing
// and exits 1, as the reference does.
func TestReferenceCommandLineMissingWorkflow(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "--port", strconv.Itoa(refPort(t)))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 1 || !strings.Contains(string(out), "missing_workflow_file") || !strings.Contains(string(out), filepath.Join(dir, "WORKFLOW.md")) {
		t.Errorf("exit %d, want 1 naming %s:\n%s", code, filepath.Join(dir, "WORKFLOW.md"), out)
	}
}
