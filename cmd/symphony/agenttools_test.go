package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/testkit/mockanthropic"
)

// The end-to-end test of issue #21: the real `symphony run` process, the
// real claude CLI against the scripted model, Symphony's MCP server started
// by claude, and a fake Linear on loopback. The agent acts on its ticket
// through mcp__symphony__linear_graphql without ever holding the key.

// agentToolsKey is the tracker key of the test: distinctive, so that
// finding it anywhere is certain to be a leak.
const agentToolsKey = "lin_api_E2E_agent_tools_KEY_9c41f7d2b8"

// linearGraphQL is the Linear tool as claude names it.
const linearGraphQL = "mcp__symphony__linear_graphql"

// fakeLinearTitle is what the fake answers for the agent's query; the
// model must read it back in its tool result.
const fakeLinearTitle = "Fake Linear says the title is 5e1f"

// The documents the scripted model sends, one per step.
const (
	queryOwn     = `query { issue(id: "uuid-1") { id title } }`
	updateOwn    = `mutation Rename($id: String!, $title: String!) { issueUpdate(id: $id, input: {title: $title}) { success } }`
	updateOther  = `mutation { issueUpdate(id: "uuid-2", input: {title: "hijacked"}) { success } }`
	deleteOwn    = `mutation { issueDelete(id: "uuid-1") { success } }`
	renamedTitle = "Renamed by its own agent"
)

// agentLinear is a fake Linear GraphQL endpoint: the poller's queries
// answered from two issues (uuid-1 in Todo until an issueUpdate moves it
// to state-done, uuid-2 in Backlog), the tool's documents answered
// plainly; every request is recorded with its Authorization, and one
// without the key gets 401.
type agentLinear struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []linearRequest
	// done: uuid-1 was moved to Done (an issueUpdate with stateId
	// state-done).
	done bool
}

type linearRequest struct {
	Auth  string
	Query string
	Vars  map[string]any
	Body  string
}

