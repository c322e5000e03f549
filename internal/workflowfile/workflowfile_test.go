package workflowfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

const secretValue = "lin_api_s3cr3t-value-never-printed"

func testEnv(vars map[string]string) Env {
	return Env{
		LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		Home:      "/home/op",
		TempDir:   "/tmp/t",
	}
}

func parse(t *testing.T, src string, vars map[string]string) (*Result, error) {
	t.Helper()
	return Parse("/repo/WORKFLOW.md", []byte(src), testEnv(vars))
}

func mustParse(t *testing.T, src string, vars map[string]string) *Result {
	t.Helper()
	r, err := parse(t, src, vars)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

const minimalFiles = "---\ntracker:\n  kind: files\n  provider:\n    path: issues\n---\nWork on {{ issue.identifier }}.\n"

func TestDefaults(t *testing.T) {
	r := mustParse(t, minimalFiles, nil)
	want := bus.Config{
		Tracker: bus.TrackerConfig{
			Kind:           "files",
			Provider:       bus.TrackerProvider{Path: "/repo/issues"},
			RequiredLabels: []string{},
			ActiveStates:   []string{"Todo", "In Progress"},
			TerminalStates: []string{"Closed", "Cancelled", "Canceled", "Duplicate", "Done"},
		},
		Polling:   bus.PollingConfig{IntervalMS: 30000},
		Workspace: bus.WorkspaceConfig{Root: "/tmp/t/symphony_workspaces"},
		Hooks:     bus.HooksConfig{TimeoutMS: 60000},
		Agent: bus.AgentConfig{Kind: "claude", MaxConcurrentAgents: 10, MaxTurns: 20, MaxRetryBackoffMS: 300000,
			MaxRunsPerIssue: 10, MaxConcurrentAgentsByState: map[string]int{}},
		Claude: bus.ClaudeConfig{Command: "claude", AllowedTools: []string{}, ExtraArgs: []string{},
			TurnTimeoutMS: 3600000, StallTimeoutMS: 300000},
		Codex: bus.CodexConfig{Command: "codex app-server", TurnTimeoutMS: 3600000, ReadTimeoutMS: 5000, StallTimeoutMS: 300000,
			ApprovalPolicy: json.RawMessage(`"never"`), ThreadSandbox: "workspace-write"},
		Server:  bus.ServerConfig{Port: 4000, Bind: "127.0.0.1"},
		Budget:  bus.BudgetConfig{PerDay: bus.DayBudget{TimeZone: "UTC"}},
		Pricing: map[string]bus.ModelPrice{},
		Notify:  bus.NotifyConfig{TimeoutMS: 60000},
	}
	if !reflect.DeepEqual(r.Config, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", r.Config, want)
	}
	for _, key := range []string{"polling.interval_ms", "workspace.root", "hooks.timeout_ms", "agent.kind", "agent.max_turns", "claude.command", "codex.command", "codex.approval_policy", "codex.thread_sandbox", "codex.turn_sandbox_policy", "server.port", "server.bind", "tracker.active_states",
		"agent.max_runs_per_issue", "budget.per_run.usd", "budget.per_run.tokens", "budget.per_issue.usd", "budget.per_issue.tokens",
		"budget.per_issue.runs", "budget.per_issue.turns", "budget.per_day.usd", "budget.per_day.tokens", "budget.per_day.time_zone",
		"pricing", "notify.command", "notify.timeout_ms"} {
		if !slices.Contains(r.Defaults, key) {
			t.Errorf("%s not marked as a default (%v)", key, r.Defaults)
		}
	}
	if slices.Contains(r.Defaults, "tracker.kind") {
		t.Error("tracker.kind was given, not defaulted")
	}
	if r.PromptTemplate != "Work on {{ issue.identifier }}." {
		t.Errorf("prompt = %q", r.PromptTemplate)
	}
	if len(r.Checksum) != 64 {
		t.Errorf("checksum %q", r.Checksum)
	}
}

func TestEveryKeyIsRead(t *testing.T) {
	src := `---
tracker:
  kind: LINEAR
  provider:
    project_slug: $SLUG
    api_key: $MY_KEY
    endpoint: http://127.0.0.1:9999/graphql
    assignee: me
  required_labels: "Agent,  Backend ,agent"
  active_states: [Todo, "In Progress"]
  terminal_states: Done, Closed
  tools: {linear_graphql: Any}
polling: {interval_ms: "5000"}
workspace: {root: $WS/ws}
hooks:
  after_create: echo a
  before_run: echo b
  after_run: echo c
  before_remove: echo d
  timeout_ms: 1000
  inherit_secrets: true
agent:
  kind: codex
  max_concurrent_agents: 3
  max_turns: 7
  max_retry_backoff_ms: 1000
  max_runs_per_issue: 4
  max_concurrent_agents_by_state: {" In Progress ": 2, Todo: "1", Review: 0, Bad: x}
claude:
  command: /opt/claude
  model: m
  permission_mode: acceptEdits
  allowed_tools: [Read, Edit]
  extra_args: ["--verbose"]
  turn_timeout_ms: 10
  stall_timeout_ms: 0
  strict_mcp_config: true
codex:
  command: codex app-server --x -c 'model="gpt-5.5"'
  turn_timeout_ms: 11
  read_timeout_ms: 12
  stall_timeout_ms: -1
  approval_policy: {granular: {sandbox_approval: true, rules: false, mcp_elicitations: true}}
  thread_sandbox: read-only
  turn_sandbox_policy: {type: workspaceWrite, writableRoots: [/data/ws], networkAccess: true}
server: {port: 0, bind: "::1"}
retention: 7d
budget:
  per_run: {usd: 2.5, tokens: 1000000}
  per_issue: {usd: "10", tokens: 5000000, runs: 6, turns: "80"}
  per_day: {usd: 100, tokens: 90000000, time_zone: Europe/Berlin}
pricing:
  gpt-5.5: {input: 1.25, cached_input: 0.125, output: 10}
  " o3 ": {input: 2, cached_input: 0.5, output: "8"}
notify: {command: ./notify.sh, timeout_ms: 2000}
unknown_key: {ignored: true}
---
body`
	r := mustParse(t, src, map[string]string{"SLUG": "proj", "MY_KEY": secretValue, "WS": "/data"})
	c := r.Config
	checks := map[string][2]any{
		"kind":        {c.Tracker.Kind, "linear"},
		"slug":        {c.Tracker.Provider.ProjectSlug, "proj"},
		"key env":     {c.Tracker.Provider.APIKey.Env(), "MY_KEY"},
		"key value":   {c.Tracker.Provider.APIKey.Value(), secretValue},
		"endpoint":    {c.Tracker.Provider.Endpoint, "http://127.0.0.1:9999/graphql"},
		"assignee":    {c.Tracker.Provider.Assignee, "me"},
		"labels":      {fmt.Sprint(c.Tracker.RequiredLabels), "[agent backend]"},
		"active":      {fmt.Sprint(c.Tracker.ActiveStates), "[Todo In Progress]"},
		"terminal":    {fmt.Sprint(c.Tracker.TerminalStates), "[Done Closed]"},
		"graphql":     {c.Tracker.Tools.LinearGraphQL, "any"},
		"interval":    {c.Polling.IntervalMS, int64(5000)},
		"root":        {c.Workspace.Root, "/data/ws"},
		"hooks":       {c.Hooks.AfterCreate + c.Hooks.BeforeRun + c.Hooks.AfterRun + c.Hooks.BeforeRemove, "echo aecho becho cecho d"},
		"hook to":     {c.Hooks.TimeoutMS, int64(1000)},
		"inherit":     {c.Hooks.InheritSecrets, true},
		"agent kind":  {c.Agent.Kind, "codex"},
		"concurrent":  {c.Agent.MaxConcurrentAgents, 3},
		"turns":       {c.Agent.MaxTurns, 7},
		"backoff":     {c.Agent.MaxRetryBackoffMS, int64(1000)},
		"by state":    {fmt.Sprint(c.Agent.MaxConcurrentAgentsByState), "map[in progress:2 todo:1]"},
		"claude cmd":  {c.Claude.Command, "/opt/claude"},
		"model":       {c.Claude.Model, "m"},
		"perm":        {c.Claude.PermissionMode, "acceptEdits"},
		"tools":       {fmt.Sprint(c.Claude.AllowedTools), "[Read Edit]"},
		"extra":       {fmt.Sprint(c.Claude.ExtraArgs), "[--verbose]"},
		"turn to":     {c.Claude.TurnTimeoutMS, int64(10)},
		"stall":       {c.Claude.StallTimeoutMS, int64(0)},
		"strict mcp":  {c.Claude.StrictMCPConfig, true},
		"codex":       {fmt.Sprintln(c.Codex.Command, c.Codex.TurnTimeoutMS, c.Codex.ReadTimeoutMS, c.Codex.StallTimeoutMS), "codex app-server --x -c 'model=\"gpt-5.5\"' 11 12 -1\n"},
		"approval":    {string(c.Codex.ApprovalPolicy), `{"granular":{"mcp_elicitations":true,"rules":false,"sandbox_approval":true}}`},
		"sandbox":     {c.Codex.ThreadSandbox, "read-only"},
		"turn policy": {string(c.Codex.TurnSandboxPolicy), `{"networkAccess":true,"type":"workspaceWrite","writableRoots":["/data/ws"]}`},
		"server":      {fmt.Sprint(c.Server), "{0 ::1}"},
		"no defaults": {len(r.Defaults), 0},
		"retention":   {c.RetentionMS, int64(7 * 24 * 3600 * 1000)},
		"max runs":    {c.Agent.MaxRunsPerIssue, 4},
		"per run":     {fmt.Sprint(c.Budget.PerRun), "{2.5 1000000}"},
		"per issue":   {fmt.Sprint(c.Budget.PerIssue), "{{10 5000000} 6 80}"},
		"per day":     {fmt.Sprint(c.Budget.PerDay), "{{100 90000000} Europe/Berlin}"},
		"pricing":     {fmt.Sprint(c.Pricing), "map[gpt-5.5:{1.25 0.125 10} o3:{2 0.5 8}]"},
		"notify":      {fmt.Sprint(c.Notify), "{./notify.sh 2000}"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %#v, want %#v", name, c[0], c[1])
		}
	}
	want := []string{
		// A key the loader does not read is named, never silently ignored.
		"unknown_key: not a key Symphony reads; ignored",
		"hooks.inherit_secrets: true: hooks run with the tracker secret",
		"max_concurrent_agents_by_state.Bad", "Review",
		// The scopes this build reads but does not enforce yet say so
		// (budget.per_issue and budget.per_day are enforced: no warning).
		"notify.command: read and shown, but NOT run"}
	if len(r.Warnings) != len(want) {
		t.Errorf("warnings = %q, want %d", r.Warnings, len(want))
	}
	for i, w := range want {
		if i >= len(r.Warnings) || !strings.Contains(r.Warnings[i], w) {
			t.Errorf("warning %d: want %q in %q", i, w, r.Warnings)
		}
	}
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "budget.per_issue") || strings.HasPrefix(w, "budget.per_day") {
			t.Errorf("budget.per_issue and budget.per_day are enforced, yet warned: %q", w)
		}
		if strings.Contains(w, secretValue) {
			t.Errorf("a warning shows the secret: %q", w)
		}
	}
}

