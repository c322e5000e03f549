package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// testTimeout bounds what normally takes milliseconds, so a broken test
// fails instead of hanging.
const testTimeout = 60 * time.Second

// binary is the symphony binary built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(fakeAgentEnv) != "" && os.Getenv("SYMPHONY_RUN_ID") != "" {
		os.Exit(fakeAgent())
	}
	dir, err := os.MkdirTemp("", "symphony-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "symphony")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build symphony:", err)
		os.Exit(1)
	}
	if err := hermeticHome(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The default workspace root is under $TMPDIR, and one instance at a
	// time holds a root: test binaries running side by side (other
	// packages, other checkouts) get temporary directories of their own.
	tmp := filepath.Join(dir, "t")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeWorkflow puts a minimal WORKFLOW.md in a fresh directory.
func writeWorkflow(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "WORKFLOW.md")
	if err := os.WriteFile(path, []byte("---\ntracker:\n  kind: files\n  provider: {path: issues}\n---\nWork on {{ issue.identifier }}.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a running `symphony` process whose output lines are collected.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	all   *bytes.Buffer
	done  chan error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(binary, freePort(args)...))
}

// startCmd starts cmd (the binary, its arguments as given) and collects
// its output lines.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{cmd: cmd, lines: make(chan string, 1024), all: &bytes.Buffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		pw.Close()
		p.done <- err
	}()
	// The next test may start an instance on the same workspace root
	// (the default one): it must find this one gone, its lock released.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(testTimeout):
			t.Errorf("process %d did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	return p
}

// waitFor reads output lines until one contains want.
func (p *proc) waitFor(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("process ended before printing %q; output:\n%s", want, p.all)
			}
			p.all.WriteString(line + "\n")
			if strings.Contains(line, want) {
				return line
			}
		case <-deadline:
			t.Fatalf("no %q within %v; output:\n%s", want, testTimeout, p.all)
		}
	}
}

// waitForEach waits for a line containing each of wants, in any order
// (stdout and stderr are read apart, so a printed line and a logged one
// arrive in either order), and returns the line that matched each.
func (p *proc) waitForEach(t *testing.T, wants ...string) map[string]string {
	t.Helper()
	got := make(map[string]string, len(wants))
	deadline := time.After(testTimeout)
	for len(got) < len(wants) {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("process ended before printing %q; output:\n%s", wants, p.all)
			}
			p.all.WriteString(line + "\n")
			for _, w := range wants {
				if _, seen := got[w]; !seen && strings.Contains(line, w) {
					got[w] = line
				}
			}
		case <-deadline:
			t.Fatalf("not all of %q within %v; output:\n%s", wants, testTimeout, p.all)
		}
	}
	return got
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		for line := range p.lines {
			p.all.WriteString(line + "\n")
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(testTimeout):
		t.Fatalf("process did not exit; output:\n%s", p.all)
	}
	return -1
}

// freePort gives `run` a free dashboard port unless the test chose one, so
// tests running side by side never contend for 4000.
func freePort(args []string) []string {
	if !slices.Contains(args, "run") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--port") }) {
		return args
	}
	return append(slices.Clone(args), "--port", "0")
}

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, freePort(args)...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestRunTwiceOnOneDataDirFailsFast(t *testing.T) {
	wf := writeWorkflow(t)
	first := start(t, "run", wf)
	first.waitFor(t, "symphony running")

	began := time.Now()
	code, out := runCLI(t, "run", wf)
	if code == 0 {
		t.Fatalf("second run on the same data dir succeeded:\n%s", out)
	}
	want := fmt.Sprintf("is in use by process %d", first.cmd.Process.Pid)
	if !strings.Contains(out, want) || !strings.Contains(out, filepath.Join(filepath.Dir(wf), ".symphony")) {
		t.Errorf("second run should name the data dir and the holder (%q):\n%s", want, out)
	}
	if strings.Contains(out, "goroutine ") || strings.Contains(out, "nats: ") {
		t.Errorf("second run printed internals instead of a message:\n%s", out)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("second run took %v to fail", d)
	}

	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t); code != 0 {
		t.Errorf("first run exited %d after SIGTERM:\n%s", code, first.all)
	}
	// Once the first is gone the data dir is free again.
	again := start(t, "run", wf)
	again.waitFor(t, "symphony running")
	_ = again.cmd.Process.Signal(syscall.SIGINT)
	if code := again.wait(t); code != 0 {
		t.Errorf("exit %d after SIGINT:\n%s", code, again.all)
	}
}

