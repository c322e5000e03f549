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
