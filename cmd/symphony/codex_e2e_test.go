package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// codexWorkflow polls every 2 s: a start-up poll whose snapshot the
// scheduler missed (published before it subscribed) is then followed soon
// by another, instead of the test waiting out its bound.
const codexWorkflow = `---
%s
polling: {interval_ms: 2000}
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
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
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
	// A HOME of the test's own: the agent's `bash -lc` and codex's own
	// login-shell snapshot then read no profile of the developer's (one
	// that is slow or takes a lock, as pyenv's rehash does, would delay
	// or block every start, and a run ended mid-profile could leave the
	// lock behind).
	env := append(append(slices.Clone(codexEnv), "HOME="+filepath.Join(dir, "home")), o.env...)
	r.start(t, o.args, []string{"LINEAR_API_KEY=", "SYMPHONY_", "CODEX_", "HOME="}, env)
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
	if want := wantUsage(model.Steps()); sum.Usage != want || lastTotals(t, rp) != want {
		t.Errorf("run usage %+v, codex's last thread/tokenUsage/updated total %+v; want both the sums of what the model reported, %+v", sum.Usage, lastTotals(t, rp), want)
	}
	if fin := rp.of(bus.RunFinished); len(fin) != 1 || fin[0].Usage == nil || *fin[0].Usage != sum.Usage {
		t.Errorf("run_finished %+v; want the usage %+v", fin, sum.Usage)
	}
}

// lastTotals is tokenUsage.total of the last thread/tokenUsage/updated
// the transcript recorded (its params are the event's raw JSON).
func lastTotals(t *testing.T, rp replayed) bus.Usage {
	t.Helper()
	var u bus.Usage
	seen := false
	for _, ev := range rp.kinds(bus.TurnSystem) {
		var p struct {
			TokenUsage *struct {
				Total struct {
					InputTokens       int64 `json:"inputTokens"`
					CachedInputTokens int64 `json:"cachedInputTokens"`
					OutputTokens      int64 `json:"outputTokens"`
				} `json:"total"`
			} `json:"tokenUsage"`
		}
		if strings.HasPrefix(ev.Text, "token totals") && json.Unmarshal(ev.Raw, &p) == nil && p.TokenUsage != nil {
			tot := p.TokenUsage.Total
			u, seen = bus.Usage{InputTokens: tot.InputTokens, OutputTokens: tot.OutputTokens, CacheReadInputTokens: tot.CachedInputTokens}, true
		}
	}
	if !seen {
		t.Errorf("the transcript records no thread/tokenUsage/updated:\n%s", rp.raw)
	}
	return u
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

// parentPID is a process's parent, or 0 once it has gone.
func parentPID(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
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

// runOf waits until the run symphony dispatched (the first, by its log)
// has a live process and returns the run's id. The run is found by the
// instance's own log, not by the marker: other tests, of this
// package or another, may run an issue of the same identifier.
func runOf(t *testing.T, r *codexRun) string {
	t.Helper()
	r.waitOutput(t, 0, "msg=dispatched", "run_id=")
	var run string
	for line := range strings.Lines(r.out.String()) {
		if _, rest, ok := strings.Cut(line, "msg=dispatched"); ok && run == "" {
			_, id, _ := strings.Cut(rest, "run_id=")
			run, _, _ = strings.Cut(strings.TrimSpace(id), " ")
		}
	}
	if run == "" {
		t.Fatalf("no run id in the dispatch line:\n%s", r.out)
	}
	deadline := time.Now().Add(testTimeout)
	for len(codexProcesses(t, run)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no process of run %s ever ran; output:\n%s", run, r.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return run
}

// TestCodexModelErrorIsRetried: the model answers HTTP 500 (codex's own
// retries are off in the mock's CODEX_HOME), codex fails the turn, the run
// fails with turn_failed in its error, and the scheduler retries the issue
// after its backoff (max_retry_backoff_ms 1000): the second attempt, on a
// new app-server, succeeds.
func TestCodexModelErrorIsRetried(t *testing.T) {
	model := mockopenai.New(mockopenai.Error(500, "the mock is down"), mockopenai.Text("Recovered."))
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{})
	r.waitOutput(t, 0, "run failed; retry queued", "attempt=1", "turn_failed")
	r.waitOutput(t, 0, `msg="run finished"`, "component=agentrunner", "status=succeeded")
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r.wait(t)

	sums := summaries(t, r.dataDir)
	slices.Reverse(sums) // oldest first
	if len(sums) < 2 {
		t.Fatalf("%d runs, want the failed one and its retry: %+v", len(sums), sums)
	}
	failed, retry := sums[0], sums[1]
	if failed.Status != bus.RunFailed || !strings.HasPrefix(failed.Error, "turn_failed") || failed.Attempt != nil {
		t.Errorf("first run: %s %q (attempt %v); want failed with turn_failed, a first attempt", failed.Status, failed.Error, failed.Attempt)
	}
	if retry.Status != bus.RunSucceeded || retry.Attempt == nil || *retry.Attempt != 1 {
		t.Errorf("second run: %s %q (attempt %v); want the succeeded retry, attempt 1", retry.Status, retry.Error, retry.Attempt)
	}
	if failed.Ended == nil || retry.Started.Sub(*failed.Ended) < 900*time.Millisecond {
		t.Errorf("the retry started %v after the failure; want the 1 s backoff", retry.Started.Sub(*failed.Ended))
	}
	rp := replayRun(t, r.dataDir, failed.RunID)
	res := rp.kinds(bus.TurnOutcome)
	if len(res) != 1 || res[0].Result == nil || !res[0].Result.IsError || res[0].Result.Subtype != "failed" {
		t.Errorf("the failed run's result events %+v; want one, an error with subtype failed", res)
	}
	if !strings.Contains(rp.raw, "internalServerError") {
		t.Errorf("the failed run's transcript does not record codex's error notification:\n%s", rp.raw)
	}
	if n := len(model.Responses()); n < 2 {
		t.Errorf("the model was asked %d times, want the failure and the retry's", n)
	}
}

// TestCodexDynamicToolWithoutTheKey: with a Linear tracker (on the fake of
// agenttools_test.go) the model calls linear_graphql, a dynamic tool of the
// codex thread: a query of its issue (the answer reaches the model), then
// an update of its own issue, which the fake Linear receives with the key.
// Symphony runs both host-side (two tracker_tool events); the key is in no
// environment or command line of the run's processes while codex waits for
// the model, nor in the store or codex's own files after.
func TestCodexDynamicToolWithoutTheKey(t *testing.T) {
	gate := make(chan struct{})
	update := mockopenai.FunctionCall("linear_graphql", call(updateOwn, map[string]any{"id": "uuid-1", "title": renamedTitle}))
	update.Gate = gate
	model := mockopenai.New(mockopenai.FunctionCall("linear_graphql", call(queryOwn, nil)), update, mockopenai.Text("Renamed my issue."))
	t.Cleanup(model.Close)
	linear := newAgentLinear(t)
	tracker := fmt.Sprintf(`tracker:
  kind: linear
  provider: {project_slug: proj, endpoint: %q, api_key: $LINEAR_API_KEY}
  active_states: [Todo]
  terminal_states: [Done]
  tools: {linear_graphql: scoped}`, linear.srv.URL+"/graphql")
	r := startCodexRun(t, model, codexOpts{tracker: tracker, args: []string{"--once"}, env: []string{"LINEAR_API_KEY=" + agentToolsKey}})
	r.linear = linear

	// codex has the query's answer and waits for the model's next step.
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := model.WaitResponses(ctx, 2); err != nil {
		t.Fatalf("%v; output:\n%s", err, r.out)
	}
	run := runOf(t, r)
	checkCodexTree(t, run, r.cmd.Process.Pid)
	close(gate)
	r.wait(t)

	reqs := model.Responses()
	if len(reqs) != 3 || !reqs[0].HasTool("linear_graphql") || !strings.Contains(reqs[1].ToolResultText(), fakeLinearTitle) ||
		!strings.Contains(reqs[2].ToolResultText(), `"success":true`) {
		t.Fatalf("the model's requests: %d; tool offered %v; results %q", len(reqs), len(reqs) > 0 && reqs[0].HasTool("linear_graphql"), toolTexts(reqs))
	}
	var updates []linearRequest
	for _, lr := range linear.requests() {
		if lr.Auth != agentToolsKey {
			t.Errorf("a request to Linear without the key: %s", lr.Body)
		}
		if strings.Contains(lr.Query, "issueUpdate") {
			updates = append(updates, lr)
		}
	}
	if len(updates) != 1 || updates[0].Vars["id"] != "uuid-1" || updates[0].Vars["title"] != renamedTitle {
		t.Errorf("the updates Linear received: %+v", updates)
	}
	sums := summaries(t, r.dataDir)
	if len(sums) != 1 || sums[0].RunID != run || sums[0].Status != bus.RunSucceeded {
		t.Fatalf("runs: %+v; want run %s succeeded", sums, run)
	}
	rp := replayRun(t, r.dataDir, run)
	var calls []string
	for _, ev := range rp.kinds(bus.TurnTrackerTool) {
		if c := ev.TrackerTool; c != nil {
			calls = append(calls, fmt.Sprintf("%s ok=%v %s", c.Tool, c.OK, c.Arguments))
		}
	}
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "linear_graphql ok=true") || !strings.Contains(calls[0], "issue(id") ||
		!strings.HasPrefix(calls[1], "linear_graphql ok=true") || !strings.Contains(calls[1], renamedTitle) {
		t.Errorf("tracker_tool events %q; want the query and the update, both ok", calls)
	}
	if strings.Contains(rp.raw, agentToolsKey) {
		t.Error("the key is in the run's export")
	}
	noKeyUnder(t, filepath.Join(r.dataDir, "jetstream"), renamedTitle)
	noKeyUnder(t, r.home, fakeLinearTitle)
	if strings.Contains(r.out.String(), agentToolsKey) {
		t.Errorf("the key is in symphony's output:\n%s", r.out)
	}
}

// toolTexts is what each request's tool outputs told the model.
func toolTexts(reqs []mockopenai.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.ToolResultText())
	}
	return out
}

// checkCodexTree reads the environment and command line of every process
// of the run: neither holds the key or its variable; codex is among them,
// and no `symphony mcp` (codex's tools come back over its own stdio).
func checkCodexTree(t *testing.T, run string, symphonyPID int) {
	t.Helper()
	tree := codexProcesses(t, run)
	var sawCodex bool
	for _, pid := range tree {
		if pid == symphonyPID {
			t.Errorf("symphony itself (pid %d) is marked as the run's", pid)
			continue
		}
		env, errEnv := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		argv, errArgv := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if errEnv != nil || errArgv != nil {
			continue // ended meanwhile
		}
		args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00")
		if strings.Contains(string(env), agentToolsKey) || strings.Contains(string(argv), agentToolsKey) {
			t.Errorf("the key is in the environment or command line of pid %d (%q)", pid, args)
		}
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if strings.HasPrefix(kv, "LINEAR_API_KEY=") {
				t.Errorf("pid %d (%q) has LINEAR_API_KEY in its environment", pid, args)
			}
		}
		sawCodex = sawCodex || slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "codex") })
		if len(args) >= 2 && args[0] == binary && args[1] == "mcp" {
			t.Errorf("a codex run started `symphony mcp` (pid %d)", pid)
		}
	}
	if !sawCodex {
		t.Errorf("no codex among the run's processes %v", tree)
	}
	t.Logf("looked for the key in the environment and command line of %d processes of run %s", len(tree), run)
}

// TestCodexApprovalIsDeclined: under approval_policy untrusted codex asks
// before the model's non-read-only command; there is no operator, so
// Symphony declines (as codex_turn.go documents), the command never runs,
// the model hears it was rejected and ends its turn, and the run ends
// blocked saying codex was refused approval — it does not hang.
func TestCodexApprovalIsDeclined(t *testing.T) {
	model := mockopenai.New(mockopenai.Exec("touch approved.txt"), mockopenai.Text("I was not allowed to touch it."))
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{approval: "untrusted"})
	r.waitOutput(t, 0, "run blocked; waiting for an operator", "refused approval")
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r.wait(t)

	if _, err := os.Stat(filepath.Join(r.dir, "ws", "SYM-1", "approved.txt")); err == nil {
		t.Error("the declined command ran: approved.txt exists")
	}
	reqs := model.Responses()
	if len(reqs) != 2 || !strings.Contains(reqs[1].ToolResultText(), "rejected") {
		t.Errorf("the model's requests: %d, tool outputs %q; want the command's rejection", len(reqs), toolTexts(reqs))
	}
	sums := summaries(t, r.dataDir)
	if len(sums) != 1 || sums[0].Status != bus.RunBlocked || !strings.Contains(sums[0].Error, "refused approval") || !strings.Contains(sums[0].Error, "touch approved.txt") {
		t.Fatalf("runs: %+v; want one, blocked: refused approval for the touch", sums)
	}
	rp := replayRun(t, r.dataDir, sums[0].RunID)
	if !slices.ContainsFunc(rp.kinds(bus.TurnSystem), func(ev bus.TurnEvent) bool {
		return strings.Contains(ev.Text, "requestApproval") && strings.Contains(ev.Text, "declined")
	}) {
		t.Errorf("no system event records the declined approval:\n%s", rp.raw)
	}
	var results []string
	for _, ev := range rp.kinds(bus.TurnToolResult) {
		if ev.Tool != nil && ev.Tool.IsError {
			results = append(results, ev.Text)
		}
	}
	if len(results) != 1 || !strings.Contains(results[0], "declined") {
		t.Errorf("failed tool_result events %q; want the declined command", results)
	}
}

// TestCodexUserInputNotReachable: Symphony starts codex's turns in its
// Default mode, where request_user_input is refused by codex itself (only
// Plan mode asks the client, and Symphony never asks for Plan mode): the
// model's call comes back to it as unavailable, the turn goes on and the
// run succeeds. (Symphony's answer to item/tool/requestUserInput — the run
// blocked with the question — is covered with the fake app-server in
// components/agentrunner's TestCodexServerRequests.)
func TestCodexUserInputNotReachable(t *testing.T) {
	ask := mockopenai.FunctionCall("request_user_input", map[string]any{"questions": []any{map[string]any{
		"id": "db", "header": "Database", "question": "Which database should I use?",
		"options": []any{map[string]any{"label": "Postgres", "description": "the usual"}, map[string]any{"label": "SQLite", "description": "small"}},
	}}})
	model := mockopenai.New(ask, mockopenai.Text("I will pick Postgres myself."))
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{args: []string{"--once"}})
	r.wait(t)
	reqs := model.Responses()
	if len(reqs) != 2 || !strings.Contains(reqs[1].ToolResultText(), "unavailable in Default mode") {
		t.Errorf("the model's requests: %d, tool outputs %q; want request_user_input refused by codex", len(reqs), toolTexts(reqs))
	}
	if sums := summaries(t, r.dataDir); len(sums) != 1 || sums[0].Status != bus.RunSucceeded {
		t.Errorf("runs: %+v; want one, succeeded", sums)
	}
}

// TestCodexKilledMidTurn: kill -9 of the app-server (the native codex
// binary, found by the run's marker) while the model holds its answer:
// the run fails with port_exit and no process of the run is left.
func TestCodexKilledMidTurn(t *testing.T) {
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	model := mockopenai.New(mockopenai.Step{Text: "never sent", Gate: gate})
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{args: []string{"--once"}})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := model.WaitResponses(ctx, 1); err != nil {
		t.Fatalf("%v; output:\n%s", err, r.out)
	}
	run := runOf(t, r)
	pid := appServerPID(t, run)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	waitNoProcesses(t, run)
	sums := summaries(t, r.dataDir)
	if len(sums) != 1 || sums[0].RunID != run || sums[0].Status != bus.RunFailed || !strings.HasPrefix(sums[0].Error, "port_exit") {
		t.Fatalf("runs: %+v; want run %s failed with port_exit", sums, run)
	}
	t.Logf("run ended: %s", sums[0].Error)
}

// appServerPID is the run's native codex process (under the node
// launcher `codex` is): the one that speaks the protocol.
func appServerPID(t *testing.T, run string) int {
	t.Helper()
	var found []int
	var all []string
	for _, pid := range codexProcesses(t, run) {
		args := cmdline(pid)
		all = append(all, fmt.Sprintf("%d %q", pid, args))
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == "codex" {
			found = append(found, pid)
		}
	}
	// Codex may run helpers of its own binary (its sandbox re-executes
	// itself): the app-server is the native codex whose parent is not one.
	found = slices.DeleteFunc(found, func(pid int) bool { return slices.Contains(found, parentPID(pid)) })
	if len(found) != 1 {
		t.Fatalf("want one native codex process, not a child of another, among the run's: %s", all)
	}
	t.Logf("the run's processes: %s", all)
	return found[0]
}

// TestSymphonyKilledWhileCodexWorks: kill -9 of `symphony run` while codex
// waits for the model; started again on the same data dir, Symphony
// records the run interrupted, and no process of it is left.
func TestSymphonyKilledWhileCodexWorks(t *testing.T) {
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	model := mockopenai.New(mockopenai.Step{Text: "never sent", Gate: gate}, mockopenai.Text("Done after the restart."))
	t.Cleanup(model.Close)
	r := startCodexRun(t, model, codexOpts{})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := model.WaitResponses(ctx, 1); err != nil {
		t.Fatalf("%v; output:\n%s", err, r.out)
	}
	run := runOf(t, r)
	_ = appServerPID(t, run)
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.done
	r.exited = true
	// Logged, not asserted: what the kill -9 left behind by itself (codex's
	// native binary under its killed node launcher).
	left := codexProcesses(t, run)
	for end := time.Now().Add(2 * time.Second); len(left) > 0 && time.Now().Before(end); left = codexProcesses(t, run) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("2 s after symphony's kill -9, %d processes of run %s are alive", len(left), run)

	// Started again, with --once: the crashed run is recorded (the issue
	// may be dispatched again, its model answer the script's second step).
	again := &codexRun{agentRun: &agentRun{dir: r.dir, dataDir: r.dataDir, wf: r.wf, out: &lockedBuffer{}, done: make(chan error, 1)}, model: model, home: r.home}
	again.cmd = exec.Command(binary, "--data-dir", r.dataDir, "run", r.wf, "--port", "0", "--once")
	again.cmd.Env, again.cmd.Stdout, again.cmd.Stderr = r.cmd.Env, again.out, again.out
	if err := again.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { again.done <- again.cmd.Wait() }()
	t.Cleanup(func() {
		if !again.exited {
			_ = again.cmd.Process.Kill()
			<-again.done
		}
	})
	again.wait(t)
	waitNoProcesses(t, run)
	var crashed *bus.RunSummary
	sums := summaries(t, r.dataDir)
	for i := range sums {
		if sums[i].RunID == run {
			crashed = &sums[i]
		}
	}
	if crashed == nil || crashed.Status != bus.RunInterrupted {
		t.Fatalf("runs: %+v; want run %s interrupted", sums, run)
	}
	t.Logf("the crashed run: %s %q", crashed.Status, crashed.Error)
}
