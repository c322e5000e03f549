package agentrunner

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// turns runs the agent's turns on one session of the backend: the first
// with the rendered prompt, the next ones with ContinuationPrompt while
// the issue stays active, up to agent.max_turns.
func (w *run) turns(ctx context.Context, be backend, iss bus.Issue, first string, firstSince <-chan procscan.Window, tools *runTools) (bus.RunStatus, string) {
	cfg := w.snap.Config
	sess, err := be.open(ctx, sessionSpec{cfg: cfg, dir: w.path, runID: w.d.RunID, tools: tools, env: func() []string {
		// The markers let a restarted scheduler find this run's processes,
		// descendants included, if Symphony dies while they run.
		return append(w.r.childEnv(w.snap), markerEnv+"="+w.d.RunID, "SYMPHONY_ISSUE_ID="+w.d.Issue.ID, "SYMPHONY_ISSUE_IDENTIFIER="+w.d.Issue.Identifier)
	}, callTool: func(ctx context.Context, req bus.RunTool) bus.ToolResult {
		// The run's budget and liveness apply as to an MCP server's call.
		return w.takeCall(ctx, tools, req)
	}, title: iss.Identifier + ": " + iss.Title, maxBudgetUSD: w.remainingUSD, issue: w.d.IssueBudget, day: w.d.DayBudget,
		overStreamed: w.overStreamed})
	if err != nil {
		return bus.RunFailed, "start the agent's session: " + err.Error()
	}
	defer sess.close()
	// The issue's lifetime turns cap bounds the run too; the scheduler
	// parks the issue before a next run finds none left.
	maxTurns := issueTurnsLeft(w.d.IssueBudget, max(cfg.Agent.MaxTurns, 1))
	issue := iss
	for w.turn = 1; w.turn <= maxTurns; w.turn++ {
		w.liveTurn.Store(int32(w.turn))
		if st, why, ok := w.interrupted(ctx); ok {
			return st, why
		}
		text, since := first, firstSince
		if w.turn > 1 {
			text, since = ContinuationPrompt, nil
		}
		out := w.runOneTurn(ctx, sess, text, since)
		if out.status != bus.RunSucceeded {
			return out.status, out.err
		}
		if w.turn == maxTurns {
			break
		}
		if w.session == "" {
			// Without a session a continuation would reach an agent that
			// never saw the task: stop here; the scheduler checks back.
			w.log().Warn("no session id from the agent; not continuing")
			break
		}
		next, ok := w.stillActive(ctx, issue)
		if !ok {
			return bus.RunSucceeded, ""
		}
		issue = next
	}
	return bus.RunSucceeded, ""
}

// stillActive reads the issue again: the run continues only while it is
// still active (spec §7.1). A failed read ends the run, succeeded.
func (w *run) stillActive(ctx context.Context, issue bus.Issue) (bus.Issue, bool) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	list, err := bus.Ask(rctx, w.r.opts.Bus, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{issue.ID}})
	cancel()
	if err != nil {
		return bus.Issue{}, false
	}
	idx := slices.IndexFunc(list.Issues, func(i bus.Issue) bool { return i.ID == issue.ID })
	if idx < 0 || !active(w.snap.Config, list.Issues[idx]) {
		return bus.Issue{}, false
	}
	return list.Issues[idx], true
}

// runOneTurn runs turn w.turn on the session and records it: turn_started,
// the prompt, the agent's events, turn_finished.
func (w *run) runOneTurn(ctx context.Context, sess agentSession, text string, since <-chan procscan.Window) turnOutcome {
	w.command = sess.command()
	// turn_started opens the turn in a transcript; its prompt follows.
	// It is queued once the agent's start was tried, with the agent's
	// pid and the moment its start returned, and the prompt is stored
	// only after it, before the agent's first event, so a live reader
	// sees the turn open, then its prompt, then its events. Its At is
	// the turn's beginning, before the start.
	startedEv := w.base(bus.RunTurnStarted)
	turnStored := make(chan struct{})
	startTried := false
	started := func(pid int) {
		at := time.Now().UTC()
		if startTried {
			return
		}
		startTried = true
		if pid > 0 {
			startedEv.AgentPID, startedEv.AgentStartedAt = pid, &at
		}
		w.lifecycleStored(ctx, startedEv, turnStored)
		w.releaseFirst()
	}
	prompt := bus.TurnEvent{Kind: bus.TurnPrompt, Text: bound(text), At: time.Now().UTC()}
	promptSent := false
	sendPrompt := func() error {
		if promptSent {
			return nil
		}
		promptSent = true
		<-turnStored
		return w.record(ctx, prompt)
	}
	out := sess.turn(ctx, turnInput{prompt: text, cancel: w.cancel, since: since, started: started,
		emit: func(ev bus.TurnEvent) error {
			if err := sendPrompt(); err != nil {
				return fmt.Errorf("record prompt: %w", err)
			}
			return w.record(ctx, ev)
		},
		commit: func() error { return w.sendTurns(ctx) }})
	// A turn that failed before its start was tried still opens.
	started(0)
	if err := sendPrompt(); err != nil {
		return turnOutcome{status: bus.RunFailed, err: "record prompt: " + err.Error()}
	}
	return w.finishTurn(ctx, out)
}

