package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// The end-to-end tests of issue #22: the real `symphony run` process with
// agent.kind codex, the real `codex app-server` (codex-cli 0.169.0, from
// `go tool task tools`) on testkit/mockopenai's scripted model, all on
// 127.0.0.1. They never skip: without codex they fail naming the install
// command.

// codexOpts shape one codex workflow.
type codexOpts struct {
	// tracker is the workflow's tracker section; a files tracker with one
	// issue SYM-1 in Todo when empty.
	tracker string
	// approval is codex.approval_policy ("never" when empty).
	approval string
	// maxTurns is agent.max_turns (1 when zero).
	maxTurns int
	// args are extra `symphony run` arguments (--once).
	args []string
	// env is added to symphony's environment.
	env []string
}

// codexRun is a `symphony run` process whose agent is the real codex.
type codexRun struct {
	*agentRun
	model *mockopenai.Server
	home  string
}

const codexWorkflow = `---
%s
polling: {interval_ms: 600000}
workspace: {root: ws}
agent: {kind: codex, max_turns: %d, max_retry_backoff_ms: 1000}
codex:
  command: %q
  approval_policy: %s
  read_timeout_ms: 30000
  turn_timeout_ms: 60000
  stall_timeout_ms: 60000
---
Work on {{ issue.identifier }}: write the file.
`

