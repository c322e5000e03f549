package agentrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// A run's tracker tools (issue #21). When a claude run starts, the runner
// opens the run's tool session with the tracker (which pins the adapter in
// force, so a reload never changes a live session's tools) and answers the
// run's own tool subjects. Before each agent start it asks the bus for a
// fresh single-use credential bound to the run and writes an MCP config
// (0600, in the data directory) that makes claude start `symphony mcp`
// with it; when the agent's turn ends the credential is revoked (its
// connection closed) and the config removed. The agent sees the tools as
// mcp__symphony__<tool>; each call reaches this runner, which adds the
// run's own issue, has the tracker run it host-side and records it with
// the run. When the run's session ends its responders stop and the
// tracker's session is released: a late call is refused.
//
// A run's calls are bounded by the run itself: its own responders (two
// calls at once, 16 waiting; a flood fills only them) and a budget of
// maxToolCallsPerRun calls, so one hijacked agent cannot starve another
// run's tools or fill the store with records.

// MCPServerName is the name the agent knows Symphony's MCP server by.
const MCPServerName = "symphony"

// MCPToolName is a tool's name as claude shows it to the model (and as
// --allowedTools names it).
func MCPToolName(tool string) string { return "mcp__" + MCPServerName + "__" + tool }

// toolCallTimeout bounds one call through the runner: the tracker's own
// bound (one minute) and some slack.
const toolCallTimeout = 75 * time.Second

// toolsOpenTimeout bounds opening a run's tool session.
const toolsOpenTimeout = 30 * time.Second

// toolPreviewBytes bounds the output a tool call's record keeps; the agent
// got the whole output (its own stream records it too).
const toolPreviewBytes = 2 << 10

// The bounds of one run's tool calls.
const (
	// maxToolCallsPerRun is a run's budget of tool calls; later calls are
	// refused (rule call_budget) and not recorded.
	maxToolCallsPerRun = 1000
	// toolCallSlots is how many of a run's calls run at once;
	// toolCallsPending how many wait (more are dropped, their askers
	// time out); toolPendingBytes bounds what waits.
	toolCallSlots    = 2
	toolCallsPending = 16
	toolPendingBytes = 16 << 20
)

// runTools are a run's tools, fixed when the run started.
type runTools struct {
	specs bus.ToolSpecs
	// config is the MCP config file that starts the run's MCP server,
	// written by arm before each agent start (claude); empty for codex,
	// which calls the tools over its own stdio.
	config string
	b      *bus.Bus
	runID  string
	// command starts the MCP server (`symphony mcp`).
	command []string
	// log is the run's logger (run.log): it gains session_id once known.
	log func() *slog.Logger
	// calls counts the calls the run's agent made (its budget).
	calls atomic.Int64
	// stopServing ends the run's responders; served are their done
	// channels.
	stopServing context.CancelFunc
	served      []<-chan struct{}
	// closed makes closeTools act once.
	closed sync.Once
}

// arm makes a fresh single-use credential for the next agent start and
// writes it into the run's MCP config; the run's earlier credentials are
// revoked first.
func (t *runTools) arm() {
	t.b.RevokeTools(t.runID)
	g, err := t.b.GrantTools(t.runID)
	if err == nil {
		_, err = writeMCPConfig(filepath.Dir(t.config), t.runID, t.command, g)
	}
	if err != nil {
		// The config left in place names a revoked credential: the
		// agent's MCP server fails to connect and the turn goes on
		// without the tools.
		t.log().Error("the agent's turn gets no tracker tools: arm the run's MCP config", "err", err)
	}
}

// disarm ends the credential of the agent start that ended, and its
// config.
func (t *runTools) disarm() {
	t.b.RevokeTools(t.runID)
	if err := os.Remove(t.config); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.log().Warn("remove the run's MCP config", "err", err)
	}
}

// names are the tools as claude names them.
func (t *runTools) names() []string {
	out := make([]string, 0, len(t.specs.Tools))
	for _, s := range t.specs.Tools {
		out = append(out, MCPToolName(s.Name))
	}
	return out
}

