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

	"github.com/alecthomas/kong"
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
			// Padded: the reference trims the value, and so do we.
			return []string{guardrailsFlag, "--logs-root", " " + filepath.Join(filepath.Dir(wf), "logs") + "\t", "--port", strconv.Itoa(port), wf}
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

// TestReferenceCommandLineNoPort: on the reference's command line the
// HTTP server starts only when a port is given ("default: disabled"):
// without --port or server.port the service runs with no dashboard; with
// server.port in WORKFLOW.md it serves there.
func TestReferenceCommandLineNoPort(t *testing.T) {
	wf := writeWorkflow(t)
	p := startCmd(t, exec.Command(binary, wf))
	p.waitFor(t, "dashboard off")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, p.all)
	}
	if strings.Contains(p.all.String(), "dashboard on") {
		t.Errorf("a dashboard started without a port:\n%s", p.all)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(wf), ".symphony", "dashboard-url")); !os.IsNotExist(err) {
		t.Errorf("dashboard-url written without a dashboard: %v", err)
	}

	port := refPort(t)
	raw, err := os.ReadFile(wf)
	if err != nil {
		t.Fatal(err)
	}
	withPort := strings.Replace(string(raw), "---\n", fmt.Sprintf("---\nserver:\n  port: %d\n", port), 1)
	wf2 := filepath.Join(t.TempDir(), "WORKFLOW.md")
	if err := os.WriteFile(wf2, []byte(withPort), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(filepath.Dir(wf2), "issues"), 0o755); err != nil {
		t.Fatal(err)
	}
	p = startCmd(t, exec.Command(binary, wf2))
	p.waitFor(t, fmt.Sprintf("dashboard on http://127.0.0.1:%d", port))
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, p.all)
	}
}

// TestRunServesByDefault: `symphony run` keeps its default dashboard
// (127.0.0.1:4000) with no port given, while the same command line
// without the word run serves nothing; a non-loopback server.host is
// refused by run only when it would serve.
func TestRunServesByDefault(t *testing.T) {
	wf := writeWorkflow(t)
	for _, tc := range []struct {
		reference bool
		port      *int
		serve     bool
	}{{false, nil, true}, {true, nil, false}, {true, new(int), true}} {
		c := RunCmd{Workflow: wf, reference: tc.reference}
		c.Port = tc.port
		set, err := c.settings(&Globals{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if set.serve != tc.serve || (!tc.reference && (set.bind != "127.0.0.1" || set.port != 4000)) {
			t.Errorf("reference=%v port=%v: serve=%v on %s:%d", tc.reference, tc.port, set.serve, set.bind, set.port)
		}
	}
	ctx := kongContext(t, "--port", "1", "run", wf)
	if !namesCommand(ctx, []string{"--port", "1", "run", wf}) {
		t.Error("`--port 1 run WF` does name run")
	}
	for _, args := range [][]string{{wf}, {"--port", "1", wf}, {"--logs-root", "run", wf}, {}} {
		if namesCommand(kongContext(t, args...), args) {
			t.Errorf("%q names no command", args)
		}
	}
}

// kongContext parses args as main does.
func kongContext(t *testing.T, args ...string) *kong.Context {
	t.Helper()
	var cli CLI
	parser, err := kong.New(&cli, kong.Name("symphony"), kong.Exit(func(int) { t.Fatal("exit") }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := parser.Parse(args)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// TestValidateWarnsAboutNonLoopbackHost: server.host 0.0.0.0 (the
// reference accepts it) is a valid file that `symphony run` refuses
// without --bind-unsafe; validate says so, naming the flag.
func TestValidateWarnsAboutNonLoopbackHost(t *testing.T) {
	wf := writeWorkflow(t)
	raw, err := os.ReadFile(wf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wf, []byte(strings.Replace(string(raw), "---\n", "---\nserver:\n  host: 0.0.0.0\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := validateWith(t, nil, wf)
	if code != 0 || !strings.Contains(out, `"0.0.0.0" is not loopback`) || !strings.Contains(out, "--bind-unsafe") {
		t.Errorf("exit %d, want 0 and a warning naming --bind-unsafe:\n%s", code, out)
	}
}

// TestBlankLogsRootIsAUsageError: a blank --logs-root (empty or white
// space) is refused before anything starts, as the reference refuses it,
// with our usage exit code (2) and the flag named.
func TestBlankLogsRootIsAUsageError(t *testing.T) {
	wf := writeWorkflow(t)
	for _, v := range []string{"", "  \t"} {
		code, out := runCLI(t, "--logs-root", v, "--port", strconv.Itoa(refPort(t)), wf)
		if code != exitUsage || !strings.Contains(out, "--logs-root") || !strings.Contains(out, "blank") {
			t.Errorf("--logs-root %q: exit %d, want %d naming the flag:\n%s", v, code, exitUsage, out)
		}
	}
}
