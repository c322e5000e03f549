package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit"
)

// inspectorHint says how to install the MCP Inspector the tests drive.
const inspectorHint = "install it with `go tool task tools` (runs `npm install @modelcontextprotocol/inspector@2.12.0` in <module root>/.tools/inspector), or point $MCP_INSPECTOR at an mcp-inspector binary"

// inspectorPath finds the MCP Inspector's launcher: $MCP_INSPECTOR if set,
// else <module root>/.tools/inspector/node_modules/.bin/mcp-inspector. A
// missing inspector fails the test: it is the third-party client the
// issue asks for, never skipped silently.
func inspectorPath(t *testing.T) string {
	t.Helper()
	p, err := testkit.ToolPath("MCP Inspector", "MCP_INSPECTOR", "inspector", "mcp-inspector", inspectorHint)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// inspectorToolError is the inspector CLI's exit code for a tools/call
// whose result is an error result (it still prints the result).
const inspectorToolError = 5

// runInspector runs the inspector's CLI against `symphony mcp` with
// grant's environment.
func runInspector(t *testing.T, inspector string, g bus.ToolGrant, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmdArgs := []string{"--cli", "--format", "json"}
	for k, v := range g.Env() {
		cmdArgs = append(cmdArgs, "-e", k+"="+v)
	}
	cmdArgs = append(cmdArgs, binary, "mcp")
	cmdArgs = append(cmdArgs, args...)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, inspector, cmdArgs...)
	// The inspector keeps a catalogue and a client config under $HOME.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "MCP_CATALOG_PATH="+filepath.Join(home, "mcp.json"))
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mcp-inspector %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out), errOut.String()
}