// openTools opens the run's tools, or returns nil when it has none: an
// agent kind without the MCP wiring, no MCP command configured, a tracker
// that offers none or could not be asked. Without tools the run goes on
// (the reason is logged): the agent then cannot act on its ticket, which
// the operator sees as an issue that stays active.
func (w *run) openTools(ctx context.Context) *runTools {
	kind := w.snap.Config.Agent.Kind
	if len(w.r.opts.MCPCommand) == 0 || (kind != bus.AgentClaude && kind != bus.AgentCodex) {
		return nil
	}
	log := w.log()
	octx, cancel := context.WithTimeout(ctx, toolsOpenTimeout)
	specs, err := bus.Ask(octx, w.r.opts.Bus, bus.TrackerTools, bus.ListTools{RunID: w.d.RunID, Issue: w.d.Issue.Ref()})
	cancel()
	if err != nil {
		log.Warn("the run has no tracker tools: the tracker could not open its tool session", "err", err)
		return nil
	}
	if len(specs.Tools) == 0 {
		w.releaseTools(ctx)
		return nil
	}
	if kind == bus.AgentCodex {
		// Codex gets them as dynamic tools of its thread and calls them
		// over its own stdio (sessionSpec.callTool): no credential, no
		// MCP server, no responders.
		t := &runTools{specs: specs, runID: w.d.RunID, log: w.log}
		w.tools.Store(t)
		log.Info("tracker tools open", "tracker", specs.Tracker, "tools", len(specs.Tools), "config_version", specs.ConfigVersion, "as", "codex dynamic tools")
		return t
	}
	if w.r.opts.Bus.ToolURL() == "" {
		log.Warn("the run has no tracker tools: the bus has no tool listener")
		w.releaseTools(ctx)
		return nil
	}
	t := &runTools{specs: specs, config: filepath.Join(w.r.opts.Bus.DataDir(), "mcp", w.d.RunID+".json"),
		b: w.r.opts.Bus, runID: w.d.RunID, command: w.r.opts.MCPCommand, log: w.log}
	if err := w.serveTools(ctx, t); err != nil {
		log.Warn("the run has no tracker tools: serve its tool subjects", "err", err)
		w.releaseTools(ctx)
		return nil
	}
	w.tools.Store(t)
	log.Info("tracker tools open", "tracker", specs.Tracker, "tools", len(specs.Tools), "config_version", specs.ConfigVersion)
	return t
}

// closeTools ends the run's tools: no call is taken after it returns. It
// acts once; later calls do nothing.
func (w *run) closeTools(ctx context.Context, t *runTools) {
	if t == nil {
		return
	}
	t.closed.Do(func() {
		w.tools.Store(nil)
		// Codex's dynamic tools have no config, credential or
		// responders (t.config is empty).
		if t.config != "" {
			t.disarm()
			t.stopServing()
			for _, done := range t.served {
				<-done
			}
		}
		w.releaseTools(ctx)
	})
}

// releaseTools ends the tracker's session of the run (a failure only
// leaves it to the tracker's bound).
func (w *run) releaseTools(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), toolsOpenTimeout)
	defer cancel()
	if _, err := bus.Ask(rctx, w.r.opts.Bus, bus.TrackerToolsRelease, bus.ReleaseTools{RunID: w.d.RunID}); err != nil {
		w.log().Warn("release the run's tool session", "err", err)
	}
}

// mcpConfig is claude's --mcp-config file.
type mcpConfig struct {
	MCPServers map[string]mcpServer `json:"mcpServers"`
}

type mcpServer struct {
	Type    string            `json:"type"`
	Command string            `json:"command"`
	Args    []string          `json:"args"`
	Env     map[string]string `json:"env"`
}

