package agentrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// codexConfig makes the harness's config a codex one, run by the fake
// app-server bin.
func codexConfig(bin string, mutate func(*bus.Config)) func(*bus.Config) {
	return func(c *bus.Config) {
		c.Agent.Kind = bus.AgentCodex
		c.Codex = bus.CodexConfig{Command: bin + " app-server", TurnTimeoutMS: 20000, ReadTimeoutMS: 10000, StallTimeoutMS: 60000}
		if mutate != nil {
			mutate(c)
		}
	}
}

// codexText is the text of the run's agent messages.
func codexText(evs []bus.TurnEvent) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == bus.TurnText {
			out = append(out, e.Text)
		}
	}
	return out
}

// TestCodexTurnsOnOneThread: the handshake and three turns, the later two
// continuations on the same thread of the same app-server process; the
// run's tokens are the last absolute totals the server reported; every
// notification is a typed event.
func TestCodexTurnsOnOneThread(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, nil), fakeagent.EnvCodex+"=ok")
	h.dispatch("run-cx")
	end, all := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 || end.Agent != bus.AgentCodex {
		t.Fatalf("end %+v", end)
	}
	// Totals after turn 3: input 360 (cached 30), output 60.
	if u := end.Usage; u == nil || u.InputTokens != 360 || u.OutputTokens != 60 || u.CacheReadInputTokens != 30 {
		t.Errorf("run usage %+v, want the last absolute totals (360 in, 30 cached, 60 out)", end.Usage)
	}
	if strings.Join(end.Command, " ") != "bash -lc "+bin+" app-server" {
		t.Errorf("command %q", end.Command)
	}
	evs := h.turns("run-cx")
	texts := codexText(evs)
	if len(texts) != 3 {
		t.Fatalf("agent messages %q", texts)
	}
	re := regexp.MustCompile(`^turn (\d) thread (\S+) pid (\d+)`)
	var pid string
	for i, txt := range texts {
		m := re.FindStringSubmatch(txt)
		if m == nil || m[1] != fmt.Sprint(i+1) || m[2] != end.SessionID {
			t.Fatalf("message %d %q: want turn %d on thread %s", i, txt, i+1, end.SessionID)
		}
		if pid == "" {
			pid = m[3]
		} else if m[3] != pid {
			t.Errorf("turn %d ran in process %s, turn 1 in %s: continuations must reuse the process", i+1, m[3], pid)
		}
	}
	ws := filepath.Join(h.root, "ABC-1")
	for _, want := range []string{`approval="never"`, "sandbox=workspace-write", "cwd=" + ws, "title=ABC-1: Fix it",
		`sandboxPolicy={"excludeSlashTmp":false,"excludeTmpdirEnvVar":false,"networkAccess":false,"type":"workspaceWrite","writableRoots":["` + ws + `"]}`} {
		if !strings.Contains(texts[0], want) {
			t.Errorf("thread/start and turn/start: %q lacks %q", texts[0], want)
		}
	}
	kinds := map[bus.TurnEventKind]int{}
	var prompts []string
	for _, e := range evs {
		kinds[e.Kind]++
		if e.Kind == bus.TurnPrompt {
			prompts = append(prompts, e.Text)
		}
		if e.Kind == bus.TurnToolUse && (e.Tool.Name != "command" || !strings.Contains(string(e.Tool.Input), "echo hi")) {
			t.Errorf("command tool use %+v", e.Tool)
		}
		if e.Kind == bus.TurnToolResult && !strings.Contains(e.Text, "exit code 0") {
			t.Errorf("command result %q", e.Text)
		}
	}
	if len(prompts) != 3 || prompts[0] != "Do ABC-1" || prompts[1] != ContinuationPrompt {
		t.Errorf("prompts %q", prompts)
	}
	if kinds[bus.TurnInit] != 1 || kinds[bus.TurnToolUse] != 3 || kinds[bus.TurnToolResult] != 3 || kinds[bus.TurnRateLimit] != 3 || kinds[bus.TurnOutcome] != 3 {
		t.Errorf("event kinds %v", kinds)
	}
	sessions := 0
	for _, e := range all {
		if e.Event == bus.RunSessionStarted {
			sessions++
		}
	}
	if sessions != 1 {
		t.Errorf("%d session_started events", sessions)
	}
}

