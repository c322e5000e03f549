package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
)

const testTimeout = 30 * time.Second

// The tools the fake agentrunner offers: one that reads and answers JSON,
// one that mutates and is refused by a rule.
const (
	readTool  = "files_read_issue"
	writeTool = "files_set_state"
	// secretArgs is what the fake answer says the record kept of the
	// arguments: the MCP server must never pass it back.
	secretArgs = "recorded-arguments-marker"
)

var readSchema = json.RawMessage(`{"type":"object","properties":{"field":{"type":"string"}},"additionalProperties":false}`)
var writeSchema = json.RawMessage(`{"type":"object","properties":{"state":{"type":"string"}},"required":["state"]}`)

// runner is the fake agentrunner side of one run's tools.
type runner struct {
	calls atomic.Int64
	last  atomic.Value // bus.RunTool
}

func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir(), ToolListener: true})
	if err != nil {
		t.Fatalf("open the bus: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close the bus: %v", err)
		}
	})
	return b
}

// serveRun answers the run's tool list and calls as the agentrunner does.
func serveRun(t *testing.T, b *bus.Bus, runID string) *runner {
	t.Helper()
	r := &runner{}
	if _, err := bus.Serve(t.Context(), b, bus.AgentTools, func(context.Context, string, bus.ListRunTools) (bus.ToolSpecs, error) {
		return bus.ToolSpecs{Tracker: "files", ConfigVersion: 3, Tools: []bus.ToolSpec{
			{Name: readTool, Description: "Read a field of the run's issue.", InputSchema: readSchema},
			{Name: writeTool, Description: "Set the run's issue state.", InputSchema: writeSchema, Mutates: true},
		}}, nil
	}, runID); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(t.Context(), b, bus.AgentToolCall, func(_ context.Context, _ string, req bus.RunTool) (bus.ToolResult, error) {
		r.calls.Add(1)
		r.last.Store(req)
		rec := json.RawMessage(`{"note":"` + secretArgs + `"}`)
		switch req.Tool {
		case readTool:
			return bus.ToolResult{OK: true, Output: json.RawMessage(`{"identifier":"DEMO-1","state":"Todo"}`), Arguments: rec}, nil
		case writeTool:
			return bus.ToolResult{OK: false, Error: "the state Deleted is not one the workflow allows", Class: bus.ToolRefused,
				Rule: "allowed_states", Output: json.RawMessage(`{"allowed":["Human Review"]}`), Arguments: rec}, nil
		}
		return bus.ToolResult{OK: false, Class: bus.ToolUnknown, Error: "no tool " + req.Tool}, nil
	}, runID); err != nil {
		t.Fatal(err)
	}
	return r
}

// session runs Serve for grant over an in-memory transport and connects
// an SDK client to it. Serve's error arrives on the returned channel once
// the client session closes.
func session(t *testing.T, g bus.ToolGrant) (*mcp.ClientSession, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, ct := mcp.NewInMemoryTransports()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, g, st, nil) }()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "0"}, nil)
	cctx, ccancel := context.WithTimeout(t.Context(), testTimeout)
	defer ccancel()
	cs, err := client.Connect(cctx, ct, nil)
	if err != nil {
		cancel()
		t.Fatalf("connect the client: %v (serve: %v)", err, <-served)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("Serve did not return when its client left")
		}
		cancel()
	})
	return cs, served
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	return res
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("%d content blocks, want 1: %+v", len(res.Content), res.Content)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T, want text", res.Content[0])
	}
	return tc.Text
}

