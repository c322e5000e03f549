// Package eligibility is the one rule of which issues may have an agent,
// as far as the issue itself decides (CONTRACT §3, spec §8.2): its fields,
// its identifier, its state, its dispatchability and the required labels.
// The scheduler applies it to dispatch a candidate and to keep a running
// agent (reconciliation); the agent runner applies it before each
// continuation turn. One definition, so that the three never disagree
// about an issue. It is a pure function: no I/O, no clock, no state.
package eligibility

import (
	"slices"
	"strings"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Reason says why an issue may not have an agent ("" when it may).
type Reason string

// The reasons, in the order they are checked.
const (
	Eligible         Reason = ""
	MissingFields    Reason = "missing id, identifier, title or state"
	UnsafeIdentifier Reason = "unsafe identifier"
	Terminal         Reason = "state is terminal"
	NotActive        Reason = "state is not active"
	NotDispatchable  Reason = "not dispatchable (assignee filter or open blockers)"
	MissingLabel     Reason = "a required label is missing"
)

// NormState is how states compare: trimmed, lowercased.
func NormState(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// InStates reports whether state is one of states, as states compare.
func InStates(state string, states []string) bool {
	n := NormState(state)
	return slices.ContainsFunc(states, func(s string) bool { return NormState(s) == n })
}

// Routable checks the issue against the rules about itself.
func Routable(cfg bus.Config, iss bus.Issue) Reason {
	switch {
	case iss.ID == "" || iss.Identifier == "" || iss.Title == "" || iss.State == "":
		return MissingFields
	case !safeid.Valid(iss.Identifier):
		return UnsafeIdentifier
	case InStates(iss.State, cfg.Tracker.TerminalStates):
		return Terminal
	case !InStates(iss.State, cfg.Tracker.ActiveStates):
		return NotActive
	case !iss.Dispatchable:
		return NotDispatchable
	}
	for _, want := range cfg.Tracker.RequiredLabels {
		if !slices.ContainsFunc(iss.Labels, func(l string) bool { return strings.EqualFold(strings.TrimSpace(l), strings.TrimSpace(want)) }) {
			return MissingLabel
		}
	}
	return Eligible
}
