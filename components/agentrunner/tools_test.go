package agentrunner

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// toolTracker is a stand-in tracker's tool side: it opens sessions, runs
// calls and releases sessions, and keeps what it was asked.
type toolTracker struct {
	mu       sync.Mutex
	opened   []bus.ListTools
	calls    []bus.CallTool
	released []string
	refuse   bool // refuse to open sessions
}

func (tt *toolTracker) serve(t *testing.T, b *bus.Bus) {
	t.Helper()
	ctx := t.Context()
	if _, err := bus.Serve(ctx, b, bus.TrackerTools, func(_ context.Context, _ string, req bus.ListTools) (bus.ToolSpecs, error) {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		tt.opened = append(tt.opened, req)
		if tt.refuse {
			return bus.ToolSpecs{}, errors.New("tracker not configured (test)")
		}
		return bus.ToolSpecs{Tracker: "files", ConfigVersion: 7, Tools: []bus.ToolSpec{
			{Name: "files_set_state", Description: "set", InputSchema: json.RawMessage(`{"type":"object"}`), Mutates: true},
			{Name: "files_add_comment", Description: "comment", InputSchema: json.RawMessage(`{"type":"object"}`), Mutates: true},
		}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.TrackerToolCall, func(_ context.Context, _ string, req bus.CallTool) (bus.ToolResult, error) {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		tt.calls = append(tt.calls, req)
		return bus.ToolResult{OK: true, Output: json.RawMessage(`{"state":"Done"}`), DurationMS: 3, Arguments: json.RawMessage(`{"state":"Done","token":"******"}`),
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-RateLimit-Requests-Remaining": "99"}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, b, bus.TrackerToolsRelease, func(_ context.Context, _ string, req bus.ReleaseTools) (bus.ToolsReleased, error) {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		tt.released = append(tt.released, req.RunID)
		return bus.ToolsReleased{Found: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// readMCPConfig reads a run's MCP config and the grant in it.
func readMCPConfig(t *testing.T, path string) (mcpConfig, bus.ToolGrant) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the run's MCP config: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("MCP config mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg mcpConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	srv, ok := cfg.MCPServers[MCPServerName]
	if !ok {
		t.Fatalf("no %q server in %s", MCPServerName, raw)
	}
	g, err := bus.ToolGrantFromEnv(func(k string) string { return srv.Env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg, g
}

// A claude run gets its tracker tools: claude is told where the run's MCP
// server config is and may call each tool; the server's credential lists
// and calls the run's tools, the runner adds the run's own issue and
// records the call; when the run ends the credential is refused, the
// config is gone and the tracker's session released.
func TestRunOffersItsTrackerTools(t *testing.T) {
	h := startHarness(t, "hang", defaultTemplate, nil, []string{"/usr/bin/symphony-test", "mcp"})
	tt := &toolTracker{}
	tt.serve(t, h.b)
	h.dispatch("run-1")
	h.waitAgentRunning("run-1")

	cfgPath := filepath.Join(h.b.DataDir(), "mcp", "run-1.json")
	cfg, g := readMCPConfig(t, cfgPath)
	if srv := cfg.MCPServers[MCPServerName]; srv.Command != "/usr/bin/symphony-test" || !slices.Equal(srv.Args, []string{"mcp"}) || srv.Type != "stdio" {
		t.Errorf("MCP server %+v", srv)
	}
	var cmd []string
	for _, ev := range storedRunEvents(t, h.b, "run-1") {
		if ev.Data.Event == bus.RunTurnStarted {
			cmd = ev.Data.Command
		}
	}
	i := slices.Index(cmd, "--mcp-config")
	if i < 0 || i+1 >= len(cmd) || cmd[i+1] != cfgPath {
		t.Errorf("command %q has no --mcp-config %s", cmd, cfgPath)
	}
	if j := slices.Index(cmd, "--allowedTools"); j < 0 || cmd[j+1] != "Read,Write,mcp__symphony__files_set_state,mcp__symphony__files_add_comment" {
		t.Errorf("command %q: allowed tools", cmd)
	}
	if slices.Contains(cmd, "--strict-mcp-config") || strings.Contains(strings.Join(cmd, " "), g.Token) {
		t.Errorf("command %q: strict, or the credential on the command line", cmd)
	}

	conn, err := bus.ConnectTools(t.Context(), g, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The credential is spent: another process that read the config
	// (another run's agent, say) is refused.
	if _, err := bus.ConnectTools(t.Context(), g, nil); err == nil {
		t.Error("a copy of the run's spent credential connects")
	}
	specs, err := bus.Ask(t.Context(), conn, bus.AgentTools, bus.ListRunTools{}, "run-1")
	if err != nil || len(specs.Tools) != 2 {
		t.Fatalf("the run's tools: %+v %v", specs, err)
	}
	res, err := bus.Ask(t.Context(), conn, bus.AgentToolCall, bus.RunTool{Tool: "files_set_state", Arguments: json.RawMessage(`{"state":"Done","token":"x"}`)}, "run-1")
	if err != nil || !res.OK || res.Arguments != nil {
		t.Fatalf("call: %+v %v", res, err)
	}
	tt.mu.Lock()
	call := tt.calls[0]
	opened := tt.opened[0]
	tt.mu.Unlock()
	if call.RunID != "run-1" || call.Issue.ID != "issue-1" || call.Tool != "files_set_state" || opened.RunID != "run-1" || opened.Issue.ID != "issue-1" {
		t.Errorf("the tracker was asked %+v (session %+v)", call, opened)
	}
	var rec *bus.TurnEvent
	for _, ev := range h.turns("run-1") {
		if ev.Kind == bus.TurnTrackerTool {
			rec = &ev
		}
	}
	if rec == nil || rec.TrackerTool.Tool != "files_set_state" || !rec.TrackerTool.OK || string(rec.TrackerTool.Arguments) != `{"state":"Done","token":"******"}` ||
		rec.TrackerTool.OutputBytes != len(`{"state":"Done"}`) || rec.TrackerTool.RateLimit == nil || rec.Turn != 1 || rec.Seq == 0 {
		t.Fatalf("the call's record: %+v", rec)
	}

	if _, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	h.finished()
	if _, err := os.Stat(cfgPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the MCP config outlived the run: %v", err)
	}
	if n := h.b.ToolGrants(); n != 0 {
		t.Errorf("%d tool credentials outlived the run", n)
	}
	if _, err := bus.Ask(t.Context(), conn, bus.AgentToolCall, bus.RunTool{Tool: "files_set_state"}, "run-1"); err == nil {
		t.Error("the ended run's MCP connection still calls")
	}
	if _, err := bus.ConnectTools(t.Context(), g, nil); err == nil {
		t.Error("the ended run's credential still connects")
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if !slices.Equal(tt.released, []string{"run-1"}) || len(tt.calls) != 1 {
		t.Errorf("released %v, calls %d", tt.released, len(tt.calls))
	}
}

// A tracker that cannot open the run's tool session leaves the run without
// tools, and the run goes on; with claude.strict_mcp_config the agent gets
// Symphony's server alone.
func TestRunWithoutToolsGoesOn(t *testing.T) {
	h := startHarness(t, "ok", defaultTemplate, func(c *bus.Config) { c.Agent.MaxTurns = 1 }, []string{"/usr/bin/symphony-test", "mcp"})
	tt := &toolTracker{refuse: true}
	tt.serve(t, h.b)
	h.dispatch("run-1")
	end, all := h.finished()
	if end.Status != bus.RunSucceeded {
		t.Fatalf("run ended %s: %s", end.Status, end.Error)
	}
	for _, ev := range all {
		if slices.Contains(ev.Command, "--mcp-config") {
			t.Errorf("a run without tools was given an MCP config: %q", ev.Command)
		}
	}

	h2 := startHarness(t, "ok", defaultTemplate, func(c *bus.Config) { c.Agent.MaxTurns = 1; c.Claude.StrictMCPConfig = true }, []string{"/usr/bin/symphony-test", "mcp"})
	(&toolTracker{}).serve(t, h2.b)
	h2.dispatch("run-2")
	end, _ = h2.finished()
	if end.Status != bus.RunSucceeded || !slices.Contains(end.Command, "--strict-mcp-config") || !slices.Contains(end.Command, "--mcp-config") {
		t.Errorf("strict run: %s %q", end.Status, end.Command)
	}
}

// A run's agent has a budget of tool calls: past it calls are refused
// without reaching the tracker, and only the first refusal is recorded.
func TestRunToolCallBudget(t *testing.T) {
	h := startHarness(t, "hang", defaultTemplate, nil, []string{"/usr/bin/symphony-test", "mcp"})
	tt := &toolTracker{}
	tt.serve(t, h.b)
	h.dispatch("run-1")
	h.waitAgentRunning("run-1")
	_, g := readMCPConfig(t, filepath.Join(h.b.DataDir(), "mcp", "run-1.json"))
	conn, err := bus.ConnectTools(t.Context(), g, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var last bus.ToolResult
	for range maxToolCallsPerRun + 3 {
		if last, err = bus.Ask(t.Context(), conn, bus.AgentToolCall, bus.RunTool{Tool: "files_set_state", Arguments: json.RawMessage(`{"state":"Done"}`)}, "run-1"); err != nil {
			t.Fatal(err)
		}
	}
	if last.OK || last.Rule != "call_budget" {
		t.Errorf("a call past the budget: %+v", last)
	}
	tt.mu.Lock()
	calls := len(tt.calls)
	tt.mu.Unlock()
	refusals := 0
	for _, ev := range h.turns("run-1") {
		if ev.Kind == bus.TurnTrackerTool && ev.TrackerTool.Rule == "call_budget" {
			refusals++
		}
	}
	if calls != maxToolCallsPerRun || refusals != 1 {
		t.Errorf("the tracker ran %d calls (want %d), %d budget refusals recorded (want 1)", calls, maxToolCallsPerRun, refusals)
	}
}