// startCodexRun writes the workflow and starts `symphony run` on it, its
// environment carrying what codex needs for the model (CODEX_HOME with the
// mock's provider, the mock's dummy key).
func startCodexRun(t *testing.T, model *mockopenai.Server, o codexOpts) *codexRun {
	t.Helper()
	cli, err := mockopenai.CLIPath()
	if err != nil {
		t.Fatalf("the real codex CLI is required: %v", err)
	}
	dir := t.TempDir()
	r := &codexRun{agentRun: &agentRun{dir: dir, dataDir: filepath.Join(dir, "data"), wf: filepath.Join(dir, "WORKFLOW.md"),
		out: &lockedBuffer{}, done: make(chan error, 1)}, model: model, home: filepath.Join(dir, "codex-home")}
	codexEnv, err := mockopenai.CodexHome(r.home, model.URL())
	if err != nil {
		t.Fatal(err)
	}
	if o.tracker == "" {
		o.tracker = "tracker: {kind: files, provider: {path: issues}}"
		if err := os.MkdirAll(filepath.Join(dir, "issues"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "issues", "SYM-1.md"), "---\ntitle: Write hello\nstate: Todo\n---\nWrite hello.txt.\n")
	}
	if o.approval == "" {
		o.approval = "never"
	}
	o.maxTurns = max(o.maxTurns, 1)
	writeFile(t, r.wf, fmt.Sprintf(codexWorkflow, o.tracker, o.maxTurns, cli+" app-server", o.approval))
	r.cmd = exec.Command(binary, append([]string{"--data-dir", r.dataDir, "run", r.wf, "--port", "0"}, o.args...)...)
	r.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "LINEAR_API_KEY=") || strings.HasPrefix(kv, "SYMPHONY_") || strings.HasPrefix(kv, "CODEX_")
	}), codexEnv...)
	r.cmd.Env = append(r.cmd.Env, o.env...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if !r.exited {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// replayed is a run as `symphony replay --jsonl` exports it.
type replayed struct {
	runs  []bus.RunEvent
	turns []bus.TurnEvent
	raw   string
}

// replayRun exports the run through the CLI (on a stopped instance).
func replayRun(t *testing.T, dataDir, run string) replayed {
	t.Helper()
	code, out := runCLI(t, "--data-dir", dataDir, "replay", run, "--jsonl")
	if code != 0 {
		t.Fatalf("replay --jsonl: exit %d\n%s", code, out)
	}
	rp := replayed{raw: out}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var line struct {
			Stream string          `json:"stream"`
			Event  json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("bad JSONL line %q: %v", sc.Text(), err)
		}
		switch line.Stream {
		case "RUNS":
			var ev bus.RunEvent
			if err := json.Unmarshal(line.Event, &ev); err != nil {
				t.Fatal(err)
			}
			rp.runs = append(rp.runs, ev)
		case "TURNS":
			var ev bus.TurnEvent
			if err := json.Unmarshal(line.Event, &ev); err != nil {
				t.Fatal(err)
			}
			rp.turns = append(rp.turns, ev)
		}
	}
	return rp
}

// of returns the run events of that kind.
func (rp replayed) of(kind bus.RunEventKind) []bus.RunEvent {
	var out []bus.RunEvent
	for _, ev := range rp.runs {
		if ev.Event == kind {
			out = append(out, ev)
		}
	}
	return out
}

// kinds returns the turn events of that kind.
func (rp replayed) kinds(kind bus.TurnEventKind) []bus.TurnEvent {
	var out []bus.TurnEvent
	for _, ev := range rp.turns {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// summaries is `symphony runs --json`, newest first.
func summaries(t *testing.T, dataDir string) []bus.RunSummary {
	t.Helper()
	code, out := runCLI(t, "--data-dir", dataDir, "runs", "--json")
	if code != 0 {
		t.Fatalf("runs --json: exit %d\n%s", code, out)
	}
	var all []bus.RunSummary
	for line := range strings.Lines(out) {
		var s bus.RunSummary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("runs --json line %q: %v", line, err)
		}
		all = append(all, s)
	}
	return all
}

// wantUsage is the run usage the server's absolute totals come to after
// steps: codex's thread/tokenUsage/updated total sums the usage the mock
// reported for each answer, and a run's usage is the last total.
func wantUsage(steps []mockopenai.Step) bus.Usage {
	var u bus.Usage
	for _, st := range steps {
		e := mockopenai.EffectiveUsage(st)
		u.InputTokens += int64(e.InputTokens)
		u.OutputTokens += int64(e.OutputTokens)
		u.CacheReadInputTokens += int64(e.CachedTokens)
	}
	return u
}

// TestCodexRunTwoTurnsOnOneThread: in its first turn the model writes a
// file in the workspace with a shell command; the issue stays Todo, so a
// continuation turn follows on the same thread of the same app-server
// process (one pid, one session id = codex's thread id in the model's
// requests), where the model reads the file back. The transcript holds the
// commands as tool_use/tool_result and the agent's texts, and the run's
// token totals are the last absolute totals codex reported: the sums of
// what the mock said each answer used.
func TestCodexRunTwoTurnsOnOneThread(t *testing.T) {
	write := mockopenai.WriteFile("hello.txt", "hello from codex\n")
	write.Usage = mockopenai.Usage{InputTokens: 1000, OutputTokens: 30, CachedTokens: 400}
	said := mockopenai.Text("Wrote hello.txt.")
	said.Usage = mockopenai.Usage{InputTokens: 1100, OutputTokens: 12, CachedTokens: 1000}
	read := mockopenai.Exec("cat hello.txt")
	read.Usage = mockopenai.Usage{InputTokens: 1300, OutputTokens: 9, CachedTokens: 1100}
	model := mockopenai.New(write, said, read, mockopenai.Text("It says hello from codex."))
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{maxTurns: 2, args: []string{"--once"}})
	r.wait(t)

	got, err := os.ReadFile(filepath.Join(r.dir, "ws", "SYM-1", "hello.txt"))
	if err != nil || string(got) != "hello from codex\n" {
		t.Fatalf("the workspace's hello.txt = %q, %v", got, err)
	}
	sums := summaries(t, r.dataDir)
	if len(sums) != 1 {
		t.Fatalf("%d runs, want 1: %+v", len(sums), sums)
	}
	sum := sums[0]
	if sum.Status != bus.RunSucceeded || sum.Turns != 2 || sum.Agent != "codex" || sum.SessionID == "" {
		t.Fatalf("run summary %+v; want succeeded after 2 turns of codex with a session", sum)
	}
	reqs := model.Responses()
	if len(reqs) != 4 {
		t.Fatalf("the model was asked %d times, want 4", len(reqs))
	}
	for i, req := range reqs {
		if req.ThreadID != sum.SessionID {
			t.Errorf("model request %d is of thread %q, want the run's session %q", i+1, req.ThreadID, sum.SessionID)
		}
	}
	if !strings.Contains(reqs[0].UserText, "Work on SYM-1") || !strings.Contains(reqs[2].UserText, "Continue working on the issue") {
		t.Errorf("user texts of the two turns: %q, %q", reqs[0].UserText, reqs[2].UserText)
	}
	if !strings.Contains(reqs[3].ToolResultText(), "hello from codex") {
		t.Errorf("the second turn's command output the model saw: %q", reqs[3].ToolResultText())
	}

	rp := replayRun(t, r.dataDir, sum.RunID)
	checkOneProcess(t, rp, sum.SessionID)
	checkCommandTranscript(t, rp)
	if want := wantUsage(model.Steps()); sum.Usage != want {
		t.Errorf("run usage %+v, want the last totals codex reported %+v", sum.Usage, want)
	}
	if fin := rp.of(bus.RunFinished); len(fin) != 1 || fin[0].Usage == nil || *fin[0].Usage != sum.Usage {
		t.Errorf("run_finished %+v; want the usage %+v", fin, sum.Usage)
	}
}

// checkOneProcess: both turns started on the same app-server process and
// the same thread, and the run's process is gone at its end.
func checkOneProcess(t *testing.T, rp replayed, session string) {
	t.Helper()
	started := rp.of(bus.RunTurnStarted)
	if len(started) != 2 || started[0].AgentPID <= 0 || started[1].AgentPID != started[0].AgentPID {
		t.Errorf("turn_started events %+v; want two with one agent pid", started)
	}
	for _, ev := range rp.of(bus.RunTurnFinished) {
		if ev.SessionID != session {
			t.Errorf("turn %d finished in session %q, want %q", ev.Turn, ev.SessionID, session)
		}
	}
	if ss := rp.of(bus.RunSessionStarted); len(ss) != 1 || ss[0].SessionID != session {
		t.Errorf("session_started events %+v; want one, of %q", ss, session)
	}
	if len(started) > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", started[0].AgentPID)); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", started[0].AgentPID)); strings.Contains(string(st), "SYMPHONY_RUN_ID="+started[0].RunID) {
				t.Errorf("the run's codex (pid %d) outlived the run", started[0].AgentPID)
			}
		}
	}
}

