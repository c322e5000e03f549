package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
)

// Name is the server's implementation name, and the name the run's MCP
// config gives it: claude sees its tools as mcp__symphony__<tool>.
const Name = "symphony"

// Timeouts of the server's requests over the bus.
const (
	// CallTimeout bounds one tool call: a bit over the tracker's own
	// one-minute bound on a tool, so that the tracker's answer (a timeout
	// failure result included) normally arrives first.
	CallTimeout = 90 * time.Second
	// connectTimeout bounds the connection to the run's tools at start.
	connectTimeout = 10 * time.Second
	// listTimeout bounds the one request for the run's tool list.
	listTimeout = 30 * time.Second
)

// Serve connects to the tools of grant's run, asks their list once and
// serves them over transport until the client ends the session (for stdio,
// when stdin closes) or ctx ends. A run that has ended by the time a call
// comes makes that call an error result, not an error of Serve: the agent
// is told its tools are gone, and the server keeps answering until its
// client lets it go.
func Serve(ctx context.Context, grant bus.ToolGrant, transport mcp.Transport, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("run_id", grant.RunID)
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := bus.ConnectTools(cctx, grant, log)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to the tools of run %s: %w", grant.RunID, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		if err := conn.Close(cctx); err != nil {
			log.Debug("close the connection to the run's tools", "err", err)
		}
	}()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	specs, err := bus.Ask(lctx, conn, bus.AgentTools, bus.ListRunTools{}, grant.RunID)
	cancel()
	if err != nil {
		return fmt.Errorf("list the tools of run %s: %w", grant.RunID, err)
	}
	srv := newServer(&caller{conn: conn, runID: grant.RunID, log: log}, specs, log)
	log.Info("serving the run's tools over MCP", "tracker", specs.Tracker, "config_version", specs.ConfigVersion, "tools", len(specs.Tools))
	if err := srv.Run(ctx, transport); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serve MCP: %w", err)
	}
	return nil
}

// newServer builds the MCP server of the run's tools. A spec the SDK
// cannot list (a bad name, a schema that is not an object) is left out
// with a warning: the other tools still serve.
func newServer(c *caller, specs bus.ToolSpecs, log *slog.Logger) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: Name, Version: buildVersion()}, &mcp.ServerOptions{
		Logger: log,
		Instructions: "The tools of this Symphony run act on the tracker for the run's own issue. " +
			"Symphony runs them with its own credential; a failure result names its class and the rule that refused it, and the session goes on.",
		// Tools are fixed at dispatch: no list changes to announce, and
		// no logging capability (the logs go to stderr).
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	seen := map[string]bool{}
	for _, spec := range specs.Tools {
		if seen[spec.Name] {
			log.Warn("a tool is listed twice; serving the first", "tool", spec.Name)
			continue
		}
		tool, err := toolOf(spec)
		if err == nil {
			err = addTool(srv, tool, c.handler(spec.Name))
		}
		if err != nil {
			log.Warn("leaving out a tool the MCP client cannot be offered", "tool", spec.Name, "err", err)
			continue
		}
		seen[spec.Name] = true
	}
	return srv
}

// addTool adds a tool, turning the SDK's panic on a tool it refuses into
// an error (toolOf checks what it knows of; this catches the rest).
func addTool(srv *mcp.Server, tool *mcp.Tool, h mcp.ToolHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("the MCP SDK refuses it: %v", p)
		}
	}()
	srv.AddTool(tool, h)
	return nil
}

// maxToolName is the MCP bound on a tool's name.
const maxToolName = 128

// toolOf is the MCP tool of a spec: its name, description and input
// schema as the tracker declares them, and hints from whether it mutates.
func toolOf(spec bus.ToolSpec) (*mcp.Tool, error) {
	if spec.Name == "" || len(spec.Name) > maxToolName {
		return nil, fmt.Errorf("tool name %q must be 1 to %d characters", spec.Name, maxToolName)
	}
	for _, r := range spec.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return nil, fmt.Errorf("tool name %q: only letters, digits, '_', '-' and '.' are allowed", spec.Name)
		}
	}
	var schema struct {
		Type any `json:"type"`
	}
	if err := json.Unmarshal(spec.InputSchema, &schema); err != nil {
		return nil, fmt.Errorf("input schema is not a JSON object: %w", err)
	}
	if schema.Type != "object" {
		return nil, fmt.Errorf(`input schema has type %v, want "object"`, schema.Type)
	}
	mutates := spec.Mutates
	return &mcp.Tool{
		Name:        spec.Name,
		Description: spec.Description,
		InputSchema: spec.InputSchema,
		Annotations: &mcp.ToolAnnotations{
			ReadOnlyHint: !mutates,
			// A mutating tracker tool can change or move the issue (a
			// state, a field), not only add to it.
			DestructiveHint: &mutates,
		},
	}, nil
}

// caller forwards the agent's calls to the run's tools over the bus.
type caller struct {
	conn  *bus.Bus
	runID string
	log   *slog.Logger
}

// handler is the MCP handler of one tool: bounded arguments out, a
// result back, and every failure an error result.
func (c *caller) handler(tool string) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		args, err := checkArguments(req.Params.Arguments)
		if err != nil {
			c.log.Info("tool call refused before it was sent", "tool", tool, "err", err)
			return errorResult(fmt.Sprintf("%s was not run: %v", tool, err)), nil
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, CallTimeout)
		defer cancel()
		res, err := bus.Ask(actx, c.conn, bus.AgentToolCall, bus.RunTool{Tool: tool, Arguments: args}, c.runID)
		if err != nil {
			c.log.Warn("tool call failed on the bus", "tool", tool, "err", err, "duration", time.Since(start))
			return errorResult(c.askFailure(ctx, tool, err)), nil
		}
		c.log.Info("tool call", "tool", tool, "ok", res.OK, "class", res.Class, "rule", res.Rule, "duration", time.Since(start))
		return resultOf(tool, res), nil
	}
}

// askFailure tells the agent why a call got no result.
func (c *caller) askFailure(ctx context.Context, tool string, err error) string {
	var remote *bus.RemoteError
	switch {
	case ctx.Err() != nil:
		return fmt.Sprintf("the call to %s was cancelled", tool)
	case c.conn.Conn().IsClosed() || errors.Is(err, bus.ErrNoResponder):
		return fmt.Sprintf("%s: the run's tools are no longer available (the run has ended or Symphony has stopped)", tool)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("%s got no answer within %s; it may still have run (the run's record has its outcome)", tool, CallTimeout)
	case errors.As(err, &remote):
		return fmt.Sprintf("Symphony could not run %s: %s", tool, remote.Message)
	}
	return fmt.Sprintf("the call to %s failed: %v", tool, err)
}

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
