package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/runlog"
)

// Recovery at start-up (the first config): the pause, blocked issues,
// retries and claims stored in KV are taken up again; each claim's run is
// adopted if the agent runner still has it, else its leftover processes
// are killed and the run followed up as its stored end says, or as
// interrupted. The sweep removes the workspaces of issues already terminal.

// startup restores the durable state: retry timers resume at their due
// times; runs the agent runner still has are adopted; the leftover
// processes of every other claim's run are killed, then its stored retry
// (if any) takes its course; else a stored end of the run gets the
// follow-up a live end would have had (see interrupted), and a run with
// none is recorded as interrupted and dispatched again once. Every run
// followed up so is counted into its issue's lifetime spend and the day
// (countEnd): its stored end, else the sum of its stored turns.
func (a *actor) startup(ctx context.Context) {
	a.sweep(ctx)
	a.restorePause(ctx)
	if blocked, err := bus.All(ctx, a.b, bus.Blocks); err == nil {
		a.blocked = blocked
	} else {
		a.log.Error("restore blocked issues", "err", err)
	}
	a.pruneDays(ctx)
	retries, err := bus.All(ctx, a.b, bus.Retries)
	if err != nil {
		a.log.Error("restore retries", "err", err)
	}
	a.retriesListed = err == nil
	for id, r := range retries {
		a.retries[id] = r
	}
	claims, err := bus.All(ctx, a.b, bus.Claims)
	if err != nil {
		a.log.Error("restore claims", "err", err)
	}
	live := a.liveRuns(ctx)
	for id, cl := range claims {
		a.recoverClaim(ctx, id, cl, live)
	}
	// Days that ended while the scheduler was down release their parks,
	// those recovery made too.
	a.releaseEndedDays(ctx)
	a.armRetryTimer()
}

// restorePause takes up the pause an operator stored before the restart.
func (a *actor) restorePause(ctx context.Context) {
	switch p, err := bus.Get(ctx, a.b, bus.DispatchPause); {
	case err == nil:
		a.paused = p.Value.Paused
		if a.paused {
			a.log.Info("dispatch stays paused (paused by the operator before the restart)", "since", p.Value.At)
		}
	case !errors.Is(err, bus.ErrKeyNotFound):
		a.log.Error("restore pause state", "err", err)
	}
}

// liveRuns are the runs the agent runner has now, by run id: runs still
// in flight when only the scheduler restarted, which are adopted. None
// when the runner cannot say: unmatched claims then count as interrupted.
func (a *actor) liveRuns(ctx context.Context) map[string]bus.Dispatch {
	live := map[string]bus.Dispatch{}
	lctx, cancel := a.ask(ctx)
	defer cancel()
	lr, err := bus.Ask(lctx, a.b, bus.AgentRuns, bus.ListRuns{})
	if err != nil {
		a.log.Warn("agent runner's live runs unavailable; unmatched claims count as interrupted", "err", err)
		return live
	}
	for _, d := range lr.Runs {
		live[d.RunID] = d
	}
	return live
}

// recoverClaim restores one stored claim: its run adopted if the runner
// still has it, else its processes killed and the run followed up. A claim
// and a stored retry can coexist while the claim's run is alive (the
// retry's delete failed; a dispatch timed out after the runner had
// accepted it): the retry must not start a second agent beside it.
func (a *actor) recoverClaim(ctx context.Context, id string, cl bus.Claim, live map[string]bus.Dispatch) {
	log := a.log.With("issue_id", id, "issue_identifier", cl.Identifier, "run_id", cl.RunID)
	_, queued := a.retries[id]
	if d, ok := live[cl.RunID]; ok {
		now := time.Now()
		a.running[id] = &running{runID: d.RunID, issue: d.Issue, attempt: d.Attempt, state: normState(d.Issue.State), startedAt: now, lastEvent: now}
		if queued {
			// The live run owns the claim; its end decides what next.
			a.dropRetry(ctx, id)
		}
		log.Info("adopted a run in flight", "dropped_retry", queued)
		// A run the runner lists while its end is being recorded may
		// have stored that end before the run event subscription
		// began: follow it up now (a later copy is ignored).
		if end := a.storedEnd(ctx, cl.RunID); end != nil {
			log.Info("the adopted run has ended", "status", end.Status)
			a.onRunEvent(ctx, *end)
		}
		return
	}
	// An agent the dead process left running must not work beside the
	// new one: find it and its descendants by the run's marker, until
	// none is left. If that cannot be made sure, the claim stays and
	// nothing is dispatched: not even its stored retry, which stays
	// stored for the next start (retryUnsure: a later dispatch of the
	// issue still deletes it).
	if err := a.c.opts.killRun(cl.RunID); err != nil {
		if queued {
			delete(a.retries, id)
			a.retryUnsure[id] = true
		}
		log.Error("processes of the interrupted run may still be alive; the issue stays claimed", "err", err)
		return
	}
	if queued {
		// The stored retry dispatches it again; what the run spent (a
		// dispatch that timed out after the runner had taken it) still
		// counts.
		a.countGone(ctx, id, cl)
		return
	}
	a.interrupted(ctx, id, cl)
}

