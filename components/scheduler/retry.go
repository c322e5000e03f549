package scheduler

import (
	"context"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// The retry queue, mirrored in KV symphony_state: one timer, set to the
// earliest due retry. Due retries are refreshed from the tracker in one
// request, off the actor's goroutine, and fired with its answer.

// fireRetries handles every retry that is due (spec §8.4): the tracker is
// asked about them all at once, and its answer is followed up in
// retriesRefreshed without being waited for here.
func (a *actor) fireRetries(ctx context.Context) {
	now := time.Now()
	if a.paused || a.cfg == nil {
		// Paused: retries keep their place and fire on resume.
		return
	}
	if a.dayHeld(ctx) {
		// At a daily cap: retries keep their place and fire after the
		// rollover (or a reload that raises the cap), which re-arms.
		return
	}
	var due []string
	for id, r := range a.retries {
		if r.DueAt.After(now) || a.firing[id] {
			continue
		}
		if a.removing(id) {
			// Fires when the removal has ended (removed re-arms the timer).
			a.holdForRemoval(id)
			continue
		}
		due = append(due, id)
	}
	a.refreshRetries(ctx, due)
	a.armRetryTimer()
}

// queueRetry queues the issue's retry, here and in KV (the caller arms
// the timer).
func (a *actor) queueRetry(ctx context.Context, r bus.RetryEntry) {
	a.retries[r.IssueID] = r
	if k, err := bus.Retries.Key(r.IssueID); err == nil {
		if _, err := bus.Put(ctx, a.b, k, r); err != nil {
			a.log.Error("store retry", "err", err, "issue_id", r.IssueID)
		}
	}
}

// dropRetry forgets the issue's retry, here and in KV. The delete is
// skipped only when no retry of the issue can be stored: none is queued,
// start-up listed every stored retry, and no delete of one has failed.
func (a *actor) dropRetry(ctx context.Context, id string) {
	_, queued := a.retries[id]
	delete(a.retries, id)
	if !queued && a.retriesListed && !a.retryUnsure[id] {
		return
	}
	if k, err := bus.Retries.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.retryUnsure[id] = true
			return
		}
	}
	delete(a.retryUnsure, id)
}

// armRetryTimer sets the timer to the earliest due retry.
func (a *actor) armRetryTimer() {
	a.retryT.Stop()
	if len(a.retries) == 0 || a.heldToday() {
		return
	}
	next, found := time.Time{}, false
	for id, r := range a.retries {
		if a.removing(id) || a.firing[id] {
			continue // waits for its removal's end, or for the tracker's answer: each re-arms the timer
		}
		if !found || r.DueAt.Before(next) {
			next, found = r.DueAt, true
		}
	}
	if !found {
		return
	}
	a.retryT.Reset(max(next.Sub(time.Now()), 0))
}

// refreshRetries asks the tracker, in one request, about the issues whose
// retries are due (ids), and follows the answer up in retriesRefreshed.
func (a *actor) refreshRetries(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		a.firing[id] = true
	}
	goAsk(ctx, a, requestTimeout,
		func(rctx context.Context) (bus.IssueList, error) {
			return bus.Ask(rctx, a.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: ids, Outline: true})
		},
		func(ctx context.Context, list bus.IssueList, err error) { a.retriesRefreshed(ctx, ids, list, err) })
}

// retriesRefreshed fires the retries of ids with the tracker's answer: a
// retry dropped meanwhile is not fired; one whose issue's workspace is now
// being removed, or which comes while dispatch is paused, keeps its place.
func (a *actor) retriesRefreshed(ctx context.Context, ids []string, list bus.IssueList, err error) {
	defer a.armRetryTimer()
	found := make(map[string]bus.Issue, len(list.Issues))
	for _, iss := range list.Issues {
		found[iss.ID] = iss
	}
	if err != nil {
		a.log.Warn("retry poll failed", "issues", len(ids), "err", err)
	}
	now := time.Now()
	cfg := a.cfg.Config
	held := a.dayHeld(ctx)
	for _, id := range ids {
		delete(a.firing, id)
		r, ok := a.retries[id]
		switch {
		case !ok || a.paused || held:
			continue
		case a.removing(id):
			a.holdForRemoval(id)
			continue
		}
		iss, ok := found[id]
		switch {
		case err != nil:
			// The tracker could not say: keep the claim and try again.
			r.DueAt, r.Error = now.Add(RetryDelay(r.Attempt, cfg.Agent.MaxRetryBackoffMS)), "retry poll failed: "+err.Error()
			a.queueRetry(ctx, r)
		case !ok:
			a.release(ctx, id)
		case inStates(iss.State, cfg.Tracker.TerminalStates):
			a.removeWorkspace(ctx, iss)
			a.release(ctx, id)
		default:
			attempt := r.Attempt
			switch reason := Check(cfg, iss, a.occupancy(), true); reason {
			case Eligible:
				a.dispatch(ctx, iss, &attempt)
			case NoGlobalSlot, NoStateSlot:
				r.DueAt, r.Error = now.Add(RetryDelay(attempt, cfg.Agent.MaxRetryBackoffMS)), ErrNoSlots
				a.queueRetry(ctx, r)
			default:
				a.issueLog(iss).Info("retry released", "reason", reason)
				a.release(ctx, id)
			}
		}
	}
}
