package tracker

import (
	"slices"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// rules are the parts of normalization that depend on configuration.
type rules struct {
	// terminal holds normalized terminal state names.
	terminal []string
	// assignee is the resolved user id issues must be assigned to; "" means
	// no filter.
	assignee string
}

func newRules(terminalStates []string, assignee string) rules {
	r := rules{assignee: assignee}
	for _, s := range terminalStates {
		r.terminal = append(r.terminal, normState(s))
	}
	return r
}

// normState is how states are compared: trimmed and lowercased.
func normState(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// normLabels trims, lowercases and de-duplicates labels, keeping order.
func normLabels(in []string) []string {
	out := []string{}
	for _, l := range in {
		l = strings.ToLower(strings.TrimSpace(l))
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// dispatchable sets iss.Dispatchable: false when an assignee filter does not
// match, or when the issue is in Todo and any blocker is not terminal (a
// blocker whose state is unknown counts as open). unseenBlockers says the
// provider returned only part of the issue's relations: one not seen may be
// an open blocker, so a Todo issue is held back as if it were.
func (r rules) dispatchable(iss *bus.Issue, unseenBlockers bool) {
	iss.Dispatchable = true
	if r.assignee != "" && (iss.AssigneeID == nil || *iss.AssigneeID != r.assignee) {
		iss.Dispatchable = false
		return
	}
	if normState(iss.State) == "todo" && r.held(iss, unseenBlockers) {
		iss.Dispatchable = false
	}
}

// held reports whether iss's blockers hold it back: one not seen (the
// provider returned part of them), or any whose state is not terminal (a
// blocker whose state is unknown counts as open).
func (r rules) held(iss *bus.Issue, unseenBlockers bool) bool {
	if unseenBlockers {
		return true
	}
	for _, b := range iss.BlockedBy {
		if b.State == nil || !slices.Contains(r.terminal, normState(*b.State)) {
			return true
		}
	}
	return false
}

// stateSet is a normalized set of state names.
func stateSet(states []string) map[string]bool {
	m := make(map[string]bool, len(states))
	for _, s := range states {
		m[normState(s)] = true
	}
	return m
}
