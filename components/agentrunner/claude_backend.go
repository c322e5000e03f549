package agentrunner

import (
	"context"
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

func (s *claudeSession) command() []string { return s.b.argv(s.spec.cfg, s.id) }

func (s *claudeSession) turn(ctx context.Context, in turnInput) turnOutcome {
	spec := turnSpec{argv: s.command(), dir: s.spec.dir, env: s.spec.env(), stdin: in.prompt,
		silence: time.Duration(s.spec.cfg.Claude.TurnTimeoutMS) * time.Millisecond, runID: s.spec.runID,
		since: in.since, started: in.started, commit: in.commit}
	out := runTurn(ctx, spec, in.cancel, in.emit)
	if out.sessionID != "" && s.id == "" {
		s.id = out.sessionID
	}
	return out
}

// close has nothing to stop: each turn's process ended with the turn.
func (s *claudeSession) close() {}

// argv is the claude command line for a turn; session resumes it.
func (b claudeBackend) argv(cfg bus.Config, session string) []string {
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
	if len(cfg.Claude.AllowedTools) > 0 {
		argv = append(argv, "--allowedTools", strings.Join(cfg.Claude.AllowedTools, ","))
	}
	argv = append(argv, cfg.Claude.ExtraArgs...)
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