// interrupted handles a claim whose run is gone, its processes killed.
func (a *actor) interrupted(ctx context.Context, id string, cl bus.Claim) {
	log := a.log.With("issue_id", id, "issue_identifier", cl.Identifier, "run_id", cl.RunID)
	attempt := 1
	if cl.Attempt != nil {
		attempt = *cl.Attempt + 1
	}
	if finished := a.storedEnd(ctx, cl.RunID); finished != nil {
		// Its end was recorded before the restart; only the follow-up was
		// lost (the scheduler stops first at a shutdown, and a crash can
		// come between the two). The crash may have come between storing
		// the end and updating the run's summary: make the summary show it.
		if err := runlog.EnsureEnded(ctx, a.b, *finished); err != nil {
			log.Error("repair the summary of a finished run", "err", err)
		}
		switch finished.Status {
		case bus.RunInterrupted:
			// The runner's end carries what the run spent: counted as a
			// live end is (Counted keeps it once).
			a.countEnd(ctx, issueRef(*finished, id, cl.Identifier), *finished)
			// Cut short by the shutdown (the runner records it so):
			// dispatched again once, now, as after a crash.
			a.queueRetry(ctx, bus.RetryEntry{IssueID: id, Identifier: cl.Identifier, Attempt: attempt, DueAt: time.Now(), Error: "interrupted"})
			log.Warn("run interrupted by a restart; dispatching again")
		case bus.RunCanceled:
			// Canceled by reconciliation or an operator, whose reasons died
			// with the process: the next poll decides afresh.
			a.countEnd(ctx, issueRef(*finished, id, cl.Identifier), *finished)
			a.release(ctx, id)
			log.Info("claim of a canceled run released at start-up")
		default:
			// Succeeded, failed, blocked, timed out, stalled: the follow-up
			// a live end gets (a continuation check, a retry with its
			// backoff, a block), not a fresh dispatch.
			now := time.Now()
			iss := issueOf(finished.Issue, id, cl.Identifier)
			a.running[id] = &running{runID: cl.RunID, issue: iss, attempt: cl.Attempt, state: normState(iss.State), startedAt: now, lastEvent: now}
			log.Info("following up a run that ended before the restart", "status", finished.Status)
			a.onRunEvent(ctx, *finished)
		}
		return
	}
	end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now().UTC(), Issue: bus.IssueRef{ID: id, Identifier: cl.Identifier},
		Attempt: cl.Attempt, Status: bus.RunInterrupted, Error: "symphony stopped while the run was in flight"}
	// What the run spent is in its stored turns: the invented end carries
	// their sum, into the summary and the counts.
	end = a.withStoredTurns(ctx, end)
	if err := recordRetrying(ctx, a.b, end, cl.RunID+"-interrupted"); err != nil {
		log.Error("record interrupted run", "err", err)
	}
	a.countEnd(ctx, end.Issue, end)
	a.queueRetry(ctx, bus.RetryEntry{IssueID: id, Identifier: cl.Identifier, Attempt: attempt, DueAt: time.Now(), Error: "interrupted"})
	log.Warn("run interrupted by a restart; dispatching again")
}

// countGone counts what the claim's gone run spent without following it
// up (its stored retry does): its stored end, else the sum of its stored
// turns, if it had any.
func (a *actor) countGone(ctx context.Context, id string, cl bus.Claim) {
	if end := a.storedEnd(ctx, cl.RunID); end != nil {
		a.countEnd(ctx, issueRef(*end, id, cl.Identifier), *end)
		return
	}
	end := a.withStoredTurns(ctx, bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now().UTC(),
		Issue: bus.IssueRef{ID: id, Identifier: cl.Identifier}, Attempt: cl.Attempt, Status: bus.RunInterrupted})
	if end.Turn > 0 {
		a.countEnd(ctx, end.Issue, end)
	}
}

// countEnd adds a run's end to its issue's lifetime spend and to the day:
// every end the scheduler handles, live or at recovery, goes through it
// (once each: IssueSpend.Counted and DaySpend.Counted keep repeats out).
func (a *actor) countEnd(ctx context.Context, iss bus.IssueRef, ev bus.RunEvent) {
	a.countSpend(ctx, iss, ev)
	a.countDayRun(ctx, ev)
}

// issueRef is the issue a stored end names, its id and identifier from
// the claim when the end lacks them.
func issueRef(ev bus.RunEvent, id, identifier string) bus.IssueRef {
	ref := ev.Issue
	ref.ID = id
	if ref.Identifier == "" {
		ref.Identifier = identifier
	}
	return ref
}