func newAgentLinear(t *testing.T) *agentLinear {
	f := &agentLinear{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *agentLinear) requests() []linearRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func linearNode(id, identifier, state string) map[string]any {
	page := map[string]any{"nodes": []any{}, "pageInfo": map[string]any{"hasNextPage": false}}
	return map[string]any{
		"id": id, "identifier": identifier, "title": "Issue " + identifier, "description": "Do the thing.",
		"priority": 2.0, "branchName": strings.ToLower(identifier), "url": "https://linear.app/x/issue/" + identifier,
		"createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T01:00:00Z",
		"state": map[string]any{"name": state}, "assignee": nil, "labels": page, "inverseRelations": page,
	}
}

func (f *agentLinear) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := readAllLimited(r)
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	_ = json.Unmarshal(raw, &req)
	authorized := r.Header.Get("Authorization") == agentToolsKey
	f.mu.Lock()
	f.log = append(f.log, linearRequest{Auth: r.Header.Get("Authorization"), Query: req.Query, Vars: req.Variables, Body: string(raw)})
	if authorized && strings.Contains(req.Query, "issueUpdate") && strings.Contains(string(raw), "state-done") && strings.Contains(string(raw), "uuid-1") {
		f.done = true
	}
	state := "Todo"
	if f.done {
		state = "Done"
	}
	f.mu.Unlock()
	if !authorized {
		http.Error(w, `{"errors":[{"message":"Authentication required","extensions":{"code":"AUTHENTICATION_ERROR"}}]}`, http.StatusUnauthorized)
		return
	}
	issues := []map[string]any{linearNode("uuid-1", "SYM-1", state), linearNode("uuid-2", "SYM-2", "Backlog")}
	var data any
	switch q := req.Query; {
	case strings.Contains(q, "SymphonyIssuesByStates"), strings.Contains(q, "SymphonyIssuesByIDs"):
		field, key := "state", "states"
		if strings.Contains(q, "SymphonyIssuesByIDs") {
			field, key = "id", "ids"
		}
		want, _ := req.Variables[key].([]any)
		nodes := []map[string]any{}
		for _, iss := range issues {
			v := iss["id"]
			if field == "state" {
				v = iss["state"].(map[string]any)["name"]
			}
			if slices.Contains(want, v) {
				nodes = append(nodes, iss)
			}
		}
		data = map[string]any{"issues": map[string]any{"nodes": nodes, "pageInfo": map[string]any{"hasNextPage": false, "endCursor": nil}}}
	case strings.Contains(q, "SymphonyViewer"):
		data = map[string]any{"viewer": map[string]any{"id": "user-me"}}
	case strings.Contains(q, "issueUpdate"):
		data = map[string]any{"issueUpdate": map[string]any{"success": true}}
	case strings.Contains(q, "issueDelete"):
		data = map[string]any{"issueDelete": map[string]any{"success": true}}
	case strings.Contains(q, "issue("):
		data = map[string]any{"issue": map[string]any{"id": "uuid-1", "title": fakeLinearTitle}}
	default:
		http.Error(w, `{"errors":[{"message":"the fake does not know this document"}]}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func readAllLimited(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20))
	return b.Bytes(), err
}

// toolScript is the scripted model: in its one turn it makes claude
// call linear_graphql with each of calls in order, then answers. The call
// at gateAt is held at a gate, with claude and its MCP server alive, until
// the test has looked at them (paused is closed when it is).
type toolScript struct {
	// tool is the tool as claude names it (linear_graphql unless set).
	tool         string
	calls        []map[string]any
	gateAt       int
	gate, paused chan struct{}

	mu      sync.Mutex
	next    int
	results []scriptResult
	errs    []string
}

type scriptResult struct {
	text  string
	isErr bool
}

func newToolScript(gateAt int, calls ...map[string]any) *toolScript {
	return &toolScript{tool: linearGraphQL, calls: calls, gateAt: gateAt, gate: make(chan struct{}), paused: make(chan struct{})}
}

func call(query string, vars map[string]any) map[string]any {
	in := map[string]any{"query": query}
	if vars != nil {
		in["variables"] = vars
	}
	return in
}

func (s *toolScript) respond(r mockanthropic.Request) mockanthropic.Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !r.ToolResult && (s.next > 0 || !bytes.Contains(r.Body, []byte(`"`+s.tool+`"`))):
		// Not the conversation (or claude was not offered the tool: the
		// test then fails on the missing results).
		return mockanthropic.Text("Nothing to add.")
	case r.ToolResult && !slices.Contains(r.ToolResultTools, s.tool):
		s.errs = append(s.errs, fmt.Sprintf("call %d: a tool result for %v, not %s: %s", s.next, r.ToolResultTools, s.tool, r.ToolResultText))
		return mockanthropic.Text("Something went wrong.")
	case r.ToolResult:
		s.results = append(s.results, scriptResult{text: r.ToolResultText, isErr: r.ToolResultError})
	}
	if s.next >= len(s.calls) {
		return mockanthropic.Text("Done with my issue; the changes I may not make were refused.")
	}
	st := mockanthropic.ToolUse(s.tool, s.calls[s.next])
	if s.next == s.gateAt {
		close(s.paused)
		st.Gate = s.gate
	}
	s.next++
	return st
}

func (s *toolScript) outcome() ([]scriptResult, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.results), slices.Clone(s.errs)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines of the output hold all of subs.
func (l *lockedBuffer) count(subs ...string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(sc.Text(), s) }) {
			n++
		}
	}
	return n
}

const agentToolsWorkflow = `---
tracker:
  kind: linear
  provider: {project_slug: proj, endpoint: %q, api_key: $LINEAR_API_KEY}
  active_states: [Todo]
  terminal_states: [Done]
  tools: {linear_graphql: %s}
polling: {interval_ms: 600000}
workspace: {root: ws}
hooks:
  after_create: env > hook-environment.txt
agent: {max_turns: %d}
claude: {permission_mode: acceptEdits, turn_timeout_ms: 120000}
---
Work on {{ issue.identifier }}.
`

// agentRun is a `symphony run` process with a Linear tracker on the fake,
// the real claude CLI on the scripted model, the key in its environment.
type agentRun struct {
	dir, dataDir, claudeDir, wf string
	linear                      *agentLinear
	script                      *toolScript
	cmd                         *exec.Cmd
	out                         *lockedBuffer
	done                        chan error
	exited                      bool
}

// startAgentRun writes the workflow (linear_graphql scoped, maxTurns) and
// starts `symphony run` on it with the extra arguments.
func startAgentRun(t *testing.T, script *toolScript, maxTurns int, args ...string) *agentRun {
	t.Helper()
	cli, err := mockanthropic.CLIPath()
	if err != nil {
		t.Fatalf("the real claude CLI is required: %v", err)
	}
	model := mockanthropic.NewResponder(script.respond)
	t.Cleanup(model.Close)
	dir := t.TempDir()
	r := &agentRun{dir: dir, dataDir: filepath.Join(dir, "data"), claudeDir: filepath.Join(dir, "claude-config"),
		wf: filepath.Join(dir, "WORKFLOW.md"), linear: newAgentLinear(t), script: script, out: &lockedBuffer{}, done: make(chan error, 1)}
	writeFile(t, r.wf, r.workflow("scoped", maxTurns))
	env := append(mockanthropic.Env(model.URL(), r.claudeDir), "CLAUDE_CLI="+cli, "LINEAR_API_KEY="+agentToolsKey)
	r.start(t, args, []string{"LINEAR_API_KEY=", "SYMPHONY_"}, env)
	return r
}

// start runs `symphony run` on the workflow with the extra arguments, in
// this process's environment less the variables with the drop prefixes,
// plus env; the process is killed when the test ends if it has not
// exited.
func (r *agentRun) start(t *testing.T, args, drop, env []string) {
	t.Helper()
	r.cmd = exec.Command(binary, append([]string{"--data-dir", r.dataDir, "run", r.wf, "--port", "0"}, args...)...)
	r.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(kv, p) })
	}), env...)
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
}

func (r *agentRun) workflow(policy string, maxTurns int) string {
	return fmt.Sprintf(agentToolsWorkflow, r.linear.srv.URL+"/graphql", policy, maxTurns)
}

// waitPaused waits until claude waits at the script's gate.
func (r *agentRun) waitPaused(t *testing.T) {
	t.Helper()
	select {
	case <-r.script.paused:
	case err := <-r.done:
		r.exited = true
		t.Fatalf("symphony ended (%v) before the agent's call at the gate; output:\n%s", err, r.out)
	case <-time.After(2 * testTimeout):
		t.Fatalf("the agent never reached its call at the gate; output:\n%s", r.out)
	}
}

// waitOutput waits until the output has more than n lines holding all of
// subs.
func (r *agentRun) waitOutput(t *testing.T, n int, subs ...string) {
	t.Helper()
	for deadline := time.After(testTimeout); r.out.count(subs...) <= n; {
		select {
		case err := <-r.done:
			r.exited = true
			t.Fatalf("symphony ended (%v) before printing %q; output:\n%s", err, subs, r.out)
		case <-deadline:
			t.Fatalf("no %q within %v; output:\n%s", subs, testTimeout, r.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits for the process to exit 0.
func (r *agentRun) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.done:
		r.exited = true
		if err != nil {
			t.Fatalf("symphony run: %v; output:\n%s", err, r.out)
		}
	case <-time.After(2 * testTimeout):
		t.Fatalf("symphony run did not end; output:\n%s", r.out)
	}
}

// TestAgentActsOnItsIssueWithoutTheKey is the issue's real-client test:
// claude, in one turn, reads its issue through linear_graphql (the data
// comes back), renames it (the fake Linear receives the mutation with the
// key), tries another issue and a forbidden mutation (both refused with
// the rule, never sent), and ends; the run succeeds. Every call is a
// tracker_tool event of the run. The key is in no environment or command
// line of the agent's process tree, nor in its MCP config (both read while
// claude waits for the model), nor in the workspace, claude's own files,
// the store or the output.
//
// The test also reloads the workflow with linear_graphql off while claude
// waits, before the update of its own issue: the update still goes
// through, and the later refusals name the scoped policy's rules, because
// a run's tools are those of its dispatch. (The issue stays Todo: moving
// it mid-run would let the reload's poll stop the run; max_turns 1 and
// --once end it.)
func TestAgentActsOnItsIssueWithoutTheKey(t *testing.T) {
	script := newToolScript(1,
		call(queryOwn, nil),
		call(updateOwn, map[string]any{"id": "uuid-1", "title": renamedTitle}),
		call(updateOther, nil),
		call(deleteOwn, nil))
	r := startAgentRun(t, script, 1, "--once")

	// claude waits for the answer that updates its own issue.
	r.waitPaused(t)
	config, run := mcpConfigOf(t, r.dataDir)
	checkAgentTree(t, run, r.cmd.Process.Pid, "LINEAR_API_KEY")
	checkMCPConfig(t, config)

	// Reload with the tool off; the run keeps the tools of its dispatch.
	before := r.out.count("tracker configured")
	writeFileAtomic(t, r.wf, r.workflow("off", 1))
	r.waitOutput(t, before, "tracker configured")
	close(script.gate)
	r.wait(t)

	results, errs := script.outcome()
	for _, e := range errs {
		t.Error(e)
	}
	checkModelSaw(t, results)
	checkLinearSaw(t, r.linear.requests())
	checkTranscript(t, r.dataDir, run)
	if _, err := os.Stat(config); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the run's MCP config outlived the run: %v", err)
	}
	// Each search has a control that must be found, so a search that
	// cannot see (a compressed store, a missing file) fails instead of
	// passing: the hook's environment dump in the workspace, the tool
	// result in claude's own session files, the recorded arguments in
	// the store.
	noKeyUnder(t, filepath.Join(r.dir, "ws"), "ISSUE_IDENTIFIER=SYM-1")
	noKeyUnder(t, r.claudeDir, fakeLinearTitle)
	noKeyUnder(t, filepath.Join(r.dataDir, "jetstream"), renamedTitle)
	noKeyUnder(t, r.dataDir, "")
	if strings.Contains(r.out.String(), agentToolsKey) {
		t.Errorf("the key is in symphony's output:\n%s", r.out)
	}
}

// TestRunCredentialEndsWithTheRun: the run's credential, taken from its
// MCP config while claude runs — as another run's agent, of the same
// user, could — opens nothing: claude's own `symphony mcp` spent it, the
// copy is refused and Symphony logs that someone read it, and the agent's
// own calls go on working. Once the run has ended (the agent moved its
// issue to Done, so the run stops after its turn), the config is gone and
// the credential is refused while Symphony goes on running.
func TestRunCredentialEndsWithTheRun(t *testing.T) {
	script := newToolScript(0, call(`mutation { issueUpdate(id: "uuid-1", input: {stateId: "state-done"}) { success } }`, nil))
	r := startAgentRun(t, script, 3)
	r.waitPaused(t)
	config, run := mcpConfigOf(t, r.dataDir)
	env := mcpEnvOf(t, config)
	if tools, err := listRunTools(t, env); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("a copy of the live run's spent credential: tools %v, err %v", tools, err)
	}
	r.waitOutput(t, 0, "presented again and refused", "run_id="+run)
	close(script.gate)
	r.waitOutput(t, 0, "msg=\"run finished\"", "component=agentrunner", "run_id="+run, "status=succeeded")
	if _, err := os.Stat(config); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the run's MCP config outlived the run: %v", err)
	}
	tools, err := listRunTools(t, env)
	if err == nil || !strings.Contains(err.Error(), "connect to the tools of run "+run) || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("with the ended run's credential: tools %v, err %v", tools, err)
	} else {
		t.Logf("the ended run's credential: %v", err)
	}
	if results, _ := script.outcome(); len(results) != 1 || results[0].isErr {
		t.Errorf("the agent's call: %+v", results)
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	r.wait(t)
	if n := r.out.count("msg=dispatched"); n != 1 {
		t.Errorf("%d dispatches, want 1 (the issue was Done after the run):\n%s", n, r.out)
	}
}

// mcpEnvOf is the environment the run's MCP config gives `symphony mcp`.
func mcpEnvOf(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		MCPServers map[string]struct {
			Env map[string]string `json:"env"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil || len(cfg.MCPServers["symphony"].Env) == 0 {
		t.Fatalf("the MCP config has no symphony server with an environment (%v):\n%s", err, raw)
	}
	return cfg.MCPServers["symphony"].Env
}

// listRunTools starts `symphony mcp` with env as an MCP client would and
// lists its tools; the error says why it could not (the server's stderr
// included).
func listRunTools(t *testing.T, env map[string]string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cmd := exec.Command(binary, "mcp")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SYMPHONY_") })
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "0"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		_ = cmd.Wait()
		return nil, fmt.Errorf("%w; stderr: %s", err, stderr)
	}
	defer cs.Close()
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%w; stderr: %s", err, stderr)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	return names, nil
}

// mcpConfigOf is the one run's MCP config and the run's id (its name).
func mcpConfigOf(t *testing.T, dataDir string) (string, string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "mcp", "*.json"))
	if len(files) != 1 {
		t.Fatalf("want one MCP config under %s while the run is live, got %v", dataDir, files)
	}
	return files[0], strings.TrimSuffix(filepath.Base(files[0]), ".json")
}

