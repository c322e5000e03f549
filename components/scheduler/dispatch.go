package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Dispatch: each tick reconciles, then dispatches the eligible candidates
// of a snapshot in the order Plan gives while slots remain. An issue is
// claimed in KV (compare-and-set) before the agent runner is asked, so
// that no restart and no second tick can start it twice.

// tick is one poll: reconcile, then dispatch from the snapshot.
func (a *actor) tick(ctx context.Context, snap bus.CandidateSnapshot) {
	a.sweep(ctx)
	a.reconcile(ctx)
	a.dispatchFrom(ctx, snap)
}

// dispatchFrom dispatches eligible candidates of the snapshot.
func (a *actor) dispatchFrom(ctx context.Context, snap bus.CandidateSnapshot) {
	a.dispatchSnapshot(ctx, snap, false)
}

// dispatchSnapshot dispatches eligible candidates of the snapshot. asked
// says its FetchedAt is when refreshStale asked, after the ends it was
// asked about: it is stale for an issue only if a run of it ended later
// still. (A snapshot fetched at the very instant a run ended is stale for
// it, but the refresh asked at that instant is not: on a clock that does
// not move between the two — a synctest bubble — it would be asked again
// and again.)
func (a *actor) dispatchSnapshot(ctx context.Context, snap bus.CandidateSnapshot, asked bool) {
	st := a.status
	if st == nil {
		if e, err := bus.Get(ctx, a.b, bus.ConfigStatus); err == nil {
			st = &e.Value
		}
	}
	if st != nil && !st.Valid {
		a.log.Warn("workflow invalid; dispatch skipped this tick (running agents continue)", "error", st.Error)
		return
	}
	if a.paused {
		if a.c.opts.Once && !a.ticked {
			// The pause is durable: a --once run after a paused session
			// must end, not wait for a resume that cannot come.
			a.log.Warn("dispatch is paused (stored by an earlier session): --once dispatches nothing; resume it from the dashboard or the API")
			a.ticked = true
			a.checkOnce()
		}
		return
	}
	if a.c.opts.Once && a.ticked {
		return
	}
	defer func() {
		a.ticked = true
		a.checkOnce()
	}()
	cfg := a.cfg.Config
	candidates := make([]bus.Issue, 0, len(snap.Issues))
	var stale []string
	for _, iss := range snap.Issues {
		// A snapshot taken before this issue's last run ended is stale for
		// it: ask for the issue now rather than trust it (refreshStale:
		// dispatched from the answer when it comes).
		if ended, ok := a.lastEnd[iss.ID]; ok && (ended.After(snap.FetchedAt) || !asked && ended.Equal(snap.FetchedAt)) {
			stale = append(stale, iss.ID)
			continue
		}
		candidates = append(candidates, iss)
	}
	a.refreshStale(ctx, snap, stale)
	// Blocked issues are cleared when their tracker state changes.
	for _, iss := range candidates {
		if bl, ok := a.blocked[iss.ID]; ok && a.blockedStateChanged(ctx, bl, iss.State) {
			a.clearBlocked(ctx, iss.ID)
		}
	}
	if a.dayHeld(ctx) {
		// The fleet reached a daily cap: nothing new starts until the
		// day rolls over or the cap is raised (day.go).
		return
	}
	dispatch, skipped := Plan(cfg, candidates, a.occupancy())
	for _, iss := range candidates {
		switch skipped[iss.ID] {
		case UnsafeIdentifier:
			a.log.Error("issue refused: unsafe identifier (never dispatched)", "issue_id", iss.ID, "identifier", safeid.Quote(iss.Identifier), "rule", safeid.Rule)
		case WorkspaceRemoving:
			a.holdForRemoval(iss.ID)
		}
	}
	for _, iss := range dispatch {
		a.dispatch(ctx, iss, nil)
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
			a.dispatchSnapshot(ctx, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: list.Issues, FetchedAt: at}, States: snap.States, ConfigVersion: snap.ConfigVersion}, true)
		})
}

