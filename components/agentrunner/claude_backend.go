package agentrunner

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// claudeBackend runs the claude CLI in stream-json mode: one process per
// turn, the conversation continued with --resume <session id>.
type claudeBackend struct {
	// environ is the runner's parent environment (Options.Environ); the
	// CLAUDE_CLI variable in it overrides claude.command.
	environ func() []string
}

func (b claudeBackend) open(_ context.Context, s sessionSpec) (agentSession, error) {
	return &claudeSession{b: b, spec: s}, nil
}

// claudeSession is one run's claude conversation.
type claudeSession struct {
	b    claudeBackend
	spec sessionSpec
	// id is the session id the first turn that gave one reported; later
	// turns resume it.
	id string
}

func (s *claudeSession) command() []string {
	return s.b.argv(s.spec.cfg, s.id, s.spec.tools, s.budget())
}

// budget is the next turn's --max-budget-usd ("" without a USD cap).
func (s *claudeSession) budget() string {
	if s.spec.maxBudgetUSD == nil {
		return ""
	}
	return s.spec.maxBudgetUSD()
}

func (s *claudeSession) turn(ctx context.Context, in turnInput) turnOutcome {
	// Each claude process starts the run's MCP server anew: it gets a
	// credential of its own, spent by that server's connection and
	// revoked when the turn ends.
	if t := s.spec.tools; t != nil {
		t.arm()
		defer t.disarm()
	}
	budget := s.budget()
	spec := turnSpec{argv: s.b.argv(s.spec.cfg, s.id, s.spec.tools, budget), dir: s.spec.dir, env: s.spec.env(), stdin: in.prompt,
		silence: time.Duration(s.spec.cfg.Claude.TurnTimeoutMS) * time.Millisecond, runID: s.spec.runID,
		since: in.since, started: in.started, commit: in.commit, overStreamed: s.spec.overStreamed}
	out := runTurn(ctx, spec, in.cancel, in.emit)
	if out.sessionID != "" && s.id == "" {
		s.id = out.sessionID
	}
	if out.result == nil && out.spoke {
		out.estimate = claudeEstimate(s.spec.cfg, out.model, out.streamed, budget)
	}
	return out
}

// claudeEstimate is the charge for a claude turn that ended without its
// result line (timed out, stalled, canceled, stopped at a cap, crashed):
// claude reports its cost only there, so without it the turn would count
// nothing, and a run retried after it would spend up to its remainder
// again, uncounted. The tokens are the ones its streamed assistant
// messages reported (a lower bound); the dollars are those tokens at the
// pricing table's price for the model claude's init line named, or,
// without a price, the whole --max-budget-usd the turn was given (claude
// stops itself there, so it is a ceiling of what the turn could cost);
// without either, no dollars. budget is that flag's value ("" without).
func claudeEstimate(cfg bus.Config, model string, streamed bus.Usage, budget string) *turnEstimate {
	est := &turnEstimate{usage: streamed}
	tokens := streamed.BudgetTokens(bus.AgentClaude)
	if p, ok := cfg.Pricing[model]; ok && model != "" {
		usd := *clampUSD(new(claudePrice(p, streamed)))
		est.usd = &usd
		est.why = fmt.Sprintf("claude reported no usage (no result line): charged the %d tokens its messages streamed, $%s at pricing.%s", tokens, usdText(usd), model)
		return est
	}
	if v, err := strconv.ParseFloat(budget, 64); budget != "" && err == nil {
		usd := *clampUSD(&v)
		est.usd = &usd
		est.why = fmt.Sprintf("claude reported no usage (no result line): charged the %d tokens its messages streamed and the whole $%s of --max-budget-usd it was given (no pricing entry for model %q)", tokens, usdText(usd), model)
		return est
	}
	if tokens == 0 {
		return nil
	}
	est.why = fmt.Sprintf("claude reported no usage (no result line): charged the %d tokens its messages streamed", tokens)
	return est
}

// claudePrice prices a claude usage: claude counts cache reads and writes
// beside input_tokens, ModelPrice.CostUSD counts them inside (as codex
// does). Cache writes are priced as input.
func claudePrice(p bus.ModelPrice, u bus.Usage) float64 {
	u = u.Clamped()
	in := bus.SatAdd(bus.SatAdd(u.InputTokens, u.CacheCreationInputTokens), u.CacheReadInputTokens)
	return p.CostUSD(bus.Usage{InputTokens: in, OutputTokens: u.OutputTokens, CacheReadInputTokens: u.CacheReadInputTokens})
}

// close has nothing to stop: each turn's process ended with the turn.
func (s *claudeSession) close() {}

// argv is the claude command line for a turn; session resumes it. With
// tools, claude starts the run's MCP server from its config and may call
// every tool of it without a permission prompt (a headless turn has no one
// to answer one); the operator's own MCP servers stay unless the workflow
// asks for claude.strict_mcp_config. budgetUSD, when set, is what remains
// of the run's USD cap: --max-budget-usd comes after claude.extra_args, so
// an operator's own flag cannot raise it.
func (b claudeBackend) argv(cfg bus.Config, session string, tools *runTools, budgetUSD string) []string {
	bin := cfg.Claude.Command
	if v := strings.TrimSpace(getenv(b.environ(), "CLAUDE_CLI")); v != "" {
		bin = v
	}
	argv := []string{bin, "-p", "--output-format", "stream-json", "--verbose"}
	if cfg.Claude.Model != "" {
		argv = append(argv, "--model", cfg.Claude.Model)
	}
	if cfg.Claude.PermissionMode != "" {
		argv = append(argv, "--permission-mode", cfg.Claude.PermissionMode)
	}
	allowed := cfg.Claude.AllowedTools
	if tools != nil {
		allowed = append(slices.Clip(allowed), tools.names()...)
		argv = append(argv, "--mcp-config", tools.config)
		if cfg.Claude.StrictMCPConfig {
			argv = append(argv, "--strict-mcp-config")
		}
	}
	if len(allowed) > 0 {
		argv = append(argv, "--allowedTools", strings.Join(allowed, ","))
	}
	argv = append(argv, cfg.Claude.ExtraArgs...)
	if budgetUSD != "" {
		argv = append(argv, "--max-budget-usd", budgetUSD)
	}
	if session != "" {
		argv = append(argv, "--resume", session)
	}
	return argv
}

func getenv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