// checkMCPConfig: the config starts `symphony mcp` with the run's
// credential, is readable by its owner alone, and holds no key.
func checkMCPConfig(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("MCP config mode %v, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(agentToolsKey)) {
		t.Errorf("the key is in the MCP config:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte(`"mcp"`)) || !bytes.Contains(raw, []byte(bus.ToolEnvToken)) {
		t.Errorf("the MCP config does not start symphony mcp with a credential:\n%s", raw)
	}
}

// checkAgentTree reads the environment and command line of every process
// of the run (marked SYMPHONY_RUN_ID=run, and their descendants): neither
// the key nor its variable is there; claude and `symphony mcp` are among
// them.
func checkAgentTree(t *testing.T, run string, symphonyPID int, secretVar string) {
	t.Helper()
	roots, err := procscan.Find("SYMPHONY_RUN_ID", run)
	if err != nil {
		t.Fatal(err)
	}
	tree := descendants(roots)
	var sawClaude, sawMCP bool
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
		for _, where := range []struct {
			name string
			raw  []byte
		}{{"environment", env}, {"command line", argv}} {
			if bytes.Contains(where.raw, []byte(agentToolsKey)) {
				t.Errorf("the key is in the %s of pid %d (%q)", where.name, pid, args)
			}
		}
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if strings.HasPrefix(kv, secretVar+"=") {
				t.Errorf("pid %d (%q) has %s in its environment", pid, args, secretVar)
			}
		}
		sawClaude = sawClaude || slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "claude") })
		sawMCP = sawMCP || (len(args) >= 2 && args[0] == binary && args[1] == "mcp")
	}
	if !sawClaude || !sawMCP {
		t.Errorf("the run's processes %v: claude seen %v, `symphony mcp` seen %v", tree, sawClaude, sawMCP)
	}
	t.Logf("looked for the key in the environment and command line of %d processes of run %s", len(tree), run)
}

