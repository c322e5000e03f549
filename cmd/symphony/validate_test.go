package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// validateWith runs symphony validate with extra environment variables.
func validateWith(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"validate"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// settingLine matches one line of validate's effective configuration.
func settingLine(key string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(key) + ` +(.*?) *(\((?:default|inferred)\))? *$`)
}

// TestValidateReferenceWorkflow: a workflow of the reference
// implementation's shape (testdata/workflows/reference-shape.WORKFLOW.md) is valid, runs codex (inferred: it configures codex and not
// claude, and validate says so) and shows its codex values as written.
func TestValidateReferenceWorkflow(t *testing.T) {
	const secret = "lin_api_reference_secret_value"
	wf := "../../testdata/workflows/reference-shape.WORKFLOW.md"
	code, out := validateWith(t, []string{"LINEAR_API_KEY=" + secret}, wf)
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	if strings.Contains(out, secret) {
		t.Error("validate printed the secret")
	}
	for key, want := range map[string][2]string{
		"agent.kind":                {"codex", "(inferred)"},
		"codex.approval_policy":     {`"never"`, ""},
		"codex.thread_sandbox":      {"workspace-write", ""},
		"codex.turn_sandbox_policy": {`{"networkAccess":true,"type":"workspaceWrite"}`, ""},
		"codex.turn_timeout_ms":     {"3600000", "(default)"},
		"codex.read_timeout_ms":     {"5000", "(default)"},
		"codex.stall_timeout_ms":    {"300000", "(default)"},
	} {
		m := settingLine(key).FindStringSubmatch(out)
		if m == nil || m[1] != want[0] || m[2] != want[1] {
			t.Errorf("%s: line %q, want %q %q", key, m, want[0], want[1])
		}
	}
	if m := settingLine("codex.command").FindStringSubmatch(out); m == nil || !strings.HasSuffix(m[1], " app-server") || m[2] != "" {
		t.Errorf("codex.command: line %q", m)
	}
	if !strings.Contains(out, "Warnings:\n  agent.kind: codex (inferred: the workflow configures codex and not claude)\n") {
		t.Errorf("validate does not say the kind was inferred:\n%s", out)
	}
	if strings.Contains(out, "no codex runner") {
		t.Errorf("validate still says there is no codex runner:\n%s", out)
	}

	code, out = validateWith(t, []string{"LINEAR_API_KEY=" + secret}, "--json", wf)
	var res validateJSON
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.Valid {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	found := 0
	for _, s := range res.Settings {
		switch {
		case s.Key == "codex.turn_sandbox_policy" && s.Value == `{"networkAccess":true,"type":"workspaceWrite"}` && !s.Default:
			found++
		case s.Key == "agent.kind" && s.Value == "codex" && s.Inferred && !s.Default:
			found++
		case s.Inferred:
			t.Errorf("--json: %s marked inferred", s.Key)
		}
	}
	if found != 2 {
		t.Errorf("--json: turn_sandbox_policy and the inferred agent.kind: %d of 2 found: %+v", found, res.Settings)
	}
}

// TestValidateShowsCodexKeys: every codex key is shown with its default,
// and a value Codex would refuse fails validation naming the key and what
// is allowed.
func TestValidateShowsCodexKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, codex string) string {
		p := filepath.Join(dir, name+".md")
		src := "---\ntracker: {kind: files, provider: {path: issues}}\n" + codex + "---\nbody\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, out := runCLI(t, "validate", write("defaults", ""))
	if code != 0 {
		t.Fatalf("defaults: exit %d\n%s", code, out)
	}
	for key, value := range map[string]string{
		"agent.kind":                "claude",
		"codex.command":             "codex app-server",
		"codex.approval_policy":     `"never"`,
		"codex.thread_sandbox":      "workspace-write",
		"codex.turn_sandbox_policy": "null (a workspaceWrite policy rooted at each run's workspace)",
		"codex.turn_timeout_ms":     "3600000",
		"codex.read_timeout_ms":     "5000",
		"codex.stall_timeout_ms":    "300000",
	} {
		m := settingLine(key).FindStringSubmatch(out)
		if m == nil || m[1] != value || m[2] != "(default)" {
			t.Errorf("default %s: line %q, want %q (default)", key, m, value)
		}
	}
	if strings.Contains(out, "inferred") {
		t.Errorf("a workflow without a codex section inferred the kind:\n%s", out)
	}

	code, out = runCLI(t, "validate", write("granular", "codex:\n  approval_policy: {granular: {sandbox_approval: true, rules: true, mcp_elicitations: false}}\n"))
	m := settingLine("codex.approval_policy").FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] != `{"granular":{"mcp_elicitations":false,"rules":true,"sandbox_approval":true}}` || m[2] != "" {
		t.Errorf("granular: exit %d, line %q\n%s", code, m, out)
	}
	if m := settingLine("agent.kind").FindStringSubmatch(out); m == nil || m[1] != "codex" || m[2] != "(inferred)" || !strings.Contains(out, "agent.kind: codex (inferred") {
		t.Errorf("granular: agent.kind line %q\n%s", m, out)
	}

	for name, c := range map[string][2]string{
		"approval": {"codex:\n  approval_policy: on-failure\n", `codex.approval_policy: unknown policy "on-failure" (want "untrusted", "on-request" or "never", or a map with the one key "granular")`},
		"sandbox":  {"codex:\n  thread_sandbox: workspaceWrite\n", `codex.thread_sandbox: unknown sandbox mode "workspaceWrite" (want "read-only", "workspace-write" or "danger-full-access")`},
		"policy":   {"codex:\n  turn_sandbox_policy: {type: fullAccess}\n", `codex.turn_sandbox_policy.type: unknown sandbox policy type (want "dangerFullAccess", "readOnly", "externalSandbox" or "workspaceWrite"), got type "fullAccess"`},
	} {
		code, out := runCLI(t, "validate", write(name, c[0]))
		if code != 1 || !strings.Contains(out, "config_validation_error") || !strings.Contains(out, c[1]) {
			t.Errorf("%s: exit %d, want 1 and %q\n%s", name, code, c[1], out)
		}
	}
}

