package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

func cfg() bus.Config {
	return bus.Config{
		Tracker: bus.TrackerConfig{ActiveStates: []string{"Todo", "In Progress"}, TerminalStates: []string{"Done", "Cancelled"}},
		Agent:   bus.AgentConfig{MaxConcurrentAgents: 3, MaxConcurrentAgentsByState: map[string]int{"in progress": 1}, MaxRetryBackoffMS: 300000},
	}
}

func iss(id string, prio int, created string, state string) bus.Issue {
	i := bus.Issue{ID: id, Identifier: id, Title: "t " + id, State: state, Dispatchable: true, Labels: []string{"Agent"}}
	if prio >= 0 {
		i.Priority = &prio
	}
	if created != "" {
		t, _ := time.Parse(time.RFC3339, created)
		i.CreatedAt = &t
	}
	return i
}

func TestSortOrder(t *testing.T) {
	list := []bus.Issue{
		iss("E-5", -1, "2026-01-01T00:00:00Z", "Todo"),
		iss("E-4", 0, "2026-01-01T00:00:00Z", "Todo"),
		iss("E-3", 2, "", "Todo"),
		iss("E-2", 2, "2026-01-02T00:00:00Z", "Todo"),
		iss("E-1", 2, "2026-01-01T00:00:00Z", "Todo"),
		iss("E-0", 1, "2026-03-01T00:00:00Z", "Todo"),
		iss("E-9", 7, "2025-01-01T00:00:00Z", "Todo"),
		iss("E-6", 2, "2026-01-01T00:00:00Z", "Todo"),
	}
	Sort(list)
	var got []string
	for _, i := range list {
		got = append(got, i.Identifier)
	}
	// Priority 1, then 2 (oldest first, identifier as tie-break, no date
	// last), then none/other by date and identifier.
	if fmt.Sprint(got) != "[E-0 E-1 E-6 E-2 E-3 E-9 E-4 E-5]" {
		t.Errorf("order %v", got)
	}
}

func TestCheck(t *testing.T) {
	c := cfg()
	c.Tracker.RequiredLabels = []string{"agent"}
	free := Occupancy{Running: map[string]string{}, Claimed: map[string]bool{}, Blocked: map[string]bool{}}
	cases := []struct {
		name  string
		issue func() bus.Issue
		occ   Occupancy
		retry bool
		want  Reason
	}{
		{"eligible", func() bus.Issue { return iss("A-1", 1, "", "todo ") }, free, false, Eligible},
		{"missing title", func() bus.Issue { i := iss("A-1", 1, "", "Todo"); i.Title = ""; return i }, free, false, MissingFields},
		{"unsafe", func() bus.Issue { i := iss("A-1", 1, "", "Todo"); i.Identifier = "../A-1"; return i }, free, false, UnsafeIdentifier},
		{"terminal", func() bus.Issue { return iss("A-1", 1, "", "Done") }, free, false, Terminal},
		{"not active", func() bus.Issue { return iss("A-1", 1, "", "Human Review") }, free, false, NotActive},
		{"not dispatchable", func() bus.Issue { i := iss("A-1", 1, "", "Todo"); i.Dispatchable = false; return i }, free, false, NotDispatchable},
		{"label missing", func() bus.Issue { i := iss("A-1", 1, "", "Todo"); i.Labels = nil; return i }, free, false, MissingLabel},
		{"running", func() bus.Issue { return iss("A-1", 1, "", "Todo") }, Occupancy{Running: map[string]string{"A-1": "todo"}}, false, AlreadyRunning},
		{"claimed", func() bus.Issue { return iss("A-1", 1, "", "Todo") }, Occupancy{Claimed: map[string]bool{"A-1": true}}, false, AlreadyClaimed},
		{"own claim on retry", func() bus.Issue { return iss("A-1", 1, "", "Todo") }, Occupancy{Claimed: map[string]bool{"A-1": true}}, true, Eligible},
		{"blocked", func() bus.Issue { return iss("A-1", 1, "", "Todo") }, Occupancy{Blocked: map[string]bool{"A-1": true}}, false, BlockedByOperator},
		{"global full", func() bus.Issue { return iss("A-1", 1, "", "Todo") }, Occupancy{Running: map[string]string{"x": "todo", "y": "todo", "z": "todo"}}, false, NoGlobalSlot},
		{"state full", func() bus.Issue { return iss("A-1", 1, "", "In Progress") }, Occupancy{Running: map[string]string{"x": "in progress"}}, false, NoStateSlot},
	}
	for _, tc := range cases {
		if got := Check(c, tc.issue(), tc.occ, tc.retry); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPlanRespectsLimits(t *testing.T) {
	c := cfg()
	cands := []bus.Issue{
		iss("B-1", 3, "2026-01-01T00:00:00Z", "In Progress"),
		iss("B-2", 1, "2026-01-01T00:00:00Z", "In Progress"),
		iss("B-3", 2, "2026-01-01T00:00:00Z", "Todo"),
		iss("B-4", 4, "2026-01-01T00:00:00Z", "Todo"),
		iss("B-5", 4, "2026-01-02T00:00:00Z", "Todo"),
	}
	got, skipped := Plan(c, cands, Occupancy{Running: map[string]string{}})
	var ids []string
	for _, i := range got {
		ids = append(ids, i.ID)
	}
	// One In Progress slot (B-2 wins on priority), three global slots.
	if fmt.Sprint(ids) != "[B-2 B-3 B-4]" || skipped["B-1"] != NoStateSlot || skipped["B-5"] != NoGlobalSlot {
		t.Errorf("dispatch %v, skipped %v", ids, skipped)
	}
	// Concurrency read live: a bigger limit dispatches more.
	c.Agent.MaxConcurrentAgents = 10
	got, _ = Plan(c, cands, Occupancy{Running: map[string]string{}})
	if len(got) != 4 {
		t.Errorf("with 10 slots: %d dispatched", len(got))
	}
}

func TestRetryDelay(t *testing.T) {
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, w := range want {
		if got := RetryDelay(i+1, 300000); got != w {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w)
		}
	}
	if got := RetryDelay(1000, 300000); got != 300*time.Second {
		t.Errorf("attempt 1000 overflows: %v", got)
	}
	if got := RetryDelay(3, 15000); got != 15*time.Second {
		t.Errorf("cap 15s: %v", got)
	}
}
