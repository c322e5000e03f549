package main

import (
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
	"strings"
	"sync"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/mockanthropic"
)

// The end-to-end test of issue #25's tool: the real `symphony run` with a
// GitHub tracker on a loopback fake, the real claude CLI against the
// scripted model, and mcp__symphony__github_api. The agent reads its issue,
// comments on it and moves it (its status: label) without ever holding the
// token.

const githubAPITool = "mcp__symphony__github_api"

// fakeGitHubTitle is the title the fake gives issue 7; the model must
// read it back in its tool result.
const fakeGitHubTitle = "Fake GitHub says the title is 77c1"

// agentGitHub is a fake GitHub REST API for acme/app: issue 7, its
// labels changed by a PATCH, comments created by a POST. Every request is
// recorded with its Authorization; one without the token gets 401.
type agentGitHub struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []ghRequest
	// labels are issue 7's labels.
	labels   []string
	comments []string
}

type ghRequest struct {
	Method, Path, Auth, Body string
}

func newAgentGitHub(t *testing.T) *agentGitHub {
	f := &agentGitHub{labels: []string{"status:Todo", "agent"}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *agentGitHub) requests() []ghRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func (f *agentGitHub) issue() map[string]any {
	labels := []any{}
	for _, l := range f.labels {
		labels = append(labels, map[string]any{"name": l})
	}
	return map[string]any{"id": 1007, "node_id": "I_kwDOE2E7", "number": 7, "title": fakeGitHubTitle, "body": "Do the thing.",
		"state": "open", "html_url": "https://github.com/acme/app/issues/7", "repository_url": "https://api.github.com/repos/acme/app",
		"labels": labels, "assignees": []any{}, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T01:00:00Z"}
}

func (f *agentGitHub) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := readAllLimited(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, ghRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: string(raw)})
	if r.Header.Get("Authorization") != "Bearer "+agentToolsKey {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var out any
	status := http.StatusOK
	switch key := r.Method + " " + r.URL.Path; key {
	case "GET /repos/acme/app/issues":
		out = []any{f.issue()}
	case "GET /repos/acme/app/issues/7":
		out = f.issue()
	case "POST /repos/acme/app/issues/7/comments":
		var c struct {
			Body string `json:"body"`
		}
		_ = json.Unmarshal(raw, &c)
		f.comments = append(f.comments, c.Body)
		status, out = http.StatusCreated, map[string]any{"id": len(f.comments), "body": c.Body}
	case "PATCH /repos/acme/app/issues/7":
		var p struct {
			Labels []string `json:"labels"`
		}
		_ = json.Unmarshal(raw, &p)
		if p.Labels != nil {
			f.labels = p.Labels
		}
		out = f.issue()
	default:
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Ratelimit-Remaining", "4990")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

const githubToolsWorkflow = `---
tracker:
  kind: github
  provider: {repo: acme/app, endpoint: %q, api_key: $GITHUB_TOKEN, state_labels: "status:"}
  active_states: [Todo]
  terminal_states: [Done, closed]
polling: {interval_ms: 600000}
workspace: {root: ws}
hooks:
  after_create: env > hook-environment.txt
agent: {max_turns: 1}
claude: {permission_mode: acceptEdits, turn_timeout_ms: 120000}
---
Work on {{ issue.identifier }}.
`

// TestAgentActsOnItsGitHubIssueWithoutTheToken: claude, in one turn, reads
// its issue through github_api (the title comes back), comments on it and
// moves it to Human Review by its status: label (the fake receives both
// with the token), tries another issue and a write on the repository
// (both refused with their rule, never sent), and ends; the run succeeds.
// The token is in no environment or command line of the agent's process
// tree, nor in its MCP config, the workspace, claude's files, the store
// or the output.
func TestAgentActsOnItsGitHubIssueWithoutTheToken(t *testing.T) {
	script := newToolScript(1,
		map[string]any{"method": "GET", "path": "/repos/acme/app/issues/7"},
		map[string]any{"method": "POST", "path": "/repos/acme/app/issues/7/comments", "body": map[string]any{"body": "Working on it from Symphony."}},
		map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/7", "body": map[string]any{"labels": []any{"status:Human Review", "agent"}}},
		map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/8", "body": map[string]any{"state": "closed"}},
		map[string]any{"method": "DELETE", "path": "/repos/acme/app"})
	script.tool = githubAPITool
	cli, err := mockanthropic.CLIPath()
	if err != nil {
		t.Fatalf("the real claude CLI is required (install it with `go tool task tools`): %v", err)
	}
	model := mockanthropic.NewResponder(script.respond)
	t.Cleanup(model.Close)
	gh := newAgentGitHub(t)
	dir := t.TempDir()
	r := &agentRun{dir: dir, dataDir: filepath.Join(dir, "data"), claudeDir: filepath.Join(dir, "claude-config"),
		wf: filepath.Join(dir, "WORKFLOW.md"), script: script, out: &lockedBuffer{}, done: make(chan error, 1)}
	writeFile(t, r.wf, fmt.Sprintf(githubToolsWorkflow, gh.srv.URL))
	r.cmd = exec.Command(binary, "--data-dir", r.dataDir, "run", r.wf, "--port", "0", "--once")
	r.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GITHUB_TOKEN=") || strings.HasPrefix(kv, "SYMPHONY_")
	}), mockanthropic.Env(model.URL(), r.claudeDir)...)
	r.cmd.Env = append(r.cmd.Env, "CLAUDE_CLI="+cli, "GITHUB_TOKEN="+agentToolsKey)
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

	r.waitPaused(t)
	config, run := mcpConfigOf(t, r.dataDir)
	checkAgentTree(t, run, r.cmd.Process.Pid, "GITHUB_TOKEN")
	checkMCPConfig(t, config)
	close(script.gate)
	r.wait(t)

	results, errs := script.outcome()
	for _, e := range errs {
		t.Error(e)
	}
	checkModelSawGitHub(t, results)
	checkGitHubSaw(t, gh)
	checkGitHubTranscript(t, r.dataDir, run)
	if _, err := os.Stat(config); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the run's MCP config outlived the run: %v", err)
	}
	noKeyUnder(t, filepath.Join(r.dir, "ws"), "ISSUE_IDENTIFIER=app-7")
	noKeyUnder(t, r.claudeDir, fakeGitHubTitle)
	noKeyUnder(t, filepath.Join(r.dataDir, "jetstream"), "Working on it from Symphony.")
	noKeyUnder(t, r.dataDir, "")
	if strings.Contains(r.out.String(), agentToolsKey) {
		t.Errorf("the token is in symphony's output:\n%s", r.out)
	}
}