// descendants is roots and every process below them (by /proc parent).
func descendants(roots []int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		if f := strings.Fields(string(rest)); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	seen := map[int]bool{}
	var out []int
	for queue := slices.Clone(roots); len(queue) > 0; queue = queue[1:] {
		if pid := queue[0]; !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
			queue = append(queue, children[pid]...)
		}
	}
	return out
}

// checkModelSaw: what each call's result told the model.
func checkModelSaw(t *testing.T, results []scriptResult) {
	t.Helper()
	if len(results) != 4 {
		t.Fatalf("the model got %d tool results, want 4: %+v", len(results), results)
	}
	want := []struct {
		isErr bool
		has   []string
	}{
		{false, []string{fakeLinearTitle}},
		{false, []string{`"success":true`}},
		{true, []string{"rule: target_not_own_issue", "uuid-2"}},
		{true, []string{"rule: mutation_not_allowed", "issueDelete"}},
	}
	for i, w := range want {
		r := results[i]
		if r.isErr != w.isErr || slices.ContainsFunc(w.has, func(s string) bool { return !strings.Contains(r.text, s) }) {
			t.Errorf("call %d: the model saw (error %v) %q; want error %v and %q", i+1, r.isErr, r.text, w.isErr, w.has)
		}
		if strings.Contains(r.text, agentToolsKey) {
			t.Errorf("call %d: the key is in the result the model saw", i+1)
		}
	}
}

