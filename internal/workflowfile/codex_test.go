package workflowfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

const filesBase = "---\ntracker:\n  kind: files\n  provider: {path: /i}\n"

// TestCodexValuesPassThrough: the values codex 0.169.0 accepts load
// unchanged, as the compact JSON thread/start and turn/start receive.
func TestCodexValuesPassThrough(t *testing.T) {
	cases := []struct {
		codex, approval, sandbox, policy string
	}{
		{"approval_policy: never", `"never"`, "workspace-write", ""},
		{"approval_policy: on-request", `"on-request"`, "workspace-write", ""},
		{"approval_policy: untrusted\n  thread_sandbox: danger-full-access", `"untrusted"`, "danger-full-access", ""},
		{"approval_policy:\n    granular: {sandbox_approval: false, rules: true, mcp_elicitations: false, skill_approval: true}",
			`{"granular":{"mcp_elicitations":false,"rules":true,"sandbox_approval":false,"skill_approval":true}}`, "workspace-write", ""},
		{"turn_sandbox_policy: {type: readOnly}", `"never"`, "workspace-write", `{"type":"readOnly"}`},
		{"turn_sandbox_policy: {type: externalSandbox, networkAccess: enabled}", `"never"`, "workspace-write", `{"networkAccess":"enabled","type":"externalSandbox"}`},
		{"turn_sandbox_policy: {type: dangerFullAccess}\n  thread_sandbox: read-only", `"never"`, "read-only", `{"type":"dangerFullAccess"}`},
		// Keys the loader does not check are Codex's business: passed on.
		{"turn_sandbox_policy: {type: workspaceWrite, writableRoots: [\"/w\", \"/a<b\"], excludeSlashTmp: true, readOnlyAccess: {type: fullAccess}}", `"never"`, "workspace-write",
			`{"excludeSlashTmp":true,"readOnlyAccess":{"type":"fullAccess"},"type":"workspaceWrite","writableRoots":["/w","/a\u003cb"]}`},
	}
	for _, c := range cases {
		r := mustParse(t, filesBase+"codex:\n  "+c.codex+"\n---\n", nil)
		got := r.Config.Codex
		if string(got.ApprovalPolicy) != c.approval || got.ThreadSandbox != c.sandbox || string(got.TurnSandboxPolicy) != c.policy {
			t.Errorf("%q: approval %s, sandbox %q, policy %s; want %s, %q, %s", c.codex, got.ApprovalPolicy, got.ThreadSandbox, got.TurnSandboxPolicy, c.approval, c.sandbox, c.policy)
		}
	}
}