// TestFilesTrackerAssignee: the files tracker filters by assignee too, so
// the key is read for it (it was read only for Linear and silently dropped).
func TestFilesTrackerAssignee(t *testing.T) {
	r := mustParse(t, "---\ntracker: {kind: files, provider: {path: /i, assignee: alice}}\n---\n", nil)
	if got := r.Config.Tracker.Provider.Assignee; got != "alice" {
		t.Errorf("files assignee = %q, want alice", got)
	}
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i, assignee: $WHO}}\n---\n", map[string]string{"WHO": "bob"})
	if got := r.Config.Tracker.Provider.Assignee; got != "bob" {
		t.Errorf("files assignee from $WHO = %q, want bob", got)
	}
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\n---\n", nil)
	if got := r.Config.Tracker.Provider.Assignee; got != "" {
		t.Errorf("files assignee unset = %q, want empty", got)
	}
}

// TestLinearGraphQLPolicy: tracker.tools.linear_graphql takes scoped (the
// default), any or off for Linear; the files tracker has no such tool, so
// the value is checked but not kept (as for the other Linear-only keys).
func TestLinearGraphQLPolicy(t *testing.T) {
	linear := "---\ntracker:\n  kind: linear\n  provider: {project_slug: p}\n"
	env := map[string]string{"LINEAR_API_KEY": "k"}
	r := mustParse(t, linear+"---\n", env)
	if got := r.Config.Tracker.Tools.LinearGraphQL; got != bus.LinearGraphQLScoped || !slices.Contains(r.Defaults, "tracker.tools.linear_graphql") {
		t.Errorf("default = %q (defaults %v), want scoped", got, r.Defaults)
	}
	for _, p := range []string{"scoped", "any", "off", " OFF "} {
		r := mustParse(t, linear+"  tools:\n    linear_graphql: \""+p+"\"\n---\n", env)
		if got := r.Config.Tracker.Tools.LinearGraphQL; got != strings.ToLower(strings.TrimSpace(p)) {
			t.Errorf("%q: got %q", p, got)
		}
		if slices.Contains(r.Defaults, "tracker.tools.linear_graphql") {
			t.Errorf("%q: marked as a default", p)
		}
	}
	_, err := parse(t, linear+"  tools:\n    linear_graphql: open\n---\n", env)
	var we *Error
	if !errors.As(err, &we) || we.Class != ClassConfig || we.Key != "tracker.tools.linear_graphql" || we.Line != 6 ||
		!strings.Contains(we.Message, `"open"`) || !strings.Contains(we.Message, "scoped, any or off") {
		t.Errorf("bad value: %#v", err)
	}
	r = mustParse(t, minimalFiles, nil)
	if r.Config.Tracker.Tools != (bus.TrackerToolSettings{}) {
		t.Errorf("files, no key: %+v", r.Config.Tracker.Tools)
	}
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}, tools: {linear_graphql: any}}\n---\n", nil)
	if r.Config.Tracker.Tools != (bus.TrackerToolSettings{}) {
		t.Errorf("files, any: %+v", r.Config.Tracker.Tools)
	}
	if _, err := parse(t, "---\ntracker: {kind: files, provider: {path: /i}, tools: {linear_graphql: nope}}\n---\n", nil); err == nil ||
		!strings.Contains(err.Error(), "tracker.tools.linear_graphql") {
		t.Errorf("files, bad value: %v", err)
	}
}