// checkLinearSaw: every request carried the key; the own-issue update
// arrived once, as the agent sent it; nothing was sent for the refused
// calls.
func checkLinearSaw(t *testing.T, reqs []linearRequest) {
	t.Helper()
	var updates []linearRequest
	for _, r := range reqs {
		if r.Auth != agentToolsKey {
			t.Errorf("a request to Linear without the key (Authorization %q): %s", r.Auth, r.Body)
		}
		if strings.Contains(r.Query, "issueDelete") || strings.Contains(r.Body, "uuid-2") && strings.Contains(r.Query, "mutation") {
			t.Errorf("a refused call reached Linear: %s", r.Body)
		}
		if strings.Contains(r.Query, "issueUpdate") {
			updates = append(updates, r)
		}
	}
	if len(updates) != 1 {
		t.Fatalf("Linear received %d issueUpdate requests, want 1", len(updates))
	}
	if u := updates[0]; u.Vars["id"] != "uuid-1" || u.Vars["title"] != renamedTitle {
		t.Errorf("the update Linear received: %s", u.Body)
	}
}

// checkTranscript reads the run through the CLI after the process ended:
// it succeeded, and holds the four calls as tracker_tool events with their
// outcome and rule; the export holds no key.
func checkTranscript(t *testing.T, dataDir, run string) {
	t.Helper()
	code, out := runCLI(t, "--data-dir", dataDir, "runs", "--json")
	var sum bus.RunSummary
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &sum) != nil || sum.RunID != run || sum.Status != bus.RunSucceeded || sum.Issue.Identifier != "SYM-1" {
		t.Errorf("runs --json: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "replay", run, "--jsonl")
	if code != 0 {
		t.Fatalf("replay --jsonl: exit %d\n%s", code, out)
	}
	if strings.Contains(out, agentToolsKey) {
		t.Error("the key is in the run's export")
	}
	var calls []bus.ToolCallRecord
	for line := range strings.Lines(out) {
		var ev struct {
			Event json.RawMessage `json:"event"`
		}
		var turn bus.TurnEvent
		if json.Unmarshal([]byte(line), &ev) == nil && json.Unmarshal(ev.Event, &turn) == nil && turn.Kind == bus.TurnTrackerTool && turn.TrackerTool != nil {
			calls = append(calls, *turn.TrackerTool)
		}
	}
	want := []struct {
		ok   bool
		rule string
		args string
	}{{true, "", "issue(id"}, {true, "", renamedTitle}, {false, "target_not_own_issue", "uuid-2"}, {false, "mutation_not_allowed", "issueDelete"}}
	if len(calls) != len(want) {
		t.Fatalf("the transcript holds %d tracker_tool events, want %d:\n%s", len(calls), len(want), out)
	}
	for i, w := range want {
		c := calls[i]
		if c.Tool != "linear_graphql" || c.OK != w.ok || c.Rule != w.rule || !strings.Contains(string(c.Arguments), w.args) {
			t.Errorf("tracker_tool event %d: %+v (arguments %s); want ok %v rule %q arguments with %q", i+1, c, c.Arguments, w.ok, w.rule, w.args)
		}
	}
}

// noKeyUnder reads every file under root for the key; control, unless
// empty, must be in one of them.
func noKeyUnder(t *testing.T, root, control string) {
	t.Helper()
	n, controlSeen := 0, control == ""
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		if bytes.Contains(raw, []byte(agentToolsKey)) {
			t.Errorf("the key is in %s", path)
		}
		controlSeen = controlSeen || bytes.Contains(raw, []byte(control))
		return nil
	})
	if err != nil || n == 0 || !controlSeen {
		t.Errorf("read %d files under %s (%v); the control %q was found: %v", n, root, err, control, controlSeen)
	}
	t.Logf("looked for the key in %d files under %s", n, root)
}

// writeFileAtomic replaces path in one rename, so the watcher never reads
// half a file.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
