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

// TestToolsOverTheBus: the tracker lists its adapter's tools and runs a
// call asked on symphony.tracker.tool; the next poll sees its effect.
func TestToolsOverTheBus(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	writeIssue(t, dir, "A-2.md", "---\ntitle: two\nstate: Todo\n---\n")
	h := startTracker(t, nil)
	own := bus.IssueRef{ID: "A-1", Identifier: "A-1"}

	// Before any config: the listing is a classed error, a call a
	// failure result. (Ask until the component serves.)
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
	if res.OK || res.Class != bus.TrackerConfigError {
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

// TestLinearGraphQLPolicyFollowsReload: tracker.tools.linear_graphql is a
// tracker setting, so a new config rebuilds the adapter and the next call
// runs under the new policy (fixing it per run at dispatch is a later
// step of issue #21).
func TestLinearGraphQLPolicyFollowsReload(t *testing.T) {
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
	other := bus.CallTool{RunID: "r1", Issue: bus.IssueRef{ID: "uuid-001", Identifier: "SYM-1"}, Tool: "linear_graphql",
		Arguments: json.RawMessage(`{"query":"mutation M($id: String!) { issueUpdate(id: $id, input: {title: \"t\"}) { success } }","variables":{"id":"uuid-999"}}`)}
	for i, c := range []struct {
		policy string
		ok     bool
		rule   string
	}{{"", false, linearscope.RuleTargetNotOwnIssue}, {bus.LinearGraphQLAny, true, ""}, {bus.LinearGraphQLOff, false, linearscope.RuleToolDisabled}} {
		tc.Tools.LinearGraphQL = c.policy
		h.config(int64(i+1), tc, time.Hour)
		if s := h.snapshot(); len(s.Issues) != 1 {
			t.Fatalf("policy %q: snapshot %+v", c.policy, s)
		}
		res, err := bus.Ask(t.Context(), h.b, bus.TrackerToolCall, other)
		if err != nil || res.OK != c.ok || res.Rule != c.rule {
			t.Errorf("policy %q: %+v %v", c.policy, res, err)
		}
	}
}
