package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/tracker/linearscope"
)

// TestToolsOverTheBus: the tracker opens a run's tool session, lists its
// adapter's tools and runs a call asked on symphony.tracker.tool; the next
// poll sees its effect. Without a session (before it opens, after its
// release) a call is refused.
func TestToolsOverTheBus(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	writeIssue(t, dir, "A-2.md", "---\ntitle: two\nstate: Todo\n---\n")
	h := startTracker(t, nil)
	own := bus.IssueRef{ID: "A-1", Identifier: "A-1"}

	// Before any config: the listing is a classed error, a call (which
	// has no session) a failure result. (Ask until the component serves.)
	var res bus.ToolResult
	deadline := time.Now().Add(testTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		var err error
		res, err = bus.Ask(ctx, h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: own, Tool: "files_set_state", Arguments: json.RawMessage(`{"state":"Done"}`)})
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if res.OK || res.Class != bus.ToolRefused || res.Rule != "session" {
		t.Errorf("call before config: %+v", res)
	}
	var re *bus.RemoteError
	if _, err := bus.Ask(t.Context(), h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: own}); !errors.As(err, &re) || re.Code != bus.TrackerConfigError {
		t.Errorf("listing before config: %v", err)
	}

	h.config(3, bus.TrackerConfig{Kind: bus.TrackerFiles, Provider: bus.TrackerProvider{Path: dir}, ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"}}, time.Hour)
	if s := h.snapshot(); len(s.Issues) != 2 {
		t.Fatalf("first poll: %+v", s.Issues)
	}
	specs, err := bus.Ask(t.Context(), h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: own})
	if err != nil || specs.Tracker != bus.TrackerFiles || specs.ConfigVersion != 3 || len(specs.Tools) != 2 {
		t.Fatalf("tools: %+v %v", specs, err)
	}
	for _, s := range specs.Tools {
		var schema map[string]any
		if !s.Mutates || s.Description == "" || json.Unmarshal(s.InputSchema, &schema) != nil || schema["type"] != "object" {
			t.Errorf("spec %+v", s)
		}
	}
	res, err = bus.Ask(t.Context(), h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: own, Tool: "files_set_state", Arguments: json.RawMessage(`{"state":"Human Review"}`)})
	if err != nil || !res.OK || !strings.Contains(string(res.Output), `"state":"Human Review"`) {
		t.Fatalf("call: %+v %v", res, err)
	}
	res, err = bus.Ask(t.Context(), h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: own, Tool: "files_set_state", Arguments: json.RawMessage(`{"state":1}`)})
	if err != nil || res.OK || res.Class != bus.ToolBadArguments {
		t.Errorf("bad call: %+v %v", res, err)
	}
	list, err := bus.Ask(t.Context(), h.b, bus.TrackerCandidates, bus.IssuesByStates{States: []string{"Todo"}})
	if err != nil || len(list.Issues) != 1 || list.Issues[0].ID != "A-2" {
		t.Errorf("candidates after the call: %+v %v", list.Issues, err)
	}
	if !strings.Contains(h.logs.String(), "tool call") {
		t.Error("tool calls are not logged")
	}
	if _, err := bus.Ask(t.Context(), h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: bus.IssueRef{ID: "A-2"}}); err == nil {
		t.Error("a run's session reopened for another issue")
	}
	rel, err := bus.Ask(t.Context(), h.b, bus.TrackerToolsRelease, bus.ReleaseTools{RunID: "r1"})
	if err != nil || !rel.Found {
		t.Fatalf("release: %+v %v", rel, err)
	}
	res, err = bus.Ask(t.Context(), h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: own, Tool: "files_set_state", Arguments: json.RawMessage(`{"state":"Todo"}`)})
	if err != nil || res.OK || res.Rule != "session" {
		t.Errorf("call after the release: %+v %v", res, err)
	}
}