// withStoredTurns is end carrying the sum of the run's stored
// turn_finished events (usage, cost, the last turn): what a run whose own
// end was never stored (kill -9, lost by the agent runner) spent as far
// as it was reported. A turn stored twice is summed once.
func (a *actor) withStoredTurns(ctx context.Context, end bus.RunEvent) bus.RunEvent {
	var usage bus.Usage
	var usd, cost float64
	priced, costed, n := false, true, 0
	seen := map[int]bool{}
	for m, err := range bus.History(ctx, a.b, bus.RunEvents, end.RunID, string(bus.RunTurnFinished)) {
		if err != nil || m.Data.RunID != end.RunID || seen[m.Data.Turn] {
			continue
		}
		t := m.Data
		seen[t.Turn] = true
		n++
		end.Turn = max(end.Turn, t.Turn)
		if end.Agent == "" {
			end.Agent = t.Agent
		}
		if t.Usage != nil {
			usage = usage.Add(*t.Usage)
		}
		switch {
		case t.BudgetUSD != nil:
			usd, priced = usd+*t.BudgetUSD, true
		case t.CostUSD != nil:
			usd, priced = usd+*t.CostUSD, true
		}
		if t.CostUSD != nil {
			cost += *t.CostUSD
		} else {
			costed = false
		}
	}
	if n == 0 {
		return end
	}
	end.Usage = &usage
	if priced {
		end.BudgetUSD = &usd
	}
	if costed {
		end.CostUSD = &cost
	}
	return end
}

// recordWindow bounds how long recovery tries to record a run's end.
const recordWindow = 30 * time.Second

// recordRetrying records ev (runlog.Record, deduplicated by msgID, so a
// try that was stored but not acknowledged is not stored twice), trying
// again for up to recordWindow while the servers do not answer; a refusal
// (a full store) is not tried again. On a NATS cluster a takeover can
// coincide with a server's loss, and the streams answer nothing while they
// elect leaders; a run whose end is not recorded then would have none.
func recordRetrying(ctx context.Context, b *bus.Bus, ev bus.RunEvent, msgID string) error {
	deadline := time.Now().Add(recordWindow)
	for {
		err := runlog.Record(ctx, b, ev, msgID)
		if err == nil || !bus.Unavailable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// issueOf is the issue a stored run event names, as far as it says. Its
// state is left out: the stored one is the dispatch's, and the agent may
// have moved the issue since; a block made from it takes the state the
// next poll sees (blockedStateChanged).
func issueOf(ref bus.IssueRef, id, identifier string) bus.Issue {
	iss := bus.Issue{ID: id, Identifier: identifier, Title: ref.Title}
	if ref.URL != "" {
		u := ref.URL
		iss.URL = &u
	}
	return iss
}

// storedEnd is the run's end as stored in the run event stream (nil: none
// could be read).
func (a *actor) storedEnd(ctx context.Context, runID string) *bus.RunEvent {
	var finished *bus.RunEvent
	for m, err := range bus.History(ctx, a.b, bus.RunEvents, runID, string(bus.RunFinished)) {
		if err == nil && m.Data.RunID == runID {
			finished = &m.Data
		}
	}
	return finished
}

// killRun kills every process marked with the run id, again and again
// until none is left (a process may fork while it is being killed), for at
// most five seconds.
func killRun(runID string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := procscan.Kill(bus.RunMarkerEnv, runID)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run %s: processes still appearing after 5s", runID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweep removes the workspaces of issues already terminal (spec §8.6). It
// is tried at start-up and on every tick until it has worked once (the
// tracker may not be ready when the scheduler starts). Neither the list
// (every terminal issue the tracker has) nor the removals are waited for
// here. It is also what finishes a removal a crash cut short.
func (a *actor) sweep(ctx context.Context) {
	if a.swept || a.sweeping {
		return
	}
	a.sweeping = true
	states, asked := a.cfg.Config.Tracker.TerminalStates, time.Now()
	goAsk(ctx, a, requestTimeout,
		func(rctx context.Context) (bus.IssueList, error) {
			return bus.Ask(rctx, a.b, bus.TrackerTerminal, bus.IssuesByStates{States: states, Outline: true})
		},
		func(ctx context.Context, list bus.IssueList, err error) {
			a.sweeping = false
			if err != nil {
				a.log.Warn("startup sweep: terminal issues unavailable; will try again next tick", "err", err)
				return
			}
			a.swept = true
			for _, iss := range list.Issues {
				if a.ranSince(iss.ID, asked) || !safeid.Valid(iss.Identifier) {
					continue
				}
				a.removeWorkspace(ctx, iss)
			}
		})
}

// ranSince reports whether the issue has had a run since the given time,
// or has one now, or a retry queued: the list of terminal issues that
// time was asked for may be out of date for it (the issue was reopened
// and dispatched while the list was on its way), and its workspace holds
// the agent's work. Reconciliation removes the workspace if the issue is
// terminal after all, when its run ends.
func (a *actor) ranSince(id string, t time.Time) bool {
	_, run := a.running[id]
	_, retry := a.retries[id]
	ended, ok := a.lastEnd[id]
	return run || retry || a.firing[id] || (ok && ended.After(t))
}