// TestValidateShowsSpendKeys: validate shows every spend-control key of
// #23 with its effective value — an absent cap as "none", marked as a
// default — refuses a bad value naming key and line, and warns when a USD
// cap is set that codex runs cannot be priced against.
func TestValidateShowsSpendKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, extra string) string {
		p := filepath.Join(dir, name+".md")
		src := "---\ntracker: {kind: files, provider: {path: issues}}\n" + extra + "---\nbody\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	codexHome := filepath.Join(dir, "codex-home")
	if err := os.MkdirAll(codexHome, 0o700); err != nil {
		t.Fatal(err)
	}
	noCodexConfig := []string{"CODEX_HOME=" + filepath.Join(dir, "absent")}

	code, out := validateWith(t, noCodexConfig, write("defaults", ""))
	if code != 0 {
		t.Fatalf("defaults: exit %d\n%s", code, out)
	}
	for key, value := range map[string]string{
		"agent.max_runs_per_issue": "10",
		"budget.per_run.usd":       "none", "budget.per_run.tokens": "none",
		"budget.per_issue.usd": "none", "budget.per_issue.tokens": "none",
		"budget.per_issue.runs": "none", "budget.per_issue.turns": "none",
		"budget.per_day.usd": "none", "budget.per_day.tokens": "none", "budget.per_day.time_zone": "UTC",
		"pricing": "{}", "notify.command": "none (no notifications)", "notify.timeout_ms": "60000",
	} {
		m := settingLine(key).FindStringSubmatch(out)
		if m == nil || m[1] != value || m[2] != "(default)" {
			t.Errorf("default %s: line %q, want %q (default)", key, m, value)
		}
	}
	if strings.Contains(out, "budget:") {
		t.Errorf("defaults: a budget warning without a cap:\n%s", out)
	}

	set := write("set", `agent: {max_runs_per_issue: 4}
budget:
  per_run: {usd: 2.5, tokens: 3000000}
  per_issue: {usd: 20, runs: 8, turns: 120}
  per_day: {usd: 100, time_zone: Europe/Berlin}
pricing:
  gpt-5.5: {input: 1.25, cached_input: 0.125, output: 10}
notify: {command: ./notify.sh, timeout_ms: 5000}
`)
	code, out = validateWith(t, noCodexConfig, set)
	if code != 0 {
		t.Fatalf("set: exit %d\n%s", code, out)
	}
	for key, want := range map[string][2]string{
		"agent.max_runs_per_issue":       {"4", ""},
		"budget.per_run.usd":             {"2.5", ""},
		"budget.per_run.tokens":          {"3000000", ""},
		"budget.per_issue.usd":           {"20", ""},
		"budget.per_issue.tokens":        {"none", "(default)"},
		"budget.per_issue.runs":          {"8", ""},
		"budget.per_issue.turns":         {"120", ""},
		"budget.per_day.usd":             {"100", ""},
		"budget.per_day.tokens":          {"none", "(default)"},
		"budget.per_day.time_zone":       {"Europe/Berlin", ""},
		`pricing."gpt-5.5".input`:        {"1.25", ""},
		`pricing."gpt-5.5".cached_input`: {"0.125", ""},
		`pricing."gpt-5.5".output`:       {"10", ""},
		"notify.command":                 {"./notify.sh", ""},
		"notify.timeout_ms":              {"5000", ""},
	} {
		m := settingLine(key).FindStringSubmatch(out)
		if m == nil || m[1] != want[0] || m[2] != want[1] {
			t.Errorf("set %s: line %q, want %q %q", key, m, want[0], want[1])
		}
	}
	// Claude reports its own cost: a USD cap needs no price.
	if strings.Contains(out, "budget:") {
		t.Errorf("claude with a USD cap: a budget warning:\n%s", out)
	}

	const (
		emptyTable = "  budget: USD caps do not apply to codex runs: codex reports no cost and the pricing table is empty (token caps still apply)\n"
		unknown    = "  budget: USD caps apply to a codex run only if the model it reports at thread/start has a pricing entry"
	)
	codex := func(name, extra string) string {
		return write(name, "agent: {kind: codex}\nbudget: {per_day: {usd: 40}}\n"+extra)
	}
	for _, c := range []struct {
		name, extra, config, want string
	}{
		{"no pricing", "", "", emptyTable},
		{"model unknown", "pricing: {gpt-5.5: {input: 1, output: 8}}\n", "", unknown},
		{"command model unpriced", "codex: {command: \"codex app-server -c model=o3\"}\npricing: {gpt-5.5: {input: 1, output: 8}}\n", "",
			`  budget: USD caps do not apply to codex runs: codex.command sets model "o3" and the pricing table has no entry for it (token caps still apply)` + "\n"},
		{"command model priced", "codex: {command: \"codex app-server -c model=gpt-5.5\"}\npricing: {gpt-5.5: {input: 1, output: 8}}\n", "", ""},
		{"config model priced", "pricing: {gpt-5.5: {input: 1, output: 8}}\n", "model = \"gpt-5.5\"\nmodel_provider = \"openai\"\n[x]\nmodel = \"o3\"\n", ""},
		{"config model unpriced", "pricing: {gpt-5.5: {input: 1, output: 8}}\n", "# mine\nmodel = 'o3'  # fast\n", `sets model "o3" and the pricing table has no entry for it`},
		{"config profile", "pricing: {gpt-5.5: {input: 1, output: 8}}\n", "model = \"gpt-5.5\"\nprofile = \"deep\"\n", unknown},
	} {
		env := noCodexConfig
		if c.config != "" {
			if err := os.WriteFile(filepath.Join(codexHome, "config.toml"), []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			env = []string{"CODEX_HOME=" + codexHome}
		}
		code, out := validateWith(t, env, codex(strings.ReplaceAll(c.name, " ", "-"), c.extra))
		switch {
		case code != 0:
			t.Errorf("%s: exit %d\n%s", c.name, code, out)
		case c.want == "" && strings.Contains(out, "  budget:"):
			t.Errorf("%s: unexpected budget warning\n%s", c.name, out)
		case c.want != "" && (!strings.Contains(out, "Warnings:\n") || !strings.Contains(out, c.want)):
			t.Errorf("%s: want warning %q\n%s", c.name, c.want, out)
		}
		if strings.HasPrefix(c.name, "config model unpriced") && !strings.Contains(out, filepath.Join(codexHome, "config.toml")+` sets model "o3"`) {
			t.Errorf("%s: the warning does not name codex's config file\n%s", c.name, out)
		}
	}

	code, out = validateWith(t, noCodexConfig, write("bad", "pricing:\n  gpt-5.5: {input: 1, output: -2}\n"))
	if code != 1 || !strings.Contains(out, `config_validation_error: `+filepath.Join(dir, "bad.md")+`:4: pricing."gpt-5.5".output: must be a non-negative price in US dollars per million tokens, got -2`) {
		t.Errorf("bad price: exit %d\n%s", code, out)
	}
	code, out = validateWith(t, noCodexConfig, write("badusd", "budget:\n  per_run:\n    usd: .nan\n"))
	if code != 1 || !strings.Contains(out, filepath.Join(dir, "badusd.md")+`:5: budget.per_run.usd: must be a positive amount of US dollars (like 2.5), got NaN`) {
		t.Errorf("bad usd: exit %d\n%s", code, out)
	}
}

// TestValidateShowsGitHubProfile: validate prints the GitHub tracker's
// effective profile (repository, endpoint default, the token masked as
// where it comes from, state labels) and never the token; a project
// board shows its fields; a board with state_labels fails naming the key;
// an unset token fails naming the variable.
func TestValidateShowsGitHubProfile(t *testing.T) {
	const token = "ghp_validateTestTokenNeverPrinted000000"
	code, out := validateWith(t, []string{"GITHUB_TOKEN=" + token}, "../../testdata/workflows/github.WORKFLOW.md")
	if code != 0 || strings.Contains(out, token) {
		t.Fatalf("exit %d (the token printed: %v)\n%s", code, strings.Contains(out, token), out)
	}
	for key, want := range map[string]string{
		"tracker.kind":                  "github",
		"tracker.provider.repo":         "acme/socket.io",
		"tracker.provider.endpoint":     "https://api.github.com",
		"tracker.provider.api_key":      "****** (from $GITHUB_TOKEN)",
		"tracker.provider.assignee":     "me",
		"tracker.provider.state_labels": "status:",
		"tracker.terminal_states":       "[Done, closed]",
	} {
		if m := settingLine(key).FindStringSubmatch(out); m == nil || m[1] != want {
			t.Errorf("%s = %q, want %q", key, m, want)
		}
	}
	if m := settingLine("tracker.provider.endpoint").FindStringSubmatch(out); m == nil || m[2] != "(default)" {
		t.Errorf("the endpoint is not marked default: %q", m)
	}
	// The prompt renders with an issue of the GitHub shape.
	if !strings.Contains(out, "You are working on GitHub issue") {
		t.Errorf("no rendered prompt:\n%s", out)
	}

	dir := t.TempDir()
	p := filepath.Join(dir, "WORKFLOW.md")
	src := "---\ntracker:\n  kind: github\n  provider:\n    repo: acme/app\n    project: acme/7\n    priority_field: Priority\n---\nbody\n"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = validateWith(t, []string{"GITHUB_TOKEN=" + token}, p)
	if m := settingLine("tracker.provider.status_field").FindStringSubmatch(out); code != 0 || m == nil || m[1] != "Status" || m[2] != "(default)" {
		t.Errorf("a project board: exit %d, status_field %q\n%s", code, m, out)
	}
	if m := settingLine("tracker.active_states").FindStringSubmatch(out); m == nil || m[1] != "[Todo, In Progress]" {
		t.Errorf("a project board's states: %q", m)
	}
	src = strings.Replace(src, "    priority_field: Priority\n", "    state_labels: \"status:\"\n", 1)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = validateWith(t, []string{"GITHUB_TOKEN=" + token}, p)
	if code != 1 || !strings.Contains(out, "tracker.provider.project: give tracker.provider.project or tracker.provider.state_labels, not both") {
		t.Errorf("project and state_labels: exit %d\n%s", code, out)
	}
	code, out = validateWith(t, []string{"GITHUB_TOKEN="}, "../../testdata/workflows/github.WORKFLOW.md")
	if code != 1 || !strings.Contains(out, "tracker.provider.api_key: $GITHUB_TOKEN is not set or empty") {
		t.Errorf("unset token: exit %d\n%s", code, out)
	}
}

// TestValidateNamesWhatItDoesNotRead: validate names every key of the file
// it does not read — one of the reference's own sections, a misspelt key,
// a provider key the adapter does not use — and says why, so nothing in a
// migrated WORKFLOW.md is silently ignored; the file stays valid.
func TestValidateNamesWhatItDoesNotRead(t *testing.T) {
	dir := t.TempDir()
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, `---
tracker:
  kind: files
  provider: {path: issues, board: main}
worker: {ssh_hosts: [build-1]}
agent: {max_turn: 4}
server: {host: 127.0.0.1, port: 0}
---
Work on {{ issue.identifier }} ({{ issue.native_ref.file }}).
`)
	code, out := validateWith(t, nil, wf)
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"agent.max_turn: not a key Symphony reads; ignored",
		"worker: not applicable (the reference's SSH worker hosts; Symphony runs every agent on this host); ignored",
		"tracker.provider.board: kept for the tracker adapter; the files tracker of this build does not read it",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate does not say %q:\n%s", want, out)
		}
	}
	if m := settingLine("server.bind").FindStringSubmatch(out); m == nil || m[1] != "127.0.0.1" {
		t.Errorf("server.host not read as server.bind: %q\n%s", m, out)
	}
	// Blank required labels and a zero hook timeout are errors.
	for src, want := range map[string]string{
		"---\ntracker: {kind: files, provider: {path: issues}, required_labels: [agent, ' ']}\n---\n": "tracker.required_labels: entry 2 is blank",
		"---\ntracker: {kind: files, provider: {path: issues}}\nhooks: {timeout_ms: 0}\n---\n":        "hooks.timeout_ms: must be a positive integer, got 0",
	} {
		writeFile(t, wf, src)
		if code, out := validateWith(t, nil, wf); code == 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, want an error naming %q:\n%s", code, want, out)
		}
	}
}