// inspect runs the inspector expecting exit code want, and decodes the
// result of the JSON it prints.
func inspect(t *testing.T, inspector string, g bus.ToolGrant, want int, args ...string) map[string]any {
	t.Helper()
	code, out, stderr := runInspector(t, inspector, g, args...)
	if code != want {
		t.Fatalf("mcp-inspector %s: exit code %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, stderr)
	}
	var v struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Result == nil {
		t.Fatalf("mcp-inspector %s: output is not one JSON object with a result (%v):\n%s", strings.Join(args, " "), err, out)
	}
	return v.Result
}

// The MCP Inspector's CLI, a third-party MCP client, lists and calls a
// run's tools through `symphony mcp`: the run's tool credential in its
// environment, the agentrunner's side played by this test.
func TestMCPInspectorCallsTheRunsTools(t *testing.T) {
	inspector := inspectorPath(t)
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir(), ToolListener: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	var calls atomic.Int64
	serveFakeRunTools(t, b, "run-1", &calls)
	// A credential is spent by the first connection made with it, as
	// Symphony makes one for each agent start: each inspector start gets
	// its own.
	grant := func() bus.ToolGrant {
		g, err := b.GrantTools("run-1")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	// claude speaks the initialize handshake (the inspector's "legacy"
	// era); the SDK also speaks the newer protocol, which the inspector
	// negotiates as "modern".
	for _, era := range []string{"legacy", "modern"} {
		t.Run(era, func(t *testing.T) {
			before := calls.Load()
			inspectTools(t, inspector, grant, "--protocol-era", era)
			if n := calls.Load() - before; n != 2 {
				t.Errorf("the runner got %d calls, want 2", n)
			}
		})
	}

	// A spent credential opens nothing: a second server started with it
	// cannot connect, and says why on stderr.
	g := grant()
	inspect(t, inspector, g, 0, "--method", "tools/list")
	code, out, stderr := runInspector(t, inspector, g, "--method", "tools/list")
	if code == 0 || !strings.Contains(stderr, "connect to the tools of run run-1") {
		t.Errorf("with a spent credential: exit code %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	// Once the run ends, its credential opens nothing either.
	g = grant()
	b.RevokeTools("run-1")
	code, out, stderr = runInspector(t, inspector, g, "--method", "tools/list")
	if code == 0 || !strings.Contains(stderr, "connect to the tools of run run-1") {
		t.Errorf("after the run ended: exit code %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
}

// inspectTools lists the fake run's tools with the inspector and calls
// each: one answers, one is refused.
func inspectTools(t *testing.T, inspector string, grant func() bus.ToolGrant, era ...string) {
	t.Helper()
	list := inspect(t, inspector, grant(), 0, append(era, "--method", "tools/list")...)
	var names []string
	tools, _ := list["tools"].([]any)
	for _, tool := range tools {
		m, _ := tool.(map[string]any)
		name, _ := m["name"].(string)
		names = append(names, name)
		if name == "files_set_state" {
			ann, _ := m["annotations"].(map[string]any)
			if ann["readOnlyHint"] != false || ann["destructiveHint"] != true {
				t.Errorf("files_set_state annotations %v", ann)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"files_read_issue", "files_set_state"}) {
		t.Fatalf("tools/list: %v\n%v", names, list)
	}

	ok := inspect(t, inspector, grant(), 0, append(era, "--method", "tools/call", "--tool-name", "files_read_issue", "--tool-arg", "field=state")...)
	if ok["isError"] == true || !strings.Contains(contentText(ok), `"state":"Todo"`) {
		t.Errorf("a call that succeeds: %v", ok)
	}
	failed := inspect(t, inspector, grant(), inspectorToolError, append(era, "--method", "tools/call", "--tool-name", "files_set_state", "--tool-arg", "state=Deleted")...)
	if text := contentText(failed); failed["isError"] != true || !strings.Contains(text, "class: refused") || !strings.Contains(text, "rule: allowed_states") {
		t.Errorf("a refused call: %v", failed)
	}
}

// `symphony mcp` without the run's credential says which variables are
// missing and where they come from.
func TestMCPNeedsTheRunsCredential(t *testing.T) {
	for _, name := range []string{bus.ToolEnvURL, bus.ToolEnvToken, bus.ToolEnvRun, bus.ToolEnvInbox} {
		t.Setenv(name, "")
	}
	code, out := runCLI(t, "mcp")
	if code != exitUsage || !strings.Contains(out, "MCP config Symphony writes") {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, name := range []string{bus.ToolEnvURL, bus.ToolEnvToken, bus.ToolEnvRun, bus.ToolEnvInbox} {
		if !strings.Contains(out, name) {
			t.Errorf("the error does not name %s: %s", name, out)
		}
	}
}

// serveFakeRunTools answers a run's tool subjects as the agentrunner does:
// a tool that reads, and one that mutates and is refused by a rule. The
// read tool echoes the arguments it got into its output, so the test sees
// them arrive.
func serveFakeRunTools(t *testing.T, b *bus.Bus, runID string, calls *atomic.Int64) {
	t.Helper()
	object := json.RawMessage(`{"type":"object","properties":{"field":{"type":"string"},"state":{"type":"string"}}}`)
	if _, err := bus.Serve(t.Context(), b, bus.AgentTools, func(context.Context, string, bus.ListRunTools) (bus.ToolSpecs, error) {
		return bus.ToolSpecs{Tracker: "files", Tools: []bus.ToolSpec{
			{Name: "files_read_issue", Description: "Read a field of the run's issue.", InputSchema: object},
			{Name: "files_set_state", Description: "Set the run's issue state.", InputSchema: object, Mutates: true},
		}}, nil
	}, runID); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(t.Context(), b, bus.AgentToolCall, func(_ context.Context, _ string, req bus.RunTool) (bus.ToolResult, error) {
		calls.Add(1)
		switch req.Tool {
		case "files_read_issue":
			var args struct {
				Field string `json:"field"`
			}
			if err := json.Unmarshal(req.Arguments, &args); err != nil {
				return bus.ToolResult{Class: bus.ToolBadArguments, Error: err.Error()}, nil
			}
			return bus.ToolResult{OK: true, Output: json.RawMessage(fmt.Sprintf(`{"identifier":"DEMO-1",%q:"Todo"}`, args.Field))}, nil
		case "files_set_state":
			return bus.ToolResult{Error: "the state Deleted is not one the workflow allows", Class: bus.ToolRefused, Rule: "allowed_states"}, nil
		}
		return bus.ToolResult{}, errors.New("no such tool")
	}, runID); err != nil {
		t.Fatal(err)
	}
}

// contentText joins the text blocks of a tools/call result.
func contentText(res map[string]any) string {
	var b strings.Builder
	content, _ := res["content"].([]any)
	for _, c := range content {
		m, _ := c.(map[string]any)
		if s, ok := m["text"].(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}