// writeMCPConfig writes the run's MCP config into dir (0700), readable by
// its owner alone (0600): it holds the run's credential, which opens the
// run's tools and nothing else, never the tracker's key.
func writeMCPConfig(dir, runID string, command []string, g bus.ToolGrant) (string, error) {
	if !safeid.Valid(runID) {
		return "", fmt.Errorf("run id %s must match %s", safeid.Quote(runID), safeid.Rule)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	raw, err := json.MarshalIndent(mcpConfig{MCPServers: map[string]mcpServer{MCPServerName: {
		Type: "stdio", Command: command[0], Args: command[1:], Env: g.Env(),
	}}}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, runID+".json")
	tmp, err := os.CreateTemp(dir, runID+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(raw)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// callTool runs one call of the run's agent: the tracker runs it in the
// run's session on the run's own issue, and the call is recorded with the
// run. The result goes back to the MCP server without the recorded
// arguments.
func (w *run) callTool(ctx context.Context, ep bus.Endpoint, req bus.RunTool) bus.ToolResult {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, toolCallTimeout)
	res, err := bus.Ask(cctx, ep, bus.TrackerToolCall, bus.CallTool{RunID: w.d.RunID, Issue: w.d.Issue.Ref(), Tool: req.Tool, Arguments: req.Arguments})
	cancel()
	if err != nil {
		res = bus.ToolResult{Class: bus.TrackerRequestError, Error: "the tracker did not answer the call: " + err.Error(),
			DurationMS: time.Since(start).Milliseconds()}
	}
	w.recordTool(ctx, req.Tool, res)
	res.Arguments = nil
	return res
}

// recordTool stores a tool call as an agent event of the run, in the
// run's order of events (the agent's stream goes on meanwhile: the
// writer is shared under outMu).
func (w *run) recordTool(ctx context.Context, tool string, res bus.ToolResult) {
	ev := bus.TurnEvent{Kind: bus.TurnTrackerTool, Text: boundTo(string(res.Output), toolPreviewBytes), TrackerTool: &bus.ToolCallRecord{
		Tool: boundTo(tool, MaxNameBytes), Arguments: res.Arguments, OK: res.OK, Class: res.Class, Rule: res.Rule,
		Error: bound(res.Error), DurationMS: res.DurationMS, RateLimit: res.RateLimit, OutputBytes: len(res.Output)}}
	w.outMu.Lock()
	defer w.outMu.Unlock()
	ev.RunID, ev.Turn, ev.Seq, ev.At = w.d.RunID, int(w.liveTurn.Load()), w.seq.Add(1), time.Now().UTC()
	err := w.out.AppendTurn(context.WithoutCancel(ctx), ev)
	if err == nil {
		err = w.out.SendTurns(context.WithoutCancel(ctx))
	}
	if err != nil {
		w.log().Error("record a tool call", "err", err, "tool", safeid.Quote(tool))
		return
	}
	w.prog.note(ev, time.Now())
}

// serveTools answers the run's MCP server on the run's own subjects, with
// the run's own bounds, until closeTools: the run's tools, and its calls.
func (w *run) serveTools(ctx context.Context, t *runTools) error {
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	t.stopServing = stop
	list, err := bus.ServeBounded(sctx, w.r.opts.Bus, bus.AgentTools, 1, toolCallsPending, toolPendingBytes,
		func(context.Context, string, bus.ListRunTools) (bus.ToolSpecs, error) { return t.specs, nil }, w.d.RunID)
	if err != nil {
		stop()
		return err
	}
	call, err := bus.ServeBounded(sctx, w.r.opts.Bus, bus.AgentToolCall, toolCallSlots, toolCallsPending, toolPendingBytes,
		func(ctx context.Context, _ string, req bus.RunTool) (bus.ToolResult, error) {
			return w.takeCall(ctx, t, req), nil
		}, w.d.RunID)
	if err != nil {
		stop()
		<-list
		return err
	}
	t.served = []<-chan struct{}{list, call}
	return nil
}

// takeCall runs one call of the run's agent while its tools are open and
// within its budget.
func (w *run) takeCall(ctx context.Context, t *runTools, req bus.RunTool) bus.ToolResult {
	if t == nil || w.tools.Load() != t {
		return bus.ToolResult{Class: bus.ToolRefused, Rule: "session", Error: "the run's tools are no longer available: the run has ended"}
	}
	if n := t.calls.Add(1); n > maxToolCallsPerRun {
		res := bus.ToolResult{Class: bus.ToolRefused, Rule: "call_budget",
			Error: fmt.Sprintf("the run has made its %d tool calls: no more are taken", maxToolCallsPerRun)}
		if n == maxToolCallsPerRun+1 {
			w.recordTool(ctx, req.Tool, res)
		}
		return res
	}
	return w.callTool(ctx, w.r.opts.Bus, req)
}