// TestCodexValidationErrors: a value codex 0.169.0 would refuse at
// thread/start or turn/start fails the load, naming the key, its line and
// what is allowed.
func TestCodexValidationErrors(t *testing.T) {
	cases := []struct {
		codex, want string
		line        int
	}{
		{"approval_policy: on-failure", `codex.approval_policy: unknown policy "on-failure" (want "untrusted", "on-request" or "never", or a map with the one key "granular")`, 6},
		{"approval_policy: Never", `unknown policy "Never"`, 6},
		{"approval_policy: 3", `codex.approval_policy: must be a string ("untrusted", "on-request" or "never") or a map with the one key "granular", got 3`, 6},
		{"approval_policy: [never]", "codex.approval_policy: must be a string", 6},
		{"approval_policy:\n    reject: {sandbox_approval: true, rules: true, mcp_elicitations: true}",
			`codex.approval_policy: a map must have exactly one key, "granular"; got "reject"; codex 0.169.0 refuses the older reject form`, 7},
		{"approval_policy: {granular: {sandbox_approval: true, rules: true, mcp_elicitations: true}, x: 1}", `exactly one key, "granular"; got "granular", "x"`, 6},
		{"approval_policy: {}", `exactly one key, "granular"; got `, 6},
		{"approval_policy: {granular: true}", `codex.approval_policy.granular: must be a map of "sandbox_approval", "rules", "mcp_elicitations", "request_permissions" or "skill_approval" flags, got true`, 6},
		{"approval_policy:\n    granular:\n      sandbox_approval: true\n      mcp_elicitations: true", "codex.approval_policy.granular.rules: required (true or false)", 8},
		{"approval_policy:\n    granular:\n      sandbox_approval: true\n      rules: yes\n      mcp_elicitations: true", `codex.approval_policy.granular.rules: must be true or false, got "yes"`, 9},
		{"thread_sandbox: workspaceWrite", `codex.thread_sandbox: unknown sandbox mode "workspaceWrite" (want "read-only", "workspace-write" or "danger-full-access")`, 6},
		{"turn_sandbox_policy: workspace-write", `codex.turn_sandbox_policy: must be a map with a type ("dangerFullAccess", "readOnly", "externalSandbox" or "workspaceWrite"), got "workspace-write"`, 6},
		{"turn_sandbox_policy:\n    type: workspace-write", `codex.turn_sandbox_policy.type: unknown sandbox policy type (want "dangerFullAccess", "readOnly", "externalSandbox" or "workspaceWrite"), got type "workspace-write"`, 7},
		{"turn_sandbox_policy: {networkAccess: true}", "codex.turn_sandbox_policy.type: unknown sandbox policy type (want \"dangerFullAccess\", \"readOnly\", \"externalSandbox\" or \"workspaceWrite\"), got no type", 6},
		{"turn_sandbox_policy: {type: readOnly, x: .nan}", "codex.turn_sandbox_policy: holds NaN, which JSON cannot carry", 6},
		{"command: '  '", "codex.command: must not be empty", 6},
		{"read_timeout_ms: 0", "codex.read_timeout_ms: must be a positive integer, got 0", 6},
		{"turn_timeout_ms: -1", "codex.turn_timeout_ms: must be a positive integer, got -1", 6},
	}
	for _, c := range cases {
		_, err := parse(t, filesBase+"codex:\n  "+c.codex+"\n---\n", nil)
		var we *Error
		if !errors.As(err, &we) || we.Class != ClassConfig || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.codex, err, c.want)
			continue
		}
		if we.Line != c.line {
			t.Errorf("%q: line %d, want %d", c.codex, we.Line, c.line)
		}
	}
}

// TestCodexJSONIsBounded: the JSON built from a policy stays small however
// the YAML spells it (aliases multiply a value without growing the file).
func TestCodexJSONIsBounded(t *testing.T) {
	long := "[" + strings.Repeat(`"/a/rather/long/writable/root/path/entry",`, 120) + `"/x"]`
	aliased := "r: &r [\"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]\nr2: &r2 [*r, *r, *r, *r, *r, *r, *r, *r]\nr3: &r3 [*r2, *r2, *r2, *r2, *r2, *r2, *r2, *r2]\n"
	for name, src := range map[string]string{
		"long":    filesBase + "codex:\n  turn_sandbox_policy: {type: workspaceWrite, writableRoots: " + long + "}\n---\n",
		"aliased": filesBase + aliased + "codex:\n  approval_policy: {granular: {sandbox_approval: true, rules: true, mcp_elicitations: true, x: *r3}}\n---\n",
	} {
		_, err := parse(t, src, nil)
		if err == nil || !strings.Contains(err.Error(), "is longer than 4096 bytes as JSON") {
			t.Errorf("%s: err = %v, want the JSON bound", name, err)
		}
	}
	raw, err := boundedJSON(map[string]any{"type": "readOnly", "n": uint64(1 << 60), "f": 1.5, "z": nil, "s": "é\n\"", "l": []any{true, int64(-2)}})
	if err != nil || string(raw) != `{"f":1.5,"l":[true,-2],"n":1152921504606846976,"s":"é\n\"","type":"readOnly","z":null}` {
		t.Errorf("boundedJSON = %s, %v", raw, err)
	}
}

