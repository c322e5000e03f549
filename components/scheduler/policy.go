package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/eligibility"
)

// The scheduling rules of CONTRACT §3 as pure functions: no I/O, no clock,
// no state. The component applies them to what it owns.

// ContinuationDelay is the wait after a clean worker exit before checking
// whether the issue needs another worker (spec §8.4).
const ContinuationDelay = time.Second

// FailureBaseDelay is the first failure retry delay; it doubles per attempt.
const FailureBaseDelay = 10 * time.Second

// ErrNoSlots is the retry error when a retry finds no free slot.
const ErrNoSlots = "no available orchestrator slots"

// normState is how states compare: trimmed, lowercased.
func normState(s string) string { return eligibility.NormState(s) }

func inStates(state string, states []string) bool { return eligibility.InStates(state, states) }

// Reason says why an issue is not eligible ("" when it is): the rules
// about the issue itself (internal/eligibility), then the scheduler's own.
type Reason = eligibility.Reason

const (
	Eligible                 = eligibility.Eligible
	MissingFields            = eligibility.MissingFields
	UnsafeIdentifier         = eligibility.UnsafeIdentifier
	NotActive                = eligibility.NotActive
	Terminal                 = eligibility.Terminal
	NotDispatchable          = eligibility.NotDispatchable
	MissingLabel             = eligibility.MissingLabel
	AlreadyRunning    Reason = "already running"
	AlreadyClaimed    Reason = "already claimed"
	NoGlobalSlot      Reason = "no free global slot"
	NoStateSlot       Reason = "no free slot for its state"
	BlockedByOperator Reason = "blocked until an operator clears it"
	WorkspaceRemoving Reason = "its workspace is being removed"
)

// Occupancy is what the scheduler currently holds, for slot and claim
// checks.
type Occupancy struct {
	// Running maps issue id to the normalized state it was dispatched in.
	Running map[string]string
	// Claimed holds issue ids with a claim (running or waiting to retry).
	Claimed map[string]bool
	// Blocked holds issue ids an operator must clear.
	Blocked map[string]bool
	// Removing holds issue ids whose workspace removal (before_remove
	// included) is in flight: a new run would be prepared beside it.
	Removing map[string]bool
}

// runningIn counts running issues in a normalized state.
func (o Occupancy) runningIn(state string) int {
	n := 0
	for _, s := range o.Running {
		if s == state {
			n++
		}
	}
	return n
}

// GlobalSlots is max(max_concurrent_agents - running, 0).
func GlobalSlots(cfg bus.AgentConfig, running int) int {
	return max(cfg.MaxConcurrentAgents-running, 0)
}

// stateLimit is the per-state limit, the global one when none is set.
func stateLimit(cfg bus.AgentConfig, state string) int {
	if n, ok := cfg.MaxConcurrentAgentsByState[normState(state)]; ok {
		return n
	}
	return cfg.MaxConcurrentAgents
}

// Routable applies the rules about the issue itself (internal/eligibility).
// Dispatch requires it of a candidate (through Check), and reconciliation
// of a running issue: an issue that would not be dispatched now does not
// keep its agent either.
func Routable(cfg bus.Config, iss bus.Issue) Reason { return eligibility.Routable(cfg, iss) }

// Check applies the eligibility rules (spec §8.2, CONTRACT §3) to one
// candidate: Routable, then what the scheduler holds. retry is true when
// the claim being checked is the issue's own (a retry firing), so its
// claim does not disqualify it.
func Check(cfg bus.Config, iss bus.Issue, occ Occupancy, retry bool) Reason {
	if r := Routable(cfg, iss); r != Eligible {
		return r
	}
	switch {
	case occ.Blocked[iss.ID]:
		return BlockedByOperator
	case occ.Running[iss.ID] != "":
		return AlreadyRunning
	case occ.Removing[iss.ID]:
		return WorkspaceRemoving
	case occ.Claimed[iss.ID] && !retry:
		return AlreadyClaimed
	case GlobalSlots(cfg.Agent, len(occ.Running)) == 0:
		return NoGlobalSlot
	case occ.runningIn(normState(iss.State)) >= stateLimit(cfg.Agent, iss.State):
		return NoStateSlot
	}
	return Eligible
}

// Sort orders candidates for dispatch: priority 1..4 ascending, then no
// priority (or anything else); then oldest created first (unknown last);
// then identifier.
func Sort(issues []bus.Issue) {
	rank := func(p *int) int {
		if p != nil && *p >= 1 && *p <= 4 {
			return *p
		}
		return 5
	}
	slices.SortStableFunc(issues, func(a, b bus.Issue) int {
		if c := cmp.Compare(rank(a.Priority), rank(b.Priority)); c != 0 {
			return c
		}
		switch {
		case a.CreatedAt != nil && b.CreatedAt != nil:
			if c := a.CreatedAt.Compare(*b.CreatedAt); c != 0 {
				return c
			}
		case a.CreatedAt != nil:
			return -1
		case b.CreatedAt != nil:
			return 1
		}
		return cmp.Compare(a.Identifier, b.Identifier)
	})
}

// RetryDelay is the failure backoff: min(10 s × 2^(attempt−1), max).
func RetryDelay(attempt int, maxBackoffMS int64) time.Duration {
	limit := time.Duration(maxBackoffMS) * time.Millisecond
	if attempt < 1 {
		attempt = 1
	}
	d := FailureBaseDelay
	for i := 1; i < attempt; i++ {
		d *= 2
		if d >= limit || d <= 0 {
			return limit
		}
	}
	return min(d, limit)
}

// Plan picks, from sorted candidates, the ones to dispatch now, counting
// the slots each dispatch uses. Ineligible candidates are returned with
// their reason (the unsafe ones must be reported every poll).
func Plan(cfg bus.Config, candidates []bus.Issue, occ Occupancy) (dispatch []bus.Issue, skipped map[string]Reason) {
	running := make(map[string]string, len(occ.Running))
	for k, v := range occ.Running {
		running[k] = v
	}
	occ.Running = running
	skipped = map[string]Reason{}
	sorted := slices.Clone(candidates)
	Sort(sorted)
	for _, iss := range sorted {
		if r := Check(cfg, iss, occ, false); r != Eligible {
			skipped[iss.ID] = r
			continue
		}
		dispatch = append(dispatch, iss)
		occ.Running[iss.ID] = normState(iss.State)
	}
	return dispatch, skipped
}