func TestRetention(t *testing.T) {
	r := mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\nretention: 30d\n---\n", nil)
	if r.Config.RetentionMS != 30*24*3600*1000 || len(r.Warnings) != 0 {
		t.Errorf("retention %d, warnings %q", r.Config.RetentionMS, r.Warnings)
	}
	// Longer than the store's backstop allows: said, and kept (symphony
	// run lengthens the backstop at its start).
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\nretention: 180d\n---\n", nil)
	if r.Config.RetentionMS != 180*24*3600*1000 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "retention: 180d: the store's backstop (90 days by default)") {
		t.Errorf("retention %d, warnings %q", r.Config.RetentionMS, r.Warnings)
	}
	for _, bad := range []string{"3x", "-1d", "0"} {
		if _, err := parse(t, "---\ntracker: {kind: files, provider: {path: /i}}\nretention: \""+bad+"\"\n---\n", nil); err == nil || !strings.Contains(err.Error(), "retention:") {
			t.Errorf("retention %q: %v", bad, err)
		}
	}
}

func TestClaudeCLIOverride(t *testing.T) {
	r := mustParse(t, minimalFiles, map[string]string{"CLAUDE_CLI": "/opt/bin/claude"})
	if r.Config.Claude.Command != "/opt/bin/claude" || slices.Contains(r.Defaults, "claude.command") || len(r.Warnings) != 1 {
		t.Errorf("CLAUDE_CLI: %q %v %v", r.Config.Claude.Command, r.Defaults, r.Warnings)
	}
}