// TestAgentKindInference: with agent.kind absent, a workflow that
// configures codex and not claude runs codex, and says it was inferred;
// every other combination keeps claude (the default), and an explicit
// kind always wins.
func TestAgentKindInference(t *testing.T) {
	const inferred = "agent.kind: codex (inferred: the workflow configures codex and not claude)"
	cases := []struct {
		extra, kind string
		inferred    bool
	}{
		{"codex: {command: codex app-server}\n", bus.AgentCodex, true},
		{"codex: {}\nagent: {max_turns: 3}\n", bus.AgentCodex, true},
		{"codex:\n", bus.AgentClaude, false},
		{"claude: {model: m}\n", bus.AgentClaude, false},
		{"claude: {model: m}\ncodex: {command: c}\n", bus.AgentClaude, false},
		{"", bus.AgentClaude, false},
		{"agent: {kind: claude}\ncodex: {command: c}\n", bus.AgentClaude, false},
		{"agent: {kind: codex}\nclaude: {model: m}\n", bus.AgentCodex, false},
		{"agent: {kind: codex}\n", bus.AgentCodex, false},
	}
	for _, c := range cases {
		r := mustParse(t, filesBase+c.extra+"---\n", nil)
		if r.Config.Agent.Kind != c.kind {
			t.Errorf("%q: kind %q, want %q", c.extra, r.Config.Agent.Kind, c.kind)
		}
		if got := slices.Contains(r.Warnings, inferred); got != c.inferred {
			t.Errorf("%q: inferred warning %v, want %v (%q)", c.extra, got, c.inferred, r.Warnings)
		}
		for _, w := range r.Warnings {
			if strings.Contains(w, "no codex runner") {
				t.Errorf("%q: stale warning %q", c.extra, w)
			}
		}
		// An inferred kind is not a default; an absent one with nothing
		// to infer from is.
		wantDefault := !strings.Contains(c.extra, "kind:") && !c.inferred
		if got := slices.Contains(r.Defaults, "agent.kind"); got != wantDefault {
			t.Errorf("%q: agent.kind default %v, want %v", c.extra, got, wantDefault)
		}
		if got := slices.Contains(r.Inferred, "agent.kind"); got != c.inferred || len(r.Inferred) > 1 {
			t.Errorf("%q: inferred keys %q", c.extra, r.Inferred)
		}
		for _, s := range Effective(r) {
			if s.Key == "agent.kind" && (s.Inferred != c.inferred || s.Default != wantDefault || s.Value != c.kind) {
				t.Errorf("%q: effective %+v", c.extra, s)
			}
		}
	}
}

// TestEffectiveShowsCodex: every codex key is a line of the effective
// configuration, the Codex values as the JSON sent, defaults marked.
func TestEffectiveShowsCodex(t *testing.T) {
	get := func(r *Result) map[string]Setting {
		m := map[string]Setting{}
		for _, s := range Effective(r) {
			if _, dup := m[s.Key]; dup {
				t.Errorf("%s shown twice", s.Key)
			}
			m[s.Key] = s
		}
		return m
	}
	want := map[string]Setting{
		"codex.command":             {Value: "codex app-server", Default: true},
		"codex.approval_policy":     {Value: `"never"`, Default: true},
		"codex.thread_sandbox":      {Value: "workspace-write", Default: true},
		"codex.turn_sandbox_policy": {Value: TurnSandboxPolicyUnset, Default: true},
		"codex.turn_timeout_ms":     {Value: "3600000", Default: true},
		"codex.read_timeout_ms":     {Value: "5000", Default: true},
		"codex.stall_timeout_ms":    {Value: "300000", Default: true},
	}
	m := get(mustParse(t, minimalFiles, nil))
	for k, w := range want {
		w.Key = k
		if m[k] != w {
			t.Errorf("defaults: %s = %+v, want %+v", k, m[k], w)
		}
	}
	r := mustParse(t, filesBase+"codex:\n  approval_policy: {granular: {sandbox_approval: true, rules: true, mcp_elicitations: false}}\n  thread_sandbox: read-only\n  turn_sandbox_policy: {type: readOnly, networkAccess: true}\n  stall_timeout_ms: 0\n---\n", nil)
	m = get(r)
	for k, v := range map[string]string{
		"codex.approval_policy":     `{"granular":{"mcp_elicitations":false,"rules":true,"sandbox_approval":true}}`,
		"codex.thread_sandbox":      "read-only",
		"codex.turn_sandbox_policy": `{"networkAccess":true,"type":"readOnly"}`,
		"codex.stall_timeout_ms":    "0",
	} {
		if m[k].Value != v || m[k].Default {
			t.Errorf("set: %s = %+v, want %q and not a default", k, m[k], v)
		}
	}
	for k := range m {
		if strings.HasPrefix(k, "codex.approval_policy.") || strings.HasPrefix(k, "codex.turn_sandbox_policy.") {
			t.Errorf("a Codex value was split into %s", k)
		}
	}
}