// TestCodexDynamicTools: the run's tracker tools are advertised at
// thread/start; a call reaches the tracker host-side through the runner
// and is recorded, an unknown tool gets a structured failure, and the
// turn goes on.
func TestCodexDynamicTools(t *testing.T) {
	bin := fakeagent.Build(t)
	h := startHarness(t, "", defaultTemplate, codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1 }), []string{"/unused/mcp"}, fakeagent.EnvCodex+"=tool")
	tt := &toolTracker{}
	tt.serve(t, h.b)
	h.dispatch("run-cxt")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded {
		t.Fatalf("end %s %q", end.Status, end.Error)
	}
	evs := h.turns("run-cxt")
	texts := codexText(evs)
	if len(texts) != 1 {
		t.Fatalf("messages %q", texts)
	}
	txt := texts[0]
	for _, want := range []string{"tools=function:files_set_state,function:files_add_comment",
		`files_set_state={"contentItems":[{"text":"{\"state\":\"Done\"}","type":"inputText"}],"success":true}`,
		`no_such_tool={"contentItems":[{"text":"{\"error\":{\"message\":\"Unsupported dynamic tool: \\\"no_such_tool\\\".\",\"supportedTools\":[\"files_set_state\",\"files_add_comment\"]}}","type":"inputText"}],"success":false}`} {
		if !strings.Contains(txt, want) {
			t.Errorf("message %q lacks %q", txt, want)
		}
	}
	tt.mu.Lock()
	calls, released := tt.calls, tt.released
	tt.mu.Unlock()
	if len(calls) != 1 || calls[0].Tool != "files_set_state" || calls[0].Issue.ID != "issue-1" || calls[0].RunID != "run-cxt" || string(calls[0].Arguments) != `{"state":"Done"}` {
		t.Errorf("tracker calls %+v", calls)
	}
	if len(released) != 1 {
		t.Errorf("tool sessions released %v", released)
	}
	recorded := 0
	for _, e := range evs {
		if e.Kind == bus.TurnTrackerTool && e.TrackerTool.Tool == "files_set_state" && e.TrackerTool.OK {
			recorded++
		}
	}
	if recorded != 1 {
		t.Errorf("%d tracker_tool records, want 1", recorded)
	}
}

// TestCodexOutcomes: how each way a codex session goes wrong ends the
// run, with the category in its error.
func TestCodexOutcomes(t *testing.T) {
	bin := fakeagent.Build(t)
	cases := []struct {
		scenario string
		status   bus.RunStatus
		err      []string
		mutate   func(*bus.Config)
	}{
		{"approval", bus.RunSucceeded, nil, nil},
		{"approval", bus.RunBlocked, []string{"refused approval", "item/commandExecution/requestApproval"}, func(c *bus.Config) {
			c.Codex.ApprovalPolicy = json.RawMessage(`"on-request"`)
		}},
		{"input", bus.RunBlocked, []string{codexTurnInputRequired, "Database: Which database should I use?"}, nil},
		{"error_reply", bus.RunFailed, []string{codexResponseError, "turn/start", "turn refused by the fake (code -32600)"}, nil},
		{"no_reply", bus.RunFailed, []string{codexResponseTimeout, "initialize", "codex.read_timeout_ms"}, func(c *bus.Config) { c.Codex.ReadTimeoutMS = 300 }},
		{"silent", bus.RunTimedOut, []string{codexTurnTimeout, "codex.turn_timeout_ms"}, func(c *bus.Config) { c.Codex.TurnTimeoutMS = 300 }},
		{"crash", bus.RunFailed, []string{codexPortExit, "status 3", "fatal: codex crashed"}, nil},
		{"failed", bus.RunFailed, []string{codexTurnFailed, "high demand", "internalServerError"}, nil},
		{"garbage", bus.RunSucceeded, nil, nil},
		{"ok", bus.RunFailed, []string{codexNotFound, "exit status 127"}, func(c *bus.Config) { c.Codex.Command = "no-such-codex-here app-server" }},
	}
	for _, c := range cases {
		name := c.scenario + "-" + string(c.status)
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "", codexConfig(bin, func(cfg *bus.Config) {
				cfg.Agent.MaxTurns = 1
				if c.mutate != nil {
					c.mutate(cfg)
				}
			}), fakeagent.EnvCodex+"="+c.scenario)
			h.dispatch("run-" + c.scenario)
			end, _ := h.finished()
			if end.Status != c.status {
				t.Errorf("end %s %q, want %s", end.Status, end.Error, c.status)
			}
			for _, want := range c.err {
				if !strings.Contains(end.Error, want) {
					t.Errorf("error %q lacks %q", end.Error, want)
				}
			}
			evs := h.turns("run-" + c.scenario)
			switch c.scenario {
			case "approval":
				if c.status == bus.RunSucceeded {
					txt := strings.Join(codexText(evs), "\n")
					if !strings.Contains(txt, `approval={"decision":"acceptForSession"}`) || !strings.Contains(txt, `legacy={"decision":"approved_for_session"}`) {
						t.Errorf("approvals answered %q", txt)
					}
				}
			case "garbage":
				kinds := map[bus.TurnEventKind]int{}
				for _, e := range evs {
					kinds[e.Kind]++
				}
				if kinds[bus.TurnParseError] != 1 || kinds[bus.TurnOther] != 1 {
					t.Errorf("kinds %v: want one parse error and one unknown method", kinds)
				}
			}
			if c.status == bus.RunFailed && c.scenario == "crash" {
				stderr := false
				for _, e := range evs {
					stderr = stderr || (e.Kind == bus.TurnStderr && strings.Contains(e.Text, "fatal: codex crashed"))
				}
				if !stderr {
					t.Error("the stderr tail is not recorded")
				}
			}
		})
	}
}