// TestRunTwiceOnOneWorkspaceRootFailsFast: two instances (two workflows,
// two data directories) on one workspace root would remove and read each
// other's workspaces when identifiers coincide; the second stops at once,
// naming the root and the holder, and the root is free once the first
// has gone.
func TestRunTwiceOnOneWorkspaceRootFailsFast(t *testing.T) {
	root := filepath.Join(t.TempDir(), "shared-ws")
	wf := func() string {
		dir := t.TempDir()
		path := filepath.Join(dir, "WORKFLOW.md")
		text := "---\ntracker:\n  kind: files\n  provider: {path: issues}\nworkspace: {root: " + root + "}\n---\nWork on {{ issue.identifier }}.\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first := start(t, "run", wf())
	first.waitFor(t, "symphony running")
	second := wf()
	began := time.Now()
	code, out := runCLI(t, "run", second)
	want := fmt.Sprintf("workspace root %s is in use by process %d", root, first.cmd.Process.Pid)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("second run on the same workspace root: exit %d, want %q:\n%s", code, want, out)
	}
	if strings.Contains(out, "symphony running") {
		t.Errorf("the second run started its components:\n%s", out)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("second run took %v to fail", d)
	}
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t); code != 0 {
		t.Errorf("first run exited %d after SIGTERM:\n%s", code, first.all)
	}
	again := start(t, "run", second)
	again.waitFor(t, "symphony running")
	_ = again.cmd.Process.Signal(syscall.SIGINT)
	if code := again.wait(t); code != 0 {
		t.Errorf("exit %d after SIGINT:\n%s", code, again.all)
	}
}

func TestRunNatsListener(t *testing.T) {
	wf := writeWorkflow(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	p := start(t, "--data-dir", dataDir, "run", wf, "--nats-listen", "127.0.0.1:0")
	hint := p.waitForEach(t, "watch the bus with:", "symphony running")["watch the bus with:"]
	tokenFile := filepath.Join(dataDir, "nats-token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hint, tokenFile) {
		t.Errorf("the hint must point at the token file:\n%s", p.all)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.all)
	}
	if strings.Contains(p.all.String(), strings.TrimSpace(string(token))) {
		t.Errorf("the token was printed:\n%s", p.all)
	}
	if _, err := os.Stat(tokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("token file left behind after a clean stop: %v", err)
	}
}

