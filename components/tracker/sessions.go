package tracker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Tool sessions pin a run's tools (issue #21; the reference's §10.5): the
// tool specs, the adapter and its settings are those in force when the
// run's session opened, so a reload applies to later runs and never makes
// a live session advertise one tracker and execute another. The agent
// runner opens a session when its run starts (symphony.tracker.tools) and
// releases it when the run ends; a call for a run without a session is
// refused.

// maxToolSessions bounds the sessions held at once; sessionIdle is how
// long an unused session is kept once that bound is reached (a runner
// that died before releasing its runs' sessions leaves them behind).
const (
	maxToolSessions = 4096
	sessionIdle     = 24 * time.Hour
)

// toolSession is one run's pinned tools and its own issue.
type toolSession struct {
	act   *active
	issue bus.IssueRef
	used  time.Time
}

// toolSessions holds the sessions by run id.
type toolSessions struct {
	mu    sync.Mutex
	byRun map[string]*toolSession
}

func newToolSessions() *toolSessions { return &toolSessions{byRun: map[string]*toolSession{}} }

// open returns the run's session, pinning cur when it has none. A run id
// is one run's: a second open naming another issue is refused.
func (s *toolSessions) open(runID string, issue bus.IssueRef, cur *active, now time.Time) (*toolSession, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts, ok := s.byRun[runID]; ok {
		if ts.issue.ID != issue.ID {
			return nil, nil, bus.WithCode(bus.CodeBadRequest, fmt.Errorf("run %s already has a tool session for another issue", safeid.Quote(runID)))
		}
		ts.used = now
		return ts, nil, nil
	}
	dropped := s.makeRoom(now)
	ts := &toolSession{act: cur, issue: issue, used: now}
	s.byRun[runID] = ts
	return ts, dropped, nil
}

// makeRoom drops, at the bound, the sessions idle for sessionIdle, and the
// least recently used one if none is. It returns the runs it dropped.
func (s *toolSessions) makeRoom(now time.Time) []string {
	if len(s.byRun) < maxToolSessions {
		return nil
	}
	var dropped []string
	oldest, oldestAt := "", now
	for id, ts := range s.byRun {
		if now.Sub(ts.used) > sessionIdle {
			delete(s.byRun, id)
			dropped = append(dropped, id)
		} else if !ts.used.After(oldestAt) {
			oldest, oldestAt = id, ts.used
		}
	}
	if len(dropped) == 0 && oldest != "" {
		delete(s.byRun, oldest)
		dropped = append(dropped, oldest)
	}
	return dropped
}

// get returns the run's session, marking it used.
func (s *toolSessions) get(runID string, now time.Time) (*toolSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.byRun[runID]
	if ok {
		ts.used = now
	}
	return ts, ok
}

// release ends the run's session.
func (s *toolSessions) release(runID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byRun[runID]
	delete(s.byRun, runID)
	return ok
}

// serveTools opens a run's tool session and answers with its tools.
func (c *Component) serveTools(ctx context.Context, cl *bus.Client) error {
	_, err := bus.Serve(ctx, cl, bus.TrackerTools, func(ctx context.Context, _ string, req bus.ListTools) (bus.ToolSpecs, error) {
		if !safeid.Valid(req.RunID) || req.Issue.ID == "" {
			return bus.ToolSpecs{}, bus.WithCode(bus.CodeBadRequest, fmt.Errorf("a tool session needs a run id matching %s and the run's issue", safeid.Rule))
		}
		cur, err := c.use()
		if err != nil {
			return bus.ToolSpecs{}, err
		}
		ts, dropped, err := c.sessions.open(req.RunID, req.Issue, cur, time.Now())
		if err != nil {
			return bus.ToolSpecs{}, err
		}
		if len(dropped) > 0 {
			c.log.Warn("tool sessions at their bound: dropped the idlest", "dropped", len(dropped), "bound", maxToolSessions)
		}
		snap := ts.act.snap
		return bus.ToolSpecs{Tracker: snap.Config.Tracker.Kind, ConfigVersion: snap.Version, Tools: specsOf(ts.act.adapter.tools())}, nil
	})
	return err
}

// serveToolsRelease ends runs' tool sessions.
func (c *Component) serveToolsRelease(ctx context.Context, cl *bus.Client) error {
	_, err := bus.Serve(ctx, cl, bus.TrackerToolsRelease, func(_ context.Context, _ string, req bus.ReleaseTools) (bus.ToolsReleased, error) {
		return bus.ToolsReleased{Found: c.sessions.release(req.RunID)}, nil
	})
	return err
}

// serveToolCalls runs tool calls, several at once, each in its run's
// session. Every outcome, a run without a session included, is a result:
// the agent reads why and its session goes on.
func (c *Component) serveToolCalls(ctx context.Context, cl *bus.Client) error {
	_, err := bus.ServeN(ctx, cl, bus.TrackerToolCall, toolConcurrency, func(ctx context.Context, _ string, req bus.CallTool) (bus.ToolResult, error) {
		start := time.Now()
		res, secrets := c.callInSession(ctx, req)
		res.DurationMS = time.Since(start).Milliseconds()
		res.Arguments = maskArguments(req.Arguments, secrets)
		level := slog.LevelInfo
		if !res.OK {
			level = slog.LevelWarn
		}
		// The run and its issue come from the runner; the tool's name
		// from the agent, cut short (the handler quotes what needs it).
		c.log.Log(ctx, level, "tool call", "run_id", req.RunID, "issue_id", req.Issue.ID, "issue_identifier", req.Issue.Identifier,
			"tool", cutName(req.Tool), "ok", res.OK, "class", res.Class, "rule", res.Rule, "duration_ms", res.DurationMS)
		return res, nil
	})
	return err
}

// callInSession runs one call with the run's pinned adapter on the run's
// own issue, and returns with the result the secrets to mask in the
// call's record.
func (c *Component) callInSession(ctx context.Context, req bus.CallTool) (bus.ToolResult, []string) {
	ts, ok := c.sessions.get(req.RunID, time.Now())
	if !ok {
		return refused("session", fmt.Sprintf("run %s has no tool session: a run's tools are offered only while it runs", safeid.Quote(req.RunID))), nil
	}
	if req.Issue.ID != "" && req.Issue.ID != ts.issue.ID {
		return refused("own_issue_only", "the call names an issue other than its run's"), secretsOf(ts.act.adapter)
	}
	req.Issue = ts.issue
	return boundOutput(runTool(ctx, ts.act.adapter.tools(), req), c.outputLimit()), secretsOf(ts.act.adapter)
}

// secretsOf lists the credential values an adapter holds, to mask in
// records.
func secretsOf(a adapter) []string {
	switch x := a.(type) {
	case *linear:
		if x.apiKey != "" {
			return []string{x.apiKey}
		}
	case *github:
		if x.apiKey != "" {
			return []string{x.apiKey}
		}
	}
	return nil
}

// cutName bounds a name from outside input for a log line.
func cutName(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