// TestCodexCancelLeavesNothing: a cancel stops an app-server that ignores
// SIGTERM (SIGKILL after the grace) and its child, mid-turn.
func TestCodexCancelLeavesNothing(t *testing.T) {
	bin := fakeagent.Build(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHarness(t, "", codexConfig(bin, nil), fakeagent.EnvCodex+"=hang", fakeagent.EnvPIDFile+"="+pidFile)
	h.dispatch("run-cxc")
	h.waitAgentRunning("run-cxc")
	deadline := time.Now().Add(testTimeout)
	for {
		if raw, _ := os.ReadFile(pidFile); len(raw) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake never started its child")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-cxc", Reason: "issue moved to Done", Status: bus.RunCanceled})
	if err != nil || !res.Found {
		t.Fatalf("cancel: %v %+v", err, res)
	}
	end, _ := h.finished()
	if end.Status != bus.RunCanceled || end.Error != "issue moved to Done" || end.Signal != "killed" {
		t.Errorf("end %s %q signal %q", end.Status, end.Error, end.Signal)
	}
	sleeperGone(t, pidFile)
}

// TestCodexCancelDuringToolCall: a cancel that arrives while a dynamic
// tool call waits for the tracker ends the run at once, not when the
// tracker answers.
func TestCodexCancelDuringToolCall(t *testing.T) {
	bin := fakeagent.Build(t)
	h := startHarness(t, "", defaultTemplate, codexConfig(bin, nil), []string{"/unused/mcp"}, fakeagent.EnvCodex+"=tool")
	called, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	ctx := t.Context()
	if _, err := bus.Serve(ctx, h.b, bus.TrackerTools, func(context.Context, string, bus.ListTools) (bus.ToolSpecs, error) {
		return bus.ToolSpecs{Tracker: "files", Tools: []bus.ToolSpec{{Name: "files_set_state", InputSchema: json.RawMessage(`{"type":"object"}`)}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, h.b, bus.TrackerToolCall, func(cctx context.Context, _ string, _ bus.CallTool) (bus.ToolResult, error) {
		called <- struct{}{}
		select {
		case <-release:
		case <-cctx.Done():
		}
		return bus.ToolResult{OK: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, h.b, bus.TrackerToolsRelease, func(context.Context, string, bus.ReleaseTools) (bus.ToolsReleased, error) {
		return bus.ToolsReleased{Found: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	h.dispatch("run-cxtc")
	select {
	case <-called:
	case <-time.After(testTimeout):
		t.Fatal("the tool call never reached the tracker")
	}
	start := time.Now()
	if _, err := bus.Ask(ctx, h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-cxtc", Reason: "operator cancel", Status: bus.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	end, _ := h.finished()
	if end.Status != bus.RunCanceled || end.Error != "operator cancel" {
		t.Errorf("end %s %q", end.Status, end.Error)
	}
	if d := time.Since(start); d > toolCallTimeout/2 {
		t.Errorf("the cancel took %s: it waited for the tool call", d)
	}
}