// occupancy is the view Check needs.
func (a *actor) occupancy() Occupancy {
	occ := Occupancy{Running: map[string]string{}, Claimed: map[string]bool{}, Blocked: map[string]bool{}, Removing: a.removes.busy}
	for id, r := range a.running {
		occ.Running[id] = r.state
		occ.Claimed[id] = true
	}
	for id := range a.retries {
		occ.Claimed[id] = true
	}
	for id := range a.blocked {
		occ.Blocked[id] = true
	}
	return occ
}

// dispatch claims the issue and asks the agent runner to run it.
func (a *actor) dispatch(ctx context.Context, iss bus.Issue, attempt *int) {
	log := a.issueLog(iss)
	runID := a.newRunID(iss)
	key, err := bus.Claims.Key(iss.ID)
	if err != nil {
		log.Error("cannot claim issue", "err", err)
		return
	}
	fence, ok := a.fence(ctx, log)
	if !ok {
		return
	}
	claim := bus.Claim{RunID: runID, IssueID: iss.ID, Identifier: iss.Identifier, Attempt: attempt, At: time.Now().UTC(), Fence: fence}
	if _, queued := a.retries[iss.ID]; queued {
		// A retry owns the claim already: take it over.
		_, err = bus.Put(ctx, a.b, key, claim)
	} else {
		_, err = bus.Create(ctx, a.b, key, claim)
	}
	if errors.Is(err, bus.ErrKeyExists) {
		log.Warn("issue already claimed; not dispatched")
		return
	}
	if err != nil {
		log.Error("claim failed; not dispatched", "err", err)
		return
	}
	// Before the dispatch, even when no retry is known: a retry whose
	// earlier delete failed must not come back after a restart and take
	// the claim over (dropRetry knows when no retry can be stored).
	a.dropRetry(ctx, iss.ID)
	// Counted before the runner is asked (runcap.go): a crash after the
	// ask cannot lose a run that may have started.
	// The issue's lifetime caps first (spend.go): they park for good,
	// where max_runs_per_issue's count resets.
	left, unspend, ok := a.countIssueRun(ctx, iss, runID)
	if !ok {
		return
	}
	uncount, ok := a.countRun(ctx, iss, runID)
	if !ok {
		unspend()
		return
	}
	dctx, cancel := a.ask(ctx)
	_, err = bus.Ask(dctx, a.b, bus.AgentDispatch, bus.Dispatch{RunID: runID, Issue: iss, Attempt: attempt, IssueBudget: left, DayBudget: a.dayBudget(ctx)})
	cancel()
	if err != nil {
		a.dispatchFailed(ctx, iss, attempt, runID, err, func() { uncount(); unspend() })
		return
	}
	a.answeredSince(ctx, iss)
	now := time.Now()
	a.running[iss.ID] = &running{runID: runID, issue: iss, attempt: attempt, state: normState(iss.State), startedAt: now, lastEvent: now}
	log.Info("dispatched", "run_id", runID, "attempt", attemptText(attempt))
}

// fence checks, when the scheduler shares a cluster with standbys, that
// it still holds the lease, and returns the holding's fencing token (0
// without a lease); false: the lease is lost and nothing may be
// dispatched.
func (a *actor) fence(ctx context.Context, log *slog.Logger) (uint64, bool) {
	if a.c.opts.Fence == nil {
		return 0, true
	}
	token, err := a.c.opts.Fence(ctx)
	if err != nil {
		log.Error("not dispatched: this scheduler does not hold the lease", "err", err)
		return 0, false
	}
	return token, true
}

// newRunID is unique per process and readable: <identifier>-<time>-<n>.
func (a *actor) newRunID(iss bus.Issue) string {
	a.runSeq++
	return iss.Identifier + "-" + strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.Itoa(a.runSeq)
}

// release forgets the issue: no claim, no retry, no run count (the
// scheduler lets go of it: runcap.go).
func (a *actor) release(ctx context.Context, id string) {
	a.dropRetry(ctx, id)
	a.resetRuns(ctx, id)
	if k, err := bus.Claims.Key(id); err == nil {
		if err := bus.Delete(ctx, a.b, k); err != nil {
			a.log.Error("release claim", "err", err, "issue_id", id)
		}
	}
}

func attemptText(a *int) string {
	if a == nil {
		return "first"
	}
	return strconv.Itoa(*a)
}