// TestOutputOverTheBoundSaysTheCallRan: an answer too large to return is
// a failure that says the call ran (a mutation's effect stands).
func TestOutputOverTheBoundSaysTheCallRan(t *testing.T) {
	res := bus.ToolResult{OK: true, Output: json.RawMessage(`{"data":"0123456789"}`), RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-Complexity": "1"}}}
	if got := boundOutput(res, 100); !got.OK {
		t.Errorf("within the bound: %+v", got)
	}
	got := boundOutput(res, 10)
	if got.OK || got.Class != bus.ToolOutputTooLarge || got.Output != nil || !strings.Contains(got.Error, "the call ran") || got.RateLimit == nil {
		t.Errorf("over the bound: %+v", got)
	}
}

// TestToolSessionPinsItsPolicy: tracker.tools.linear_graphql is fixed per
// run when its session opens. A reload applies to runs that open a
// session after it, never to a live session (the reference's §10.5).
func TestToolSessionPinsItsPolicy(t *testing.T) {
	f := newFakeLinear(t)
	f.setIssues([]map[string]any{linearIssue(1, "Todo")})
	f.inject = func(w http.ResponseWriter, _ int, op string) bool {
		if op != "?" { // the poller's own documents get the fake's answers
			return false
		}
		fmt.Fprint(w, `{"data":{"issueUpdate":{"success":true}}}`)
		return true
	}
	h := startTracker(t, map[string]string{"LINEAR_API_KEY": testAPIKey})
	tc := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url(), APIKey: bus.NewSecret("LINEAR_API_KEY", "")},
		ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"}}
	own := bus.IssueRef{ID: "uuid-001", Identifier: "SYM-1"}
	other := func(run string) bus.CallTool {
		return bus.CallTool{RunID: run, Issue: own, Tool: "linear_graphql",
			Arguments: json.RawMessage(`{"query":"mutation M($id: String!) { issueUpdate(id: $id, input: {title: \"t\"}) { success } }","variables":{"id":"uuid-999"}}`)}
	}
	policies := []struct {
		policy string
		ok     bool
		rule   string
	}{{"", false, linearscope.RuleTargetNotOwnIssue}, {bus.LinearGraphQLAny, true, ""}, {bus.LinearGraphQLOff, false, linearscope.RuleToolDisabled}}
	for i, c := range policies {
		tc.Tools.LinearGraphQL = c.policy
		h.config(int64(i+1), tc, time.Hour)
		if s := h.snapshot(); len(s.Issues) != 1 {
			t.Fatalf("policy %q: snapshot %+v", c.policy, s)
		}
		run := fmt.Sprintf("r%d", i)
		specs, err := bus.Ask(t.Context(), h.b, bus.TrackerTools, bus.ListTools{RunID: run, Issue: own})
		if err != nil || specs.ConfigVersion != int64(i+1) {
			t.Fatalf("policy %q: session %+v %v", c.policy, specs, err)
		}
		// Every run opened so far keeps the policy of its own start.
		for j := 0; j <= i; j++ {
			res, err := bus.Ask(t.Context(), h.b, bus.TrackerToolCall, other(fmt.Sprintf("r%d", j)))
			if want := policies[j]; err != nil || res.OK != want.ok || res.Rule != want.rule {
				t.Errorf("config %d, run r%d (opened under %q): %+v %v", i+1, j, want.policy, res, err)
			}
		}
	}
}

// TestToolCallsAndPollsShareOneRateLimit: a rate limit a pinned session's
// call runs into stops the poller too, though the poller's adapter was
// rebuilt by a reload since (one quota for both).
func TestToolCallsAndPollsShareOneRateLimit(t *testing.T) {
	f := newFakeLinear(t)
	f.setIssues([]map[string]any{linearIssue(1, "Todo")})
	f.inject = func(w http.ResponseWriter, _ int, op string) bool {
		if op != "?" {
			return false
		}
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	h := startTracker(t, map[string]string{"LINEAR_API_KEY": testAPIKey})
	tc := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url(), APIKey: bus.NewSecret("LINEAR_API_KEY", "")},
		ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"}}
	h.config(1, tc, time.Hour)
	h.snapshot()
	own := bus.IssueRef{ID: "uuid-001", Identifier: "SYM-1"}
	if _, err := bus.Ask(t.Context(), h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: own}); err != nil {
		t.Fatal(err)
	}
	tc.ActiveStates = []string{"Todo", "In Progress"}
	h.config(2, tc, time.Hour)
	h.snapshot()
	res, err := bus.Ask(t.Context(), h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: own, Tool: "linear_graphql", Arguments: json.RawMessage(`{"query":"query { viewer { id } }"}`)})
	if err != nil || res.OK || res.Class != bus.TrackerRateLimited || res.RateLimit == nil || !res.RateLimit.Limited {
		t.Fatalf("limited call: %+v %v", res, err)
	}
	n := len(f.ops())
	if _, err := bus.Ask(t.Context(), h.b, bus.TrackerCandidates, bus.IssuesByStates{States: []string{"Todo"}}); err == nil || !strings.Contains(err.Error(), bus.TrackerRateLimited) {
		t.Errorf("a listing during the tool call's limit: %v", err)
	}
	if len(f.ops()) != n {
		t.Errorf("the rebuilt adapter sent %d requests during the limit", len(f.ops())-n)
	}
}
