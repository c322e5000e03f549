package scheduler

import (
	"context"
	"errors"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// A dispatch whose ask timed out (or whose answer was lost) may have been
// taken by the agent runner all the same: the run then spends while the
// scheduler waits to retry. Such a dispatch is ambiguous, not failed: its
// counts (the issue's runs, max_runs_per_issue) stay, and its run id is
// kept (actor.unanswered) until the run shows itself or is known gone.
// The run is adopted, as start-up adopts the runner's runs, so its turns
// and its end are counted and its end decides what comes next:
//   - by its first run event (turn_finished, run_finished);
//   - by the retry's dispatch, which the runner refuses with
//     CodeAlreadyRunning: the runner's live runs name the issue's run;
//   - and a retry the runner takes shows the run gone: what it spent (its
//     stored end, else its stored turns) is counted then.
// A refusal (the runner's error) or no runner at all is not ambiguous:
// the counts are taken back as before.

// dispatchAmbiguous reports whether a dispatch's error leaves it unknown
// whether the runner took the run: anything but the runner's own answer
// (a RemoteError) or no runner at all.
func dispatchAmbiguous(err error) bool {
	var re *bus.RemoteError
	return !errors.As(err, &re) && !errors.Is(err, bus.ErrNoResponder)
}

// dispatchFailed follows up a dispatch the runner did not accept: the
// counts taken back (undo) unless the runner may have taken the run; a
// refusal because the issue already has a run adopts that run; else a
// retry with backoff.
func (a *actor) dispatchFailed(ctx context.Context, iss bus.Issue, attempt *int, runID string, err error, undo func()) {
	log := a.issueLog(iss).With("run_id", runID)
	var re *bus.RemoteError
	switch {
	case errors.As(err, &re) && re.Code == bus.CodeAlreadyRunning:
		undo()
		if a.adoptLive(ctx, iss) {
			return
		}
	case dispatchAmbiguous(err):
		a.unanswered[iss.ID] = runID
		log.Warn("dispatch unanswered: the agent runner may have started the run; it stays counted and is adopted if it shows itself", "err", err)
	default:
		undo()
	}
	log.Error("dispatch failed; retrying later", "err", err)
	next := 1
	if attempt != nil {
		next = *attempt + 1
	}
	a.queueRetry(ctx, bus.RetryEntry{IssueID: iss.ID, Identifier: iss.Identifier, Attempt: next,
		DueAt: time.Now().Add(RetryDelay(next, a.cfg.Config.Agent.MaxRetryBackoffMS)), Error: err.Error()})
	a.armRetryTimer()
}

// adoptLive adopts the run the agent runner has for the issue (it refused
// another): false when the runner's runs cannot be listed or name none.
func (a *actor) adoptLive(ctx context.Context, iss bus.Issue) bool {
	for id, d := range a.liveRuns(ctx) {
		if d.Issue.ID == iss.ID {
			a.adopt(ctx, iss, id, d.Attempt)
			if end := a.storedEnd(ctx, id); end != nil {
				a.onRunEvent(ctx, *end) // it ended while being adopted
			}
			return true
		}
	}
	return false
}

// adopt makes the run the issue's run in flight, its claim naming it; a
// queued retry is dropped (the run's end decides what next).
func (a *actor) adopt(ctx context.Context, iss bus.Issue, runID string, attempt *int) *running {
	now := time.Now()
	r := &running{runID: runID, issue: iss, attempt: attempt, state: normState(iss.State), startedAt: now, lastEvent: now}
	a.running[iss.ID] = r
	delete(a.unanswered, iss.ID)
	a.dropRetry(ctx, iss.ID)
	if k, err := bus.Claims.Key(iss.ID); err == nil {
		cl := bus.Claim{RunID: runID, IssueID: iss.ID, Identifier: iss.Identifier, Attempt: attempt, At: now.UTC()}
		if _, err := bus.Put(ctx, a.b, k, cl); err != nil {
			a.issueLog(iss).Error("claim of an adopted run not stored", "err", err, "run_id", runID)
		}
	}
	a.issueLog(iss).Info("adopted the run of an unanswered dispatch", "run_id", runID)
	return r
}

// adoptByEvent adopts the run of an unanswered dispatch its event names
// (nil: the event is of no such run).
func (a *actor) adoptByEvent(ctx context.Context, ev bus.RunEvent) *running {
	if _, busy := a.running[ev.Issue.ID]; busy || ev.RunID == "" || a.unanswered[ev.Issue.ID] != ev.RunID {
		return nil
	}
	iss := issueOf(ev.Issue, ev.Issue.ID, ev.Issue.Identifier)
	iss.State = ev.Issue.State
	return a.adopt(ctx, iss, ev.RunID, ev.Attempt)
}

// answeredSince counts what the run of an earlier unanswered dispatch of
// the issue spent, once the runner took a new one (so it no longer has
// that run): its events never came here.
func (a *actor) answeredSince(ctx context.Context, iss bus.Issue) {
	old, ok := a.unanswered[iss.ID]
	if !ok {
		return
	}
	delete(a.unanswered, iss.ID)
	a.countGone(ctx, iss.ID, bus.Claim{RunID: old, IssueID: iss.ID, Identifier: iss.Identifier})
}