func TestPathsAndIndirection(t *testing.T) {
	vars := map[string]string{"ROOT": "/srv/sym", "EMPTY": "", "LINEAR_API_KEY": secretValue, "SLUG": "from-env"}
	cases := []struct {
		root    string
		want    string
		wantErr string
	}{
		{"~/ws", "/home/op/ws", ""},
		{"~", "/home/op", ""},
		{"$ROOT", "/srv/sym", ""},
		{"$ROOT/ws/../w2", "/srv/sym/w2", ""},
		{"${ROOT}/x", "/srv/sym/x", ""},
		{"rel/ws", "/repo/rel/ws", ""},
		{"ws", "/repo/ws", ""},
		{"/abs//ws/", "/abs/ws", ""},
		{"$UNSET/ws", "", "workspace.root: $UNSET not set or empty"},
		{"$EMPTY", "", "workspace.root: $EMPTY not set or empty"},
	}
	for _, c := range cases {
		r, err := parse(t, fmt.Sprintf("---\ntracker: {kind: files, provider: {path: /i}}\nworkspace: {root: %q}\n---\n", c.root), vars)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("root %q: err = %v, want %q", c.root, err, c.wantErr)
			}
			continue
		}
		if err != nil || r.Config.Workspace.Root != c.want {
			t.Errorf("root %q: got %v, %v; want %q", c.root, r, err, c.want)
		}
	}
	// $NAME indirection applies only when the value is exactly $NAME.
	r := mustParse(t, "---\ntracker: {kind: linear, provider: {project_slug: $SLUG}}\n---\n", vars)
	if r.Config.Tracker.Provider.ProjectSlug != "from-env" || r.Config.Tracker.Provider.APIKey.Env() != "LINEAR_API_KEY" {
		t.Errorf("indirection: %+v", r.Config.Tracker.Provider)
	}
	r = mustParse(t, "---\ntracker: {kind: linear, provider: {project_slug: \"pre-$SLUG\", api_key: \"lit$KEY\"}}\n---\n", vars)
	if r.Config.Tracker.Provider.ProjectSlug != "pre-$SLUG" || r.Config.Tracker.Provider.APIKey.Value() != "lit$KEY" || r.Config.Tracker.Provider.APIKey.Env() != "" {
		t.Errorf("partial $ must stay literal: %+v", r.Config.Tracker.Provider)
	}
	// Hook scripts are not paths: $VAR stays for the shell.
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\nhooks: {after_create: 'echo $ROOT ~'}\n---\n", vars)
	if r.Config.Hooks.AfterCreate != "echo $ROOT ~" {
		t.Errorf("hook script rewritten: %q", r.Config.Hooks.AfterCreate)
	}
}