// finishTurn records the end of a turn: the session it started, its
// usage and cost (summed over the run), its stderr when it failed, and
// turn_finished once every one of its events is stored. A turn whose
// events the store refused did not succeed, whatever its result line said.
func (w *run) finishTurn(ctx context.Context, out turnOutcome) turnOutcome {
	w.prog.flush(time.Now())
	if out.abandoned {
		w.log().Warn("a process that left the agent's process group held its output open after it exited; it was killed and reading stopped",
			"grace", DrainGrace)
	}
	if out.sessionID != "" && w.session == "" {
		w.setSession(out.sessionID)
		w.lifecycle(ctx, w.base(bus.RunSessionStarted))
	}
	w.exitCode, w.signal = out.exitCode, out.signal
	fin := w.base(bus.RunTurnFinished)
	before, pricedBefore := w.spentUSD()
	if out.result != nil {
		// Usage and cost are per invocation: sum them over the run.
		u := out.result.Usage
		fin.Usage, fin.CostUSD = &u, out.result.CostUSD
		w.addUsage(u, out.result.CostUSD)
	}
	if out.runUSD != nil {
		w.priced = out.runUSD
	}
	estimated := w.chargeEstimate(&out, &fin)
	// The turn's own share of the cost, for the fleet's day: what the
	// run's figure grew by in this turn (a turn that reported nothing is
	// charged its estimate, see claudeEstimate).
	if after, priced := w.spentUSD(); priced && (out.result != nil || estimated) {
		if !pricedBefore {
			before = 0
		}
		turnUSD := max(after-before, 0)
		fin.BudgetUSD = &turnUSD
	}
	out = w.budgetEnd(out)
	if out.hit != nil {
		fin.BudgetCap, fin.BudgetLimit, fin.BudgetDay = out.hit.cap, out.hit.limit, out.hit.day
	}
	fin.ExitCode, fin.Signal = out.exitCode, out.signal
	if out.status != bus.RunSucceeded {
		fin.Status, fin.Error = out.status, out.err
	}
	if out.stderr != "" && out.status != bus.RunSucceeded {
		_ = w.record(ctx, bus.TurnEvent{Kind: bus.TurnStderr, Text: bound(out.stderr)})
	}
	if err := w.flush(ctx); err != nil && out.status == bus.RunSucceeded {
		out.status, out.err = bus.RunFailed, storeFailed(err)
		fin.Status, fin.Error = out.status, out.err
	}
	w.lifecycle(ctx, fin)
	return out
}

// chargeEstimate charges a turn that ended without reporting its usage
// what its backend estimated (claudeEstimate): its tokens and dollars
// count on its turn_finished and in the run's sums like reported ones, so
// the caps, the issue's lifetime spend and the fleet's day see them, and
// the turn's error and the log say so. It reports whether dollars were
// charged.
func (w *run) chargeEstimate(out *turnOutcome, fin *bus.RunEvent) bool {
	est := out.estimate
	if out.result != nil || est == nil {
		return false
	}
	u := est.usage
	fin.Usage, fin.BudgetEstimated = &u, true
	w.usage, w.estimated = w.usage.Add(u), true
	if est.usd != nil {
		w.estUSD += *est.usd
		w.estUSDSet = true
	}
	if out.err != "" {
		out.err += "; " + est.why
	}
	w.log().Warn("turn ended without the agent's usage; charged an estimate", "turn", w.turn, "status", out.status, "charge", est.why)
	return est.usd != nil
}

// addUsage adds one invocation's usage and cost to the run's.
func (w *run) addUsage(u bus.Usage, cost *float64) {
	w.usage = w.usage.Add(u)
	if cost != nil {
		c := *cost
		if w.cost != nil {
			c += *w.cost
		}
		w.cost = &c
	}
}
