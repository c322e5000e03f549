package scheduler

import (
	"context"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

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
	for _, id := range ids {
		delete(a.firing, id)
		r, ok := a.retries[id]
		switch {
		case !ok || a.paused:
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

// refreshStale asks the tracker, in one request, about the candidates a
// snapshot is stale for (ids: their last run ended after it was fetched),
// and dispatches from the answer when it comes, as from a snapshot fetched
// when it was asked. An issue the tracker no longer has, or a failed
// refresh, dispatches nothing; the next poll tells afresh.
func (a *actor) refreshStale(ctx context.Context, snap bus.CandidateSnapshot, ids []string) {
	if len(ids) == 0 {
		return
	}
	at := time.Now()
	goAsk(ctx, a, requestTimeout,
		func(rctx context.Context) (bus.IssueList, error) {
			return bus.Ask(rctx, a.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: ids, Outline: true})
		},
		func(ctx context.Context, list bus.IssueList, err error) {
			if err != nil {
				a.log.Warn("refresh of candidates whose run just ended failed; the next poll tells", "issues", len(ids), "err", err)
				return
			}
			a.dispatchFrom(ctx, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: list.Issues, FetchedAt: at}, States: snap.States, ConfigVersion: snap.ConfigVersion})
		})
}