func TestMissingSecret(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"unset": {},
		"empty": {"LINEAR_API_KEY": ""},
		"blank": {"LINEAR_API_KEY": "   "},
	} {
		_, err := parse(t, "---\ntracker:\n  kind: linear\n  provider:\n    project_slug: p\n---\n", vars)
		var we *Error
		if !errors.As(err, &we) || we.Class != ClassConfig || we.Key != "tracker.provider.api_key" || !strings.Contains(we.Message, "$LINEAR_API_KEY is not set or empty") {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := parse(t, "---\ntracker:\n  kind: linear\n  provider:\n    project_slug: p\n    api_key: $K\n---\n", map[string]string{"K": ""})
	if err == nil || !strings.Contains(err.Error(), "$K is not set or empty") {
		t.Errorf("custom variable: %v", err)
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	vars := map[string]string{"LINEAR_API_KEY": secretValue}
	r := mustParse(t, "---\ntracker: {kind: linear, provider: {project_slug: p}}\n---\n", vars)
	raw, err := json.Marshal(r.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{string(raw), fmt.Sprint(r.Config), fmt.Sprintf("%+v", r.Config), fmt.Sprintf("%#v", r.Config), fmt.Sprintf("%v", r.Config.Tracker.Provider.APIKey)}
	for _, kv := range Effective(r) {
		outputs = append(outputs, kv.Key+"="+kv.Value)
	}
	for _, out := range outputs {
		if strings.Contains(out, secretValue) {
			t.Errorf("secret leaked: %s", out)
		}
	}
	var back bus.ConfigSnapshot
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Config.Tracker.Provider.APIKey.Resolve(func(k string) string { return vars[k] }); got != secretValue {
		t.Errorf("after a bus round trip the tracker resolves %q", got)
	}
	// A literal secret in the file never reaches the snapshot either.
	r = mustParse(t, "---\ntracker: {kind: linear, provider: {project_slug: p, api_key: "+secretValue+"}}\n---\n", nil)
	raw, _ = json.Marshal(r.Snapshot())
	if strings.Contains(string(raw), secretValue) || !strings.Contains(string(raw), `"literal":true`) {
		t.Errorf("literal secret: %s", raw)
	}
}

func TestValidationErrors(t *testing.T) {
	base := "---\ntracker:\n  kind: files\n  provider: {path: /i}\n"
	cases := []struct {
		extra, want string
		line        int
	}{
		{"agent:\n  max_turns: -3\n", "agent.max_turns: must be a positive integer, got -3", 6},
		{"agent:\n  max_turns: 2.5\n", "agent.max_turns: must be an integer, got 2.5", 6},
		{"polling:\n  interval_ms: soon\n", `polling.interval_ms: must be an integer, got "soon"`, 6},
		{"agent:\n  kind: gpt\n", `agent.kind: unsupported agent "gpt"`, 6},
		{"server:\n  port: 70000\n", "server.port: must be 0..65535, got 70000", 6},
		{"server:\n  bind: my-host\n", `server.bind: must be an IP address or localhost`, 6},
		{"agent: 5\n", "agent: must be a map, got 5", 5},
		{"claude:\n  command: ''\n", "claude.command: must not be empty", 6},
		{"claude:\n  allowed_tools: {a: 1}\n", "claude.allowed_tools: must be a list of strings", 6},
		{"hooks:\n  inherit_secrets: yes please\n", "hooks.inherit_secrets: must be true or false", 6},
		{"  tools:\n    linear_graphql: everything\n", `tracker.tools.linear_graphql: unknown policy "everything" (want scoped, any or off)`, 6},
		{"  tools:\n    linear_graphql: [any]\n", "tracker.tools.linear_graphql: must be a string", 6},
		{"  tools: off\n", "tracker.tools: must be a map", 5},
		// The reference specification: invalid hook timeouts fail validation.
		{"hooks:\n  timeout_ms: 0\n", "hooks.timeout_ms: must be a positive integer, got 0", 6},
		{"hooks:\n  timeout_ms: -5\n", "hooks.timeout_ms: must be a positive integer, got -5", 6},
		// A blank required label is an error, not a dropped filter.
		{"  required_labels: [agent, '  ']\n", "tracker.required_labels: entry 2 is blank", 5},
		{"  required_labels: 'agent,,urgent'\n", "tracker.required_labels: entry 2 is blank", 5},
		{"server:\n  host: my-host\n", `server.host: must be an IP address or localhost`, 6},
	}
	for _, c := range cases {
		_, err := parse(t, base+c.extra+"---\n", nil)
		var we *Error
		if !errors.As(err, &we) || we.Class != ClassConfig || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.extra, err, c.want)
			continue
		}
		if we.Line != c.line {
			t.Errorf("%q: line %d, want %d", c.extra, we.Line, c.line)
		}
	}
	for src, want := range map[string]string{
		"---\ntracker: {}\n---\n":                                                     "tracker.kind: required",
		"no front matter at all\n":                                                    "tracker.kind: required",
		"---\ntracker: {kind: jira}\n---\n":                                           `tracker.kind: unsupported tracker "jira"`,
		"---\ntracker: {kind: files}\n---\n":                                          "tracker.provider.path: required",
		"---\ntracker: {kind: linear}\n---\n":                                         "tracker.provider.project_slug: required",
		"---\ntracker: {kind: files, provider: {path: /i}, active_states: []}\n---\n": "tracker.active_states: must name at least one state",
	} {
		if _, err := parse(t, src, map[string]string{"LINEAR_API_KEY": "k"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
}

func TestFrontMatterShapes(t *testing.T) {
	r := mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\n---\n", nil)
	if r.PromptTemplate != "" || r.Template.Source() == "" {
		t.Errorf("empty body should use the default prompt: %q", r.Template.Source())
	}
	r = mustParse(t, "---\r\ntracker: {kind: files, provider: {path: /i}}\r\n---   \r\n\r\n  Body\r\n", nil)
	if r.PromptTemplate != "Body" {
		t.Errorf("CRLF: %q", r.PromptTemplate)
	}
	r = mustParse(t, "\xef\xbb\xbf---\ntracker: {kind: files, provider: {path: /i}}\n---\nB", nil)
	if r.PromptTemplate != "B" {
		t.Errorf("BOM: %q", r.PromptTemplate)
	}
	// A body line of --- after the front matter is body.
	r = mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\n---\nA\n---\nB", nil)
	if r.PromptTemplate != "A\n---\nB" {
		t.Errorf("second fence: %q", r.PromptTemplate)
	}
}

// TestBrokenWorkflows loads every file of testdata/workflows/broken; the
// file name starts with the expected error class.
func TestBrokenWorkflows(t *testing.T) {
	files, err := filepath.Glob("../../testdata/workflows/broken/*.md")
	if err != nil || len(files) < 6 {
		t.Fatalf("broken workflows: %v %v", files, err)
	}
	classes := map[string]bool{}
	for _, f := range files {
		want, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".md"), "-")
		_, err := Load(f, testEnv(nil))
		var we *Error
		if !errors.As(err, &we) || we.Class != want {
			t.Errorf("%s: err = %v, want class %s", filepath.Base(f), err, want)
			continue
		}
		if we.Line == 0 {
			t.Errorf("%s: no line in %v", filepath.Base(f), err)
		}
		classes[we.Class] = true
	}
	for _, c := range []string{ClassParse, ClassFrontMatterNotMap, ClassTemplateParse, ClassTemplateRender, ClassConfig} {
		if !classes[c] {
			t.Errorf("no broken example of %s", c)
		}
	}
	_, err = Load(filepath.Join(t.TempDir(), "WORKFLOW.md"), testEnv(nil))
	var we *Error
	if !errors.As(err, &we) || we.Class != ClassMissingFile {
		t.Errorf("missing file: %v", err)
	}
}

func TestBrokenTemplateLocations(t *testing.T) {
	cases := map[string]struct {
		line int
		want string
	}{
		"template_parse_error.md":            {6, `unterminated "if"`},
		"template_parse_error-include.md":    {5, `undefined tag "include"`},
		"template_render_error.md":           {5, "undefined variable in {{ issue.assignee_name }}"},
		"template_render_error-filter.md":    {4, `undefined filter "shout"`},
		"workflow_parse_error.md":            {6, "sequence end token"},
		"config_validation_error.md":         {6, "agent.max_turns: must be a positive integer, got -3"},
		"workflow_front_matter_not_a_map.md": {2, "must be a map"},
	}
	for name, c := range cases {
		_, err := Load("../../testdata/workflows/broken/"+name, testEnv(nil))
		var we *Error
		if !errors.As(err, &we) || we.Line != c.line || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (line %d), want line %d and %q", name, err, lineOf(we), c.line, c.want)
		}
	}
}

func lineOf(e *Error) int {
	if e == nil {
		return -1
	}
	return e.Line
}

func TestExampleWorkflowsLoad(t *testing.T) {
	env := testEnv(map[string]string{"LINEAR_API_KEY": secretValue})
	r, err := Load("../../testdata/workflows/linear.WORKFLOW.md", env)
	if err != nil {
		t.Fatal(err)
	}
	if r.Config.Tracker.Provider.ProjectSlug == "" || r.Config.Agent.MaxConcurrentAgentsByState["in progress"] != 3 || r.Config.Workspace.Root != "/home/op/symphony/workspaces" {
		t.Errorf("linear example: %+v", r.Config)
	}
	out, err := r.Template.Render(bus.Issue{ID: "1", Identifier: "A-1", Title: "t", State: "Todo"}, nil)
	if err != nil || !strings.Contains(out, "A-1") {
		t.Errorf("render: %q %v", out, err)
	}
	r, err = Load("../../testdata/workflows/files.WORKFLOW.md", env)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../../testdata/demo/issues")
	if r.Config.Tracker.Provider.Path != abs {
		t.Errorf("files path %q, want %q", r.Config.Tracker.Provider.Path, abs)
	}
}

// aliasBombFront is a front matter whose extra_args is an alias of 10¹⁰
// leaves in about 600 bytes.
func aliasBombFront() string {
	var b strings.Builder
	b.WriteString("---\ntracker:\n  kind: files\n  provider:\n    path: issues\nx0: &x0 [x,x,x,x,x,x,x,x,x,x]\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "*x%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("claude:\n  extra_args: *x10\n---\nbody\n")
	return b.String()
}

// TestHostileFrontMatterIsRefusedCheaply: a 100,000-deep [[[…]]] front
// matter took 2.2 GB (the YAML parser's work grows with the square of the
// depth) and an alias bomb is a few hundred bytes of 10¹⁰ values; a
// one-line map with a duplicate key took 80 s and 334 GB at 1 MB (go-yaml
// formats its error by rebuilding the line a token at a time) and a 1 MB
// `[x,x,…]` 782 MB. All are parse errors now, positioned, in memory
// proportional to the file.
func TestHostileFrontMatterIsRefusedCheaply(t *testing.T) {
	deep := "---\ntracker: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n---\nbody\n"
	var dupEnd strings.Builder
	dupEnd.WriteString("---\ntracker: {")
	for i := 0; dupEnd.Len() < 200<<10; i++ {
		dupEnd.WriteString("key" + strconv.Itoa(i) + ": " + strings.Repeat("v", 60) + ", ")
	}
	dupEnd.WriteString("key0: v}\n---\nbody\n")
	for name, c := range map[string]struct{ src, want string }{
		"deep":            {deep, "nested more than"},
		"block":           {"---\ntracker:\n" + strings.Repeat("- ", 100000) + "x\n---\nbody\n", "nested more than"},
		"bomb":            {aliasBombFront(), "aliases expand"},
		"duplicate key":   {dupEnd.String(), `mapping key "key0" already defined`},
		"duplicate keys":  {"---\ntracker: {" + strings.Repeat("k: v, ", (MaxSize-100)/6) + "k: v}\n---\n", "256 KiB"},
		"flat list":       {"---\ntracker: [" + strings.Repeat("x,", 100000) + "x]\n---\n", "more than 10000 list entries"},
		"many flat lists": {"---\n" + strings.Repeat("k: [x,x,x,x,x,x,x,x,x]\n", 1200) + "---\n", "more than 10000 list entries"},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Parse("/repo/WORKFLOW.md", []byte(c.src), testEnv(nil))
		runtime.ReadMemStats(&after)
		var we *Error
		if !errors.As(err, &we) || we.Class != ClassParse || !strings.Contains(we.Message, c.want) {
			t.Errorf("%s: err = %v, want a %s naming %q", name, err, ClassParse, c.want)
			continue
		}
		if name != "bomb" && name != "duplicate keys" && we.Line < 2 {
			t.Errorf("%s: line %d, want the front matter's", name, we.Line)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(2048*len(c.src)) {
			t.Errorf("%s: refusing %d bytes allocated %d bytes", name, len(c.src), n)
		}
	}
}

func TestSizeBound(t *testing.T) {
	big := make([]byte, MaxSize+1)
	_, err := Parse("/x/WORKFLOW.md", big, testEnv(nil))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversize: %v", err)
	}
	path := filepath.Join(t.TempDir(), "WORKFLOW.md")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, testEnv(nil)); err == nil {
		t.Error("oversize file loaded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{minimalFiles, "", "---\n", "---\n---\n", "---\n[\n---\n", "---\na: *b\n---\n", "---\ntracker: {kind: linear}\n---\n{{ x }}",
		aliasBombFront(), "---\ntracker: " + strings.Repeat("[", 100) + "\n---\n", "---\nagent:\n" + strings.Repeat("- ", 100) + "\n---\n", "---\na: &a {b: *a}\nclaude: *a\n---\n",
		"---\ntracker: {kind: linear, provider: {project_slug: p}, tools: {linear_graphql: off}}\n---\n",
		"---\ntracker: {kind: files, provider: {path: /i}, tools: {linear_graphql: any}}\n---\n",
		"---\ntracker: {kind: linear, provider: {project_slug: p}, tools: {linear_graphql: [scoped]}}\n---\n",
		"---\ntracker: {kind: files, provider: {path: /i}}\ncodex: {approval_policy: {granular: {sandbox_approval: true, rules: true, mcp_elicitations: true}}, thread_sandbox: read-only}\n---\n",
		"---\ntracker: {kind: files, provider: {path: /i}}\ncodex: {approval_policy: on-request, turn_sandbox_policy: {type: workspaceWrite, writableRoots: [/w], networkAccess: true}}\n---\n",
		"---\ntracker: {kind: files, provider: {path: /i}}\nagent: {kind: codex, max_runs_per_issue: 3}\ncodex: {command: \"codex app-server -c 'model=\\\"gpt-5.5\\\"'\"}\nbudget: {per_run: {usd: 2.5, tokens: 100}, per_issue: {usd: 9, tokens: 7, runs: 2, turns: 5}, per_day: {usd: .5, tokens: 1000, time_zone: Europe/Berlin}}\npricing: {gpt-5.5: {input: 1.25, cached_input: 0.125, output: 10}, \" o3 \": {input: 0, output: 1}}\nnotify: {command: ./n.sh, timeout_ms: 10}\n---\n"} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("../../testdata/workflows/*/*.md")
	more, _ := filepath.Glob("../../testdata/workflows/*.md")
	for _, p := range append(files, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	env := testEnv(map[string]string{"LINEAR_API_KEY": secretValue})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("/repo/WORKFLOW.md", data, env)
		if err != nil {
			var we *Error
			if !errors.As(err, &we) || we.Class == "" || we.Message == "" {
				t.Fatalf("unclassed error %v", err)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Fatalf("secret in error %v", err)
			}
			return
		}
		if r.Template == nil || r.Checksum == "" {
			t.Fatal("incomplete result")
		}
		// The Codex values are valid JSON within their bound.
		if _, err := json.Marshal(r.Config); err != nil {
			t.Fatalf("config does not marshal: %v", err)
		}
		// Every cap and price the loader accepts is finite and not
		// negative, every priced model within its bound.
		b := r.Config.Budget
		for _, v := range []float64{b.PerRun.USD, b.PerIssue.USD, b.PerDay.USD, float64(b.PerRun.Tokens), float64(b.PerIssue.Tokens), float64(b.PerDay.Tokens), float64(b.PerIssue.Runs), float64(b.PerIssue.Turns)} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("budget %+v", b)
			}
		}
		if _, err := b.PerDay.Location(); err != nil || len(r.Config.Pricing) > MaxPricingModels || r.Config.Agent.MaxRunsPerIssue <= 0 {
			t.Fatalf("time zone %v, %d prices, max runs %d", err, len(r.Config.Pricing), r.Config.Agent.MaxRunsPerIssue)
		}
		for name, p := range r.Config.Pricing {
			if name == "" || len(name) > MaxModelNameLen || name != strings.TrimSpace(name) || !(p.Input >= 0 && p.CachedInput >= 0 && p.Output >= 0) || math.IsInf(p.Input+p.CachedInput+p.Output, 0) {
				t.Fatalf("price %q %+v", name, p)
			}
		}
		if x := r.Config.Codex; len(x.ApprovalPolicy) == 0 || len(x.ApprovalPolicy) > MaxCodexJSON || len(x.TurnSandboxPolicy) > MaxCodexJSON {
			t.Fatalf("codex values %q %q", x.ApprovalPolicy, x.TurnSandboxPolicy)
		}
	})
}