// checkCommandTranscript: the transcript has each command as a tool_use
// with its result, the assistant texts, and a result per turn.
func checkCommandTranscript(t *testing.T, rp replayed) {
	t.Helper()
	var uses []string
	for _, ev := range rp.kinds(bus.TurnToolUse) {
		if ev.Tool != nil && ev.Tool.Name == "command" {
			uses = append(uses, fmt.Sprintf("%d:%s", ev.Turn, ev.Tool.Input))
		}
	}
	if len(uses) != 2 || !strings.HasPrefix(uses[0], "1:") || !strings.Contains(uses[0], "hello.txt") ||
		!strings.HasPrefix(uses[1], "2:") || !strings.Contains(uses[1], "cat hello.txt") {
		t.Errorf("command tool_use events %q; want the write in turn 1, the cat in turn 2", uses)
	}
	var outputs []string
	for _, ev := range rp.kinds(bus.TurnToolResult) {
		if ev.Tool != nil && !ev.Tool.IsError {
			outputs = append(outputs, ev.Text)
		}
	}
	if len(outputs) != 2 || !strings.Contains(outputs[1], "hello from codex") {
		t.Errorf("tool_result texts %q; want two, the second the file's content", outputs)
	}
	var texts []string
	for _, ev := range rp.kinds(bus.TurnText) {
		texts = append(texts, ev.Text)
	}
	if !slices.Equal(texts, []string{"Wrote hello.txt.", "It says hello from codex."}) {
		t.Errorf("assistant texts %q", texts)
	}
	if res := rp.kinds(bus.TurnOutcome); len(res) != 2 || res[0].Result == nil || res[0].Result.IsError || res[1].Result == nil || res[1].Result.IsError {
		t.Errorf("result events %+v; want two successful turns", res)
	}
}

// codexProcesses is every live process of the run: those carrying its
// marker and their descendants, zombies left out.
func codexProcesses(t *testing.T, run string) []int {
	t.Helper()
	roots, err := procscan.Find(bus.RunMarkerEnv, run)
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, pid := range descendants(roots) {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st[strings.LastIndexByte(string(st), ')'):]), ") Z") {
			live = append(live, pid)
		}
	}
	return live
}

// cmdline is a process's argv, or nil once it has gone.
func cmdline(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(raw) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}

// waitNoProcesses waits until no process of the run is alive.
func waitNoProcesses(t *testing.T, run string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		left := codexProcesses(t, run)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, pid := range left {
				desc = append(desc, fmt.Sprintf("%d %q", pid, cmdline(pid)))
			}
			t.Fatalf("processes of run %s still alive: %s", run, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runOf waits for the live run of issue and returns its id.
func runOf(t *testing.T, identifier string) string {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		for _, runs := range liveRuns(t, []string{identifier}) {
			for run := range runs {
				return run
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process of %s ever ran", identifier)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