func TestRunRefusesNonLoopbackListener(t *testing.T) {
	wf := writeWorkflow(t)
	code, out := runCLI(t, "run", wf, "--nats-listen", "0.0.0.0:4222")
	if code == 0 || !strings.Contains(out, "non-loopback") || !strings.Contains(out, "--nats-listen-unsafe") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestRunMissingWorkflow(t *testing.T) {
	code, out := runCLI(t, "run", filepath.Join(t.TempDir(), "WORKFLOW.md"))
	if code != 1 || !strings.Contains(out, "missing_workflow_file") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestBadDurationIsAUsageError(t *testing.T) {
	code, out := runCLI(t, "prune", "--older-than", "3x")
	if code != exitUsage || !strings.Contains(out, `invalid duration "3x"`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "symphony ") {
		t.Errorf("exit %d: %s", code, out)
	}
}

// TestHelpExplainsEveryFlag walks the kong model: every command and every
// flag and argument has help text, and --help on every command exits 0.
func TestHelpExplainsEveryFlag(t *testing.T) {
	parser, err := kong.New(&CLI{}, kong.Name("symphony"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		if n.Type == kong.CommandNode {
			if n.Help == "" {
				t.Errorf("command %s has no help", n.Name)
			}
			code, out := runCLI(t, append(strings.Fields(n.FullPath())[1:], "--help")...)
			if code != 0 || !strings.Contains(out, "Usage: symphony "+n.Name) {
				t.Errorf("%s --help: exit %d\n%s", n.Name, code, out)
			}
		}
		for _, f := range n.Flags {
			if f.Help == "" {
				t.Errorf("flag --%s of %s has no help", f.Name, n.Name)
			}
		}
		for _, p := range n.Positional {
			if p.Help == "" {
				t.Errorf("argument %s of %s has no help", p.Name, n.Name)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
}

func TestValidate(t *testing.T) {
	const secret = "lin_api_validate_secret_value"
	wf := "../../testdata/workflows/linear.WORKFLOW.md"
	cmd := exec.Command(binary, "validate", wf)
	cmd.Env = append(os.Environ(), "LINEAR_API_KEY="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, want := range []string{"is valid", "tracker.provider.api_key", "(from $LINEAR_API_KEY)", "codex.command", "(default)",
		"first run (attempt: null)", "attempt 2", "This is attempt 2", "SYM-123"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), secret) {
		t.Error("validate printed the secret")
	}

	cmd = exec.Command(binary, "validate", "--json", wf)
	cmd.Env = append(os.Environ(), "LINEAR_API_KEY="+secret)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("validate --json: %v", err)
	}
	var res struct {
		Valid    bool `json:"valid"`
		Settings []struct {
			Key, Value string
			Default    bool
		} `json:"settings"`
		PromptAttempt2 string `json:"prompt_attempt_2"`
	}
	if err := json.Unmarshal(out, &res); err != nil || !res.Valid || len(res.Settings) < 20 || !strings.Contains(res.PromptAttempt2, "attempt 2") {
		t.Errorf("--json: %v %+v", err, res)
	}
	if strings.Contains(string(out), secret) {
		t.Error("validate --json printed the secret")
	}

	// An empty secret fails validation with the key's name.
	cmd = exec.Command(binary, "validate", wf)
	cmd.Env = append(os.Environ(), "LINEAR_API_KEY=")
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "tracker.provider.api_key: $LINEAR_API_KEY is not set or empty") {
		t.Errorf("empty secret: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}

	broken, _ := filepath.Glob("../../testdata/workflows/broken/*.md")
	for _, f := range broken {
		class, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".md"), "-")
		code, out := runCLI(t, "validate", f)
		if code != 1 || !strings.Contains(out, class+": ") {
			t.Errorf("%s: exit %d\n%s", filepath.Base(f), code, out)
		}
		code, out = runCLI(t, "validate", "--json", f)
		if code != 1 || !strings.Contains(out, `"class": "`+class+`"`) || !strings.Contains(out, `"line": `) {
			t.Errorf("%s --json: exit %d\n%s", filepath.Base(f), code, out)
		}
	}
	if code, out := runCLI(t, "validate", filepath.Join(t.TempDir(), "nope.md")); code != 1 || !strings.Contains(out, "missing_workflow_file") {
		t.Errorf("missing: exit %d\n%s", code, out)
	}
}

// TestValidateShowsLinearGraphQLPolicy: validate prints the effective
// policy of linear_graphql (tracker.tools.linear_graphql), marked when it
// is the default, and names the key when the value is not one it knows.
func TestValidateShowsLinearGraphQLPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(policy string) string {
		p := filepath.Join(dir, policy+".md")
		tools := ""
		if policy != "" {
			tools = "  tools: {linear_graphql: " + policy + "}\n"
		}
		src := "---\ntracker:\n  kind: linear\n  provider: {project_slug: p, api_key: literal-test-key}\n" + tools + "---\nbody\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policyLine := regexp.MustCompile(`(?m)^  tracker\.tools\.linear_graphql +(\S+) *(\(default\))? *$`)
	for _, c := range []struct{ policy, want, mark string }{{"", "scoped", "(default)"}, {"scoped", "scoped", ""}, {"any", "any", ""}, {"off", "off", ""}} {
		code, out := runCLI(t, "validate", write(c.policy))
		m := policyLine.FindStringSubmatch(out)
		if code != 0 || m == nil || m[1] != c.want || m[2] != c.mark {
			t.Errorf("policy %q: exit %d, line %q\n%s", c.policy, code, m, out)
		}
	}
	code, out := runCLI(t, "validate", write("everything"))
	if code != 1 || !strings.Contains(out, `tracker.tools.linear_graphql: unknown policy "everything" (want scoped, any or off)`) {
		t.Errorf("unknown policy: exit %d\n%s", code, out)
	}
	// The files tracker has no linear_graphql: no line claims a policy.
	code, out = runCLI(t, "validate", "../../testdata/workflows/files.WORKFLOW.md")
	if code != 0 || strings.Contains(out, "linear_graphql") {
		t.Errorf("files: exit %d\n%s", code, out)
	}
}

func TestRunRefusesInvalidWorkflow(t *testing.T) {
	code, out := runCLI(t, "run", "../../testdata/workflows/broken/template_render_error.md", "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(out, "template_render_error") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// TestRunNeverLogsTheSecret runs with debug logs on a Linear workflow and
// looks for the key in everything the process printed.
func TestRunNeverLogsTheSecret(t *testing.T) {
	const secret = "lin_api_run_secret_value_42"
	dir := t.TempDir()
	src, err := os.ReadFile("../../testdata/workflows/linear.WORKFLOW.md")
	if err != nil {
		t.Fatal(err)
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	if err := os.WriteFile(wf, src, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LINEAR_API_KEY", secret)
	p := start(t, "--log-level", "debug", "run", wf)
	p.waitFor(t, "workflow loaded")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d\n%s", code, p.all)
	}
	if strings.Contains(p.all.String(), secret) {
		t.Errorf("the secret appeared in the output:\n%s", p.all)
	}
}

// TestPruneCommand: prune on a stopped instance's store, dry run first; a
// running instance is refused with a way forward.
func TestPruneCommand(t *testing.T) {
	wf := writeWorkflow(t)
	dataDir := filepath.Join(filepath.Dir(wf), ".symphony")
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	ended := time.Now().Add(-40 * 24 * time.Hour)
	for _, ev := range []bus.RunEvent{
		{RunID: "old-run", Event: bus.RunDispatched, At: ended.Add(-time.Hour), Issue: bus.IssueRef{ID: "1", Identifier: "OLD-1"}},
		{RunID: "old-run", Event: bus.RunFinished, At: ended, Issue: bus.IssueRef{ID: "1", Identifier: "OLD-1"}, Status: bus.RunFailed},
		{RunID: "new-run", Event: bus.RunDispatched, At: time.Now(), Issue: bus.IssueRef{ID: "2", Identifier: "NEW-1"}},
	} {
		if err := runlog.Record(t.Context(), b, ev, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "--data-dir", dataDir, "prune", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete old-run") || !strings.Contains(out, "nothing was deleted") {
		t.Errorf("dry run: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "30d")
	if code != 0 || !strings.Contains(out, "deleted old-run") || !strings.Contains(out, "deleted 1 run(s)") || !strings.Contains(out, "1 kept") {
		t.Errorf("prune: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "prune")
	if code != 0 || !strings.Contains(out, "deleted 0 run(s)") {
		t.Errorf("second prune: exit %d\n%s", code, out)
	}
	if code, out := runCLI(t, "--data-dir", dataDir, "prune", "--older-than", "0"); code != exitUsage {
		t.Errorf("zero age: exit %d\n%s", code, out)
	}
	p := start(t, "--data-dir", dataDir, "run", wf)
	p.waitFor(t, "symphony running")
	code, out = runCLI(t, "--data-dir", dataDir, "prune")
	if code == 0 || !strings.Contains(out, "in use by process") || !strings.Contains(out, "retention:") {
		t.Errorf("prune while running: exit %d\n%s", code, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

// TestRunRuntimeSettings checks the cores `symphony run` gives its own
// code and its garbage collector's target, as the dashboard's /metrics
// reports them: 1 core by default, GOMAXPROCS from the environment,
// --max-procs over both (even over a GOMAXPROCS Go could not read), and a
// negative count is a usage error; GOGC 50 once started unless the
// environment sets it.
func TestRunRuntimeSettings(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        []string
		args       []string
		want, gogc string
	}{
		{"default", nil, nil, "1", "50"},
		{"environment", []string{"GOMAXPROCS=3", "GOGC=200"}, nil, "3", "200"},
		{"flag over environment", []string{"GOMAXPROCS=3"}, []string{"--max-procs", "2"}, "2", "50"},
		{"flag over an unreadable environment", []string{"GOMAXPROCS=abc"}, []string{"--max-procs=2"}, "2", "50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wf := writeWorkflow(t)
			dataDir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"--data-dir", dataDir, "run", wf}, tc.args...)
			cmd := exec.Command(binary, freePort(args)...)
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(v string) bool {
				return strings.HasPrefix(v, "GOMAXPROCS=") || strings.HasPrefix(v, "GOGC=")
			}), tc.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			var url []byte
			deadline := time.Now().Add(testTimeout)
			for len(url) == 0 && time.Now().Before(deadline) {
				url, _ = os.ReadFile(filepath.Join(dataDir, "dashboard-url"))
				time.Sleep(20 * time.Millisecond)
			}
			if len(url) == 0 {
				t.Fatalf("no dashboard URL; output:\n%s", out.String())
			}
			// The collector's target is set once the start is over, just
			// after the dashboard is ready: read until both lines show or
			// the time is up.
			want := []string{"symphony_go_sched_gomaxprocs_threads " + tc.want + "\n", "symphony_go_gc_gogc_percent " + tc.gogc + "\n"}
			var body []byte
			for {
				if resp, err := http.Get(strings.TrimSpace(string(url)) + "/metrics"); err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if strings.Contains(string(body), want[0]) && strings.Contains(string(body), want[1]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("want %q in /metrics; got:\n%s", want, grepLines(string(body), "symphony_go_"))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	code, out := runCLI(t, "run", writeWorkflow(t), "--max-procs=-1")
	if code != exitUsage || !strings.Contains(out, "--max-procs must be 0 (Go's default) or more, not -1") {
		t.Errorf("--max-procs -1: exit %d:\n%s", code, out)
	}
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// hermeticHome gives the tests and every process they start a HOME of
// their own, under dir, with no login profile: hooks and codex run under
// `bash -lc`, and the developer's profile can be slow or take a lock
// (pyenv's rehash) that a test killing a process group early leaves
// behind, stalling every later login shell on the machine. The go
// command's directories, which default to places under HOME, are pinned
// first so `go tool nats` keeps its module cache.
func hermeticHome(dir string) error {
	for _, name := range []string{"GOPATH", "GOMODCACHE", "GOCACHE", "GOENV"} {
		if os.Getenv(name) != "" {
			continue
		}
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			return fmt.Errorf("go env %s: %w", name, err)
		}
		os.Setenv(name, strings.TrimSpace(string(out)))
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	return os.Setenv("HOME", home)
}