func checkModelSawGitHub(t *testing.T, results []scriptResult) {
	t.Helper()
	want := []struct {
		isErr bool
		has   []string
	}{
		{false, []string{fakeGitHubTitle, `"status":200`}},
		{false, []string{`"status":201`, "Working on it"}},
		{false, []string{"status:Human Review"}},
		{true, []string{"rule: target_not_own_issue"}},
		{true, []string{"rule: write_not_allowed"}},
	}
	if len(results) != len(want) {
		t.Fatalf("the model got %d tool results, want %d: %+v", len(results), len(want), results)
	}
	for i, w := range want {
		r := results[i]
		if r.isErr != w.isErr || slices.ContainsFunc(w.has, func(s string) bool { return !strings.Contains(r.text, s) }) {
			t.Errorf("call %d: the model saw (error %v) %q; want error %v and %q", i+1, r.isErr, r.text, w.isErr, w.has)
		}
		if strings.Contains(r.text, agentToolsKey) {
			t.Errorf("call %d: the token is in the result the model saw", i+1)
		}
	}
}

// checkGitHubSaw: every request carried the token; the comment and the
// move arrived once each; nothing was sent for the refused calls.
func checkGitHubSaw(t *testing.T, gh *agentGitHub) {
	t.Helper()
	var writes []ghRequest
	for _, r := range gh.requests() {
		if r.Auth != "Bearer "+agentToolsKey {
			t.Errorf("a request to GitHub without the token: %s %s (Authorization %q)", r.Method, r.Path, r.Auth)
		}
		if r.Method != http.MethodGet {
			writes = append(writes, r)
		}
	}
	if len(writes) != 2 || writes[0].Method != "POST" || writes[1].Method != "PATCH" || writes[1].Path != "/repos/acme/app/issues/7" {
		t.Fatalf("GitHub received the writes %+v, want the comment and the PATCH of issue 7", writes)
	}
	gh.mu.Lock()
	defer gh.mu.Unlock()
	if !slices.Equal(gh.comments, []string{"Working on it from Symphony."}) || !slices.Contains(gh.labels, "status:Human Review") {
		t.Errorf("GitHub's issue 7 after the run: comments %q, labels %q", gh.comments, gh.labels)
	}
}

// checkGitHubTranscript: the run succeeded and holds the five calls as
// tracker_tool events with their outcome and rule; the export holds no
// token.
func checkGitHubTranscript(t *testing.T, dataDir, run string) {
	t.Helper()
	code, out := runCLI(t, "--data-dir", dataDir, "runs", "--json")
	var sum bus.RunSummary
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &sum) != nil || sum.RunID != run || sum.Status != bus.RunSucceeded || sum.Issue.Identifier != "app-7" {
		t.Errorf("runs --json: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "replay", run, "--jsonl")
	if code != 0 || strings.Contains(out, agentToolsKey) {
		t.Fatalf("replay --jsonl: exit %d (the token in it: %v)", code, strings.Contains(out, agentToolsKey))
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
	rules := []string{"", "", "", "target_not_own_issue", "write_not_allowed"}
	if len(calls) != len(rules) {
		t.Fatalf("the transcript holds %d tracker_tool events, want %d:\n%s", len(calls), len(rules), out)
	}
	for i, rule := range rules {
		if c := calls[i]; c.Tool != "github_api" || c.OK != (rule == "") || c.Rule != rule {
			t.Errorf("tracker_tool event %d: %+v; want rule %q", i+1, c, rule)
		}
	}
}