// A client lists the run's tools as the tracker declares them, with hints
// from whether they mutate, and the server says who it is.
func TestServeListsTheRunsTools(t *testing.T) {
	b := openBus(t)
	serveRun(t, b, "run-a")
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := session(t, g)
	if info := cs.InitializeResult().ServerInfo; info.Name != "symphony" || info.Version == "" {
		t.Errorf("server info %+v, want symphony with a version", info)
	}
	if caps := cs.InitializeResult().Capabilities; caps.Tools == nil || caps.Tools.ListChanged {
		t.Errorf("tool capability %+v: want tools, with no list changes (fixed at dispatch)", caps.Tools)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tools) != 2 {
		t.Fatalf("%d tools, want 2: %+v", len(list.Tools), list.Tools)
	}
	byName := map[string]*mcp.Tool{}
	for _, tool := range list.Tools {
		byName[tool.Name] = tool
	}
	for name, want := range map[string]struct {
		schema   json.RawMessage
		mutates  bool
		describe string
	}{
		readTool:  {readSchema, false, "Read a field"},
		writeTool: {writeSchema, true, "Set the run's issue state"},
	} {
		tool := byName[name]
		if tool == nil {
			t.Errorf("no tool %s", name)
			continue
		}
		if !strings.Contains(tool.Description, want.describe) {
			t.Errorf("%s description %q", name, tool.Description)
		}
		got, _ := json.Marshal(tool.InputSchema)
		if !jsonEqual(t, got, want.schema) {
			t.Errorf("%s schema %s, want %s", name, got, want.schema)
		}
		a := tool.Annotations
		if a == nil || a.ReadOnlyHint == want.mutates || a.DestructiveHint == nil || *a.DestructiveHint != want.mutates {
			t.Errorf("%s annotations %+v, want read-only %v, destructive %v", name, a, !want.mutates, want.mutates)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// Calls reach the run's tools with the agent's arguments and come back as
// results: the output on success, the error with its class and rule on a
// failure, and never the record's copy of the arguments.
func TestServeCallsTheRunsTools(t *testing.T) {
	b := openBus(t)
	r := serveRun(t, b, "run-a")
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := session(t, g)

	res := call(t, cs, readTool, map[string]any{"field": "state"})
	if res.IsError || !jsonEqual(t, []byte(text(t, res)), []byte(`{"identifier":"DEMO-1","state":"Todo"}`)) {
		t.Fatalf("read: isError %v, %q", res.IsError, text(t, res))
	}
	if sc, ok := res.StructuredContent.(map[string]any); !ok || sc["identifier"] != "DEMO-1" {
		t.Errorf("read: structured content %#v", res.StructuredContent)
	}
	if got := r.last.Load().(bus.RunTool); got.Tool != readTool || !jsonEqual(t, got.Arguments, []byte(`{"field":"state"}`)) {
		t.Errorf("the runner got %+v", got)
	}

	res = call(t, cs, writeTool, map[string]any{"state": "Deleted"})
	msg := text(t, res)
	if !res.IsError {
		t.Fatalf("a refused call is not an error result: %q", msg)
	}
	for _, want := range []string{writeTool, "not one the workflow allows", "class: " + bus.ToolRefused, "rule: allowed_states", `"Human Review"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure text %q does not say %q", msg, want)
		}
	}
	for _, res := range []*mcp.CallToolResult{call(t, cs, readTool, nil), res} {
		raw, _ := json.Marshal(res)
		if strings.Contains(string(raw), secretArgs) {
			t.Errorf("a result passes the recorded arguments back: %s", raw)
		}
	}
	if n := r.calls.Load(); n != 3 {
		t.Errorf("the runner got %d calls, want 3", n)
	}
}

// Arguments over the bound, or not an object, are refused by the server
// itself: the agent reads why, and nothing is sent.
func TestServeBoundsArguments(t *testing.T) {
	b := openBus(t)
	r := serveRun(t, b, "run-a")
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := session(t, g)
	res := call(t, cs, writeTool, map[string]any{"state": strings.Repeat("x", bus.ToolArgumentsMaxBytes)})
	if msg := text(t, res); !res.IsError || !strings.Contains(msg, "over the bound of 65536 bytes") {
		t.Errorf("oversized arguments: isError %v, %q", res.IsError, msg)
	}
	res = call(t, cs, writeTool, []string{"Done"})
	if msg := text(t, res); !res.IsError || !strings.Contains(msg, "must be a JSON object") {
		t.Errorf("array arguments: isError %v, %q", res.IsError, msg)
	}
	if n := r.calls.Load(); n != 0 {
		t.Errorf("refused arguments reached the runner %d times", n)
	}
	// The bound is the bus's: arguments right at it are sent.
	pad := bus.ToolArgumentsMaxBytes - len(`{"state":""}`)
	res = call(t, cs, writeTool, map[string]any{"state": strings.Repeat("x", pad)})
	if !res.IsError || !strings.Contains(text(t, res), "rule: allowed_states") || r.calls.Load() != 1 {
		t.Errorf("arguments at the bound: %q, %d calls", text(t, res), r.calls.Load())
	}
}

// Once the run ends and its credential is revoked, a call says the run's
// tools are gone, and the server still answers.
func TestServeAfterTheRunEnds(t *testing.T) {
	b := openBus(t)
	r := serveRun(t, b, "run-a")
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := session(t, g)
	if res := call(t, cs, readTool, nil); res.IsError {
		t.Fatalf("before the end: %q", text(t, res))
	}
	if n := b.RevokeTools("run-a"); n != 1 {
		t.Fatalf("revoke closed %d connections, want the server's", n)
	}
	for range 2 {
		res := call(t, cs, writeTool, map[string]any{"state": "Done"})
		if msg := text(t, res); !res.IsError || !strings.Contains(msg, "no longer available") {
			t.Errorf("after the end: isError %v, %q", res.IsError, msg)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if list, err := cs.ListTools(ctx, nil); err != nil || len(list.Tools) != 2 {
		t.Errorf("the server no longer answers after the end: %v", err)
	}
	// A call the client sent as the revocation closed its connection may
	// still have reached the runner (which refuses an ended run's calls
	// itself); its answer cannot come back, and the agent reads the same.
	if n := r.calls.Load(); n < 1 || n > 2 {
		t.Errorf("the runner got %d calls, want the one before the end and at most the one racing it", n)
	}
}

// A run whose credential is already revoked, or a bus with no one
// answering, makes Serve fail at start with what it could not do.
func TestServeNeedsTheRunsTools(t *testing.T) {
	b := openBus(t)
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	st, _ := mcp.NewInMemoryTransports()
	if err := Serve(ctx, g, st, nil); err == nil || !errors.Is(err, bus.ErrNoResponder) || !strings.Contains(err.Error(), "list the tools of run run-a") {
		t.Errorf("no runner: %v", err)
	}
	b.RevokeTools("run-a")
	if err := Serve(ctx, g, st, nil); err == nil || !strings.Contains(err.Error(), "connect to the tools of run run-a") {
		t.Errorf("revoked: %v", err)
	}
}

// A spec the SDK cannot offer is left out; the others serve.
func TestNewServerLeavesOutBadSpecs(t *testing.T) {
	specs := bus.ToolSpecs{Tools: []bus.ToolSpec{
		{Name: "good", InputSchema: json.RawMessage(`{"type":"object"}`)},
		{Name: "good", InputSchema: json.RawMessage(`{"type":"object","properties":{"x":{}}}`)},
		{Name: "bad name", InputSchema: json.RawMessage(`{"type":"object"}`)},
		{Name: "", InputSchema: json.RawMessage(`{"type":"object"}`)},
		{Name: "array", InputSchema: json.RawMessage(`{"type":"array"}`)},
		{Name: "none"},
		{Name: "header", InputSchema: json.RawMessage(`{"type":"object","properties":{"x":{"type":"object","x-mcp-header":"X"}}}`)},
	}}
	srv := newServer(&caller{}, specs, slog.New(slog.DiscardHandler))
	st, ct := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tools) != 1 || list.Tools[0].Name != "good" {
		t.Fatalf("tools %+v, want the first good one alone", list.Tools)
	}
	if got, _ := json.Marshal(list.Tools[0].InputSchema); string(got) != `{"type":"object"}` {
		t.Errorf("the duplicate replaced the first: %s", got)
	}
}