// TestReferenceWorkflow: a workflow of the reference implementation's
// shape (testdata/workflows/reference-shape.WORKFLOW.md) loads with no error
// and runs codex, with its codex values passed through; pointed at a test
// endpoint it loads the same.
func TestReferenceWorkflow(t *testing.T) {
	const path = "../../testdata/workflows/reference-shape.WORKFLOW.md"
	env := testEnv(map[string]string{"LINEAR_API_KEY": secretValue})
	check := func(name string, r *Result, endpoint string) {
		c := r.Config
		if c.Agent.Kind != bus.AgentCodex || !slices.Contains(r.Warnings, "agent.kind: codex (inferred: the workflow configures codex and not claude)") {
			t.Errorf("%s: kind %q, warnings %q", name, c.Agent.Kind, r.Warnings)
		}
		if len(r.Warnings) != 1 {
			t.Errorf("%s: warnings %q, want only the inferred kind", name, r.Warnings)
		}
		if c.Tracker.Kind != bus.TrackerLinear || c.Tracker.Provider.ProjectSlug != "symphony-0c79b11b75ea" || c.Tracker.Provider.Endpoint != endpoint ||
			c.Tracker.Provider.APIKey.Env() != "LINEAR_API_KEY" || len(c.Tracker.ActiveStates) != 4 {
			t.Errorf("%s: tracker %+v", name, c.Tracker)
		}
		if c.Workspace.Root != "/home/op/code/symphony-workspaces" || c.Polling.IntervalMS != 5000 || c.Agent.MaxTurns != 20 {
			t.Errorf("%s: %+v %+v %+v", name, c.Workspace, c.Polling, c.Agent)
		}
		x := c.Codex
		if !strings.HasPrefix(x.Command, "codex --config shell_environment_policy.inherit=all") || !strings.HasSuffix(x.Command, " app-server") ||
			string(x.ApprovalPolicy) != `"never"` || x.ThreadSandbox != "workspace-write" ||
			string(x.TurnSandboxPolicy) != `{"networkAccess":true,"type":"workspaceWrite"}` ||
			x.TurnTimeoutMS != DefaultTurnTimeoutMS || x.ReadTimeoutMS != DefaultCodexReadTimeoutMS || x.StallTimeoutMS != DefaultStallTimeoutMS {
			t.Errorf("%s: codex %+v (%s, %s)", name, x, x.ApprovalPolicy, x.TurnSandboxPolicy)
		}
		for _, k := range []string{"codex.approval_policy", "codex.thread_sandbox", "codex.turn_sandbox_policy", "codex.command", "agent.kind"} {
			if slices.Contains(r.Defaults, k) {
				t.Errorf("%s: %s marked as a default", name, k)
			}
		}
		if _, err := r.Template.Render(bus.Issue{ID: "1", Identifier: "SYM-1", Title: "t", State: "Todo"}, nil); err != nil {
			t.Errorf("%s: render: %v", name, err)
		}
	}
	r, err := Load(path, env)
	if err != nil {
		t.Fatalf("reference workflow: %v", err)
	}
	check("as shipped", r, DefaultLinearEndpoint)

	// The same file with its tracker pointed at a local test endpoint
	// (the copy gains one line; the testdata stays as it is).
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const slug = "    project_slug: \"symphony-0c79b11b75ea\"\n"
	const endpoint = "http://127.0.0.1:18080/graphql"
	if !strings.Contains(string(src), slug) {
		t.Fatalf("reference workflow lacks %q", slug)
	}
	local := filepath.Join(t.TempDir(), "WORKFLOW.md")
	if err := os.WriteFile(local, []byte(strings.Replace(string(src), slug, slug+"    endpoint: "+endpoint+"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = Load(local, env)
	if err != nil {
		t.Fatalf("reference workflow on a test endpoint: %v", err)
	}
	check("test endpoint", r, endpoint)

	// Without the key it names the variable, as any Linear workflow does.
	if _, err := Load(path, testEnv(nil)); err == nil || !strings.Contains(err.Error(), "tracker.provider.api_key: $LINEAR_API_KEY is not set or empty") {
		t.Errorf("no key: %v", err)
	}
}
