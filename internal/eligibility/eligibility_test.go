package eligibility

import (
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// TestRoutable: each rule in its order, states and labels compared
// trimmed and without case.
func TestRoutable(t *testing.T) {
	cfg := bus.Config{Tracker: bus.TrackerConfig{ActiveStates: []string{"Todo", "In Progress"}, TerminalStates: []string{"Done"}, RequiredLabels: []string{"agent"}}}
	ok := bus.Issue{ID: "1", Identifier: "A-1", Title: "t", State: " in progress ", Dispatchable: true, Labels: []string{" Agent "}}
	with := func(f func(*bus.Issue)) bus.Issue {
		iss := ok
		iss.Labels = append([]string(nil), ok.Labels...)
		f(&iss)
		return iss
	}
	for name, c := range map[string]struct {
		iss  bus.Issue
		want Reason
	}{
		"eligible":          {ok, Eligible},
		"no title":          {with(func(i *bus.Issue) { i.Title = "" }), MissingFields},
		"unsafe identifier": {with(func(i *bus.Issue) { i.Identifier = "../x" }), UnsafeIdentifier},
		"terminal":          {with(func(i *bus.Issue) { i.State = "DONE" }), Terminal},
		"not active":        {with(func(i *bus.Issue) { i.State = "Human Review" }), NotActive},
		"not dispatchable":  {with(func(i *bus.Issue) { i.Dispatchable = false }), NotDispatchable},
		"label removed":     {with(func(i *bus.Issue) { i.Labels = []string{"backend"} }), MissingLabel},
		// Terminal wins over not active, fields over everything.
		"terminal and not dispatchable": {with(func(i *bus.Issue) { i.State = "Done"; i.Dispatchable = false }), Terminal},
		"no state":                      {with(func(i *bus.Issue) { i.State = "" }), MissingFields},
	} {
		if got := Routable(cfg, c.iss); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}
