package tracker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/tracker/linearscope"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"
)

var ownIssue = bus.IssueRef{ID: "uuid-001", Identifier: "SYM-1"}

func callLinear(t *testing.T, l *linear, args any) bus.ToolResult {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return runTool(t.Context(), l.tools(), bus.CallTool{RunID: "r1", Issue: ownIssue, Tool: "linear_graphql", Arguments: raw})
}

func TestLinearGraphQLQueryGoesOutWithTheKey(t *testing.T) {
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, _ int, op string) bool {
		w.Header().Set("X-RateLimit-Requests-Remaining", "4999")
		w.Header().Set("X-Complexity", "3")
		fmt.Fprint(w, `{"data":{"viewer":{"id":"user-me","name":"Me"}}}`)
		return true
	}
	l := newTestLinear(t, f, "", nil)
	doc := "query Me($id: String!) { viewer { id name } issue(id: $id) { id } }"
	res := callLinear(t, l, map[string]any{"query": doc, "variables": map[string]any{"id": "uuid-001"}})
	if !res.OK || string(res.Output) != `{"data":{"viewer":{"id":"user-me","name":"Me"}}}` {
		t.Fatalf("result %+v (%s)", res, res.Output)
	}
	if res.RateLimit == nil || res.RateLimit.Headers["X-Ratelimit-Requests-Remaining"] != "4999" || res.RateLimit.Headers["X-Complexity"] != "3" || res.RateLimit.Limited {
		t.Errorf("rate limit %+v", res.RateLimit)
	}
	// What is sent is the document printed back from the parsed tree (the
	// tree the scope checked), not the agent's text.
	parsed, perr := parser.ParseQuery(&ast.Source{Input: doc})
	if perr != nil {
		t.Fatal(perr)
	}
	var printed bytes.Buffer
	formatter.NewFormatter(&printed).FormatQueryDocument(parsed)
	reqs := f.ops()
	if len(reqs) != 1 || reqs[0].Auth != testAPIKey || reqs[0].Query != printed.String() {
		t.Fatalf("requests %+v", reqs)
	}
	if reqs[0].Vars["id"] != "uuid-001" {
		t.Errorf("variables %v", reqs[0].Vars)
	}
}

func TestLinearGraphQLErrorsAreAFailureResult(t *testing.T) {
	f := newFakeLinear(t)
	body := `{"data":null,"errors":[{"message":"Entity not found: Issue","extensions":{"code":"INVALID_INPUT"}},{"message":"key ` + testAPIKey + ` echoed"}]}`
	f.inject = func(w http.ResponseWriter, _ int, _ string) bool { fmt.Fprint(w, body); return true }
	l := newTestLinear(t, f, "", nil)
	res := callLinear(t, l, map[string]any{"query": `query { issue(id: "nope") { id } }`})
	if res.OK || res.Class != bus.TrackerGraphQLError || !strings.Contains(res.Error, "Entity not found: Issue") {
		t.Fatalf("result %+v", res)
	}
	// The response is kept for debugging, without the key.
	if !strings.Contains(string(res.Output), "INVALID_INPUT") || strings.Contains(string(res.Output)+res.Error, testAPIKey) {
		t.Errorf("output %s, error %s", res.Output, res.Error)
	}
}

// TestLinearGraphQLScrubsEscapedKey: a key echoed in a rate-limit header
// or JSON-escaped in the answer comes back as [redacted].
func TestLinearGraphQLScrubsEscapedKey(t *testing.T) {
	var esc strings.Builder
	for _, c := range testAPIKey {
		fmt.Fprintf(&esc, "\\u%04x", c)
	}
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, _ int, _ string) bool {
		w.Header().Set("X-RateLimit-Echo", "key "+testAPIKey)
		fmt.Fprintf(w, `{"data":{"viewer":{"id":"%s","name":"Me"}}}`, esc.String())
		return true
	}
	l := newTestLinear(t, f, "", nil)
	res := callLinear(t, l, map[string]any{"query": "{ viewer { id name } }"})
	var out struct {
		Data struct{ Viewer struct{ ID string } }
	}
	if !res.OK || json.Unmarshal(res.Output, &out) != nil || out.Data.Viewer.ID != "[redacted]" {
		t.Errorf("output %s", res.Output)
	}
	if res.RateLimit == nil || res.RateLimit.Headers["X-Ratelimit-Echo"] != "key [redacted]" {
		t.Errorf("rate limit %+v", res.RateLimit)
	}
}

func TestLinearGraphQLFailuresAreResults(t *testing.T) {
	f := newFakeLinear(t)
	status := http.StatusInternalServerError
	f.inject = func(w http.ResponseWriter, _ int, _ string) bool {
		if status == http.StatusOK {
			w.Header().Set("X-RateLimit-Requests-Reset", fmt.Sprint(time.Now().Add(time.Hour).UnixMilli()))
			fmt.Fprint(w, `{"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}`)
			return true
		}
		http.Error(w, "boom", status)
		return true
	}
	l := newTestLinear(t, f, "", nil)
	q := map[string]any{"query": "{ viewer { id } }"}
	if res := callLinear(t, l, q); res.OK || res.Class != bus.TrackerStatusError || !strings.Contains(res.Error, "HTTP 500") {
		t.Errorf("HTTP 500: %+v", res)
	}
	status = http.StatusOK
	res := callLinear(t, l, q)
	if res.OK || res.Class != bus.TrackerRateLimited || res.RateLimit == nil || !res.RateLimit.Limited || res.RateLimit.RetryAfterMS < 50*60*1000 {
		t.Fatalf("rate limited: %+v %+v", res, res.RateLimit)
	}
	// The agent and the poller share one quota: the poll waits too, and
	// so does the next call, without a request.
	n := len(f.ops())
	if _, _, err := l.Candidates(t.Context(), []string{"Todo"}); err == nil || !strings.Contains(err.Error(), bus.TrackerRateLimited) {
		t.Errorf("poll during the limit: %v", err)
	}
	if res := callLinear(t, l, q); res.Class != bus.TrackerRateLimited || len(f.ops()) != n {
		t.Errorf("call during the limit: %+v, %d requests", res, len(f.ops())-n)
	}
	f.srv.Close()
	l.gate = &rateGate{}
	if res := callLinear(t, l, q); res.OK || res.Class != bus.TrackerRequestError {
		t.Errorf("transport failure: %+v", res)
	}
}

func TestLinearGraphQLScope(t *testing.T) {
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, _ int, _ string) bool {
		fmt.Fprint(w, `{"data":{"issueUpdate":{"success":true}}}`)
		return true
	}
	l := newTestLinear(t, f, "", nil)
	mutation := `mutation M($id: String!) { issueUpdate(id: $id, input: {title: "t"}) { success } }`
	args := map[string]any{"query": mutation, "variables": map[string]any{"id": ownIssue.ID}}
	// The default policy is scoped (linearscope): an allowed mutation of the
	// run's own issue is sent; one on another issue, or a mutation off the
	// list, is refused with the rule that refused it and never sent.
	if res := callLinear(t, l, args); !res.OK || len(f.ops()) != 1 {
		t.Fatalf("own-issue mutation by default: %+v, %d requests", res, len(f.ops()))
	}
	other := map[string]any{"query": mutation, "variables": map[string]any{"id": "uuid-999"}}
	if res := callLinear(t, l, other); res.OK || res.Class != bus.ToolRefused || res.Rule != linearscope.RuleTargetNotOwnIssue || len(f.ops()) != 1 {
		t.Errorf("another issue by default: %+v, %d requests", res, len(f.ops()))
	}
	del := map[string]any{"query": `mutation { issueDelete(id: "uuid-001") { success } }`}
	if res := callLinear(t, l, del); res.OK || res.Rule != linearscope.RuleMutationNotAllowed || len(f.ops()) != 1 {
		t.Errorf("a mutation off the list by default: %+v, %d requests", res, len(f.ops()))
	}
	// A custom policy sees the document, the variables and the run's issue.
	var seen bus.IssueRef
	l.scope = func(doc string, vars map[string]any, own bus.IssueRef) error {
		seen = own
		if vars["id"] != own.ID {
			return &scopeRefusal{rule: "own_issue_only", msg: "issueUpdate targets another issue"}
		}
		return nil
	}
	if res := callLinear(t, l, args); !res.OK || seen != ownIssue || len(f.ops()) != 2 {
		t.Errorf("mutation allowed by the policy: %+v", res)
	}
	args["variables"] = map[string]any{"id": "uuid-999"}
	if res := callLinear(t, l, args); res.OK || res.Rule != "own_issue_only" || len(f.ops()) != 2 {
		t.Errorf("mutation refused by the policy: %+v", res)
	}
	l.scope = func(string, map[string]any, bus.IssueRef) error { return errors.New("no") }
	if res := callLinear(t, l, args); res.Rule != "scope" {
		t.Errorf("a refusal without a rule: %+v", res)
	}
}

// newPolicyLinear is newTestLinear with tracker.tools.linear_graphql set.
func newPolicyLinear(t *testing.T, f *fakeLinear, policy string) *linear {
	t.Helper()
	cfg := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "proj-1", Endpoint: f.url()},
		Tools: bus.TrackerToolSettings{LinearGraphQL: policy}}
	l, err := newLinear(cfg, testAPIKey, &http.Client{Timeout: testHTTPTimeout}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLinearGraphQLPolicyFromWorkflow(t *testing.T) {
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, _ int, _ string) bool {
		fmt.Fprint(w, `{"data":{"ok":true}}`)
		return true
	}
	query := map[string]any{"query": "{ viewer { id } }"}
	other := map[string]any{"query": `mutation M($id: String!) { issueUpdate(id: $id, input: {title: "t"}) { success } }`,
		"variables": map[string]any{"id": "uuid-999"}}
	del := map[string]any{"query": `mutation { issueDelete(id: "uuid-999") { success } }`}

	// off: every call is refused, a query too, and nothing is sent.
	l := newPolicyLinear(t, f, bus.LinearGraphQLOff)
	for _, args := range []any{query, other} {
		if res := callLinear(t, l, args); res.OK || res.Class != bus.ToolRefused || res.Rule != linearscope.RuleToolDisabled || len(f.ops()) != 0 {
			t.Errorf("off: %+v, %d requests", res, len(f.ops()))
		}
	}
	// any: the reference's behaviour, a mutation on another issue and one
	// off the scoped list go out.
	l = newPolicyLinear(t, f, bus.LinearGraphQLAny)
	if res := callLinear(t, l, other); !res.OK || len(f.ops()) != 1 || f.ops()[0].Vars["id"] != "uuid-999" {
		t.Errorf("any, another issue: %+v, %d requests", res, len(f.ops()))
	}
	if res := callLinear(t, l, del); !res.OK || len(f.ops()) != 2 {
		t.Errorf("any, issueDelete: %+v, %d requests", res, len(f.ops()))
	}
	// scoped, spelt out or left empty, is the default: the query goes out,
	// the mutation on another issue does not.
	for _, p := range []string{bus.LinearGraphQLScoped, ""} {
		l = newPolicyLinear(t, f, p)
		n := len(f.ops())
		if res := callLinear(t, l, query); !res.OK || len(f.ops()) != n+1 {
			t.Errorf("scoped %q, query: %+v", p, res)
		}
		if res := callLinear(t, l, other); res.OK || res.Rule != linearscope.RuleTargetNotOwnIssue || len(f.ops()) != n+1 {
			t.Errorf("scoped %q, another issue: %+v", p, res)
		}
	}
	// A value the loader would have refused is a configuration error here
	// too, never a quiet fallback.
	cfg := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url()},
		Tools: bus.TrackerToolSettings{LinearGraphQL: "everything"}}
	if _, err := newLinear(cfg, testAPIKey, nil, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "tracker.tools.linear_graphql") {
		t.Errorf("unknown policy: %v", err)
	}
	// The loader's spellings are linearscope's.
	for _, p := range []string{bus.LinearGraphQLScoped, bus.LinearGraphQLAny, bus.LinearGraphQLOff} {
		if got, err := linearscope.ParsePolicy(p); err != nil || string(got) != p {
			t.Errorf("ParsePolicy(%q) = %q, %v", p, got, err)
		}
	}
}

func TestLinearGraphQLBadArguments(t *testing.T) {
	f := newFakeLinear(t)
	l := newTestLinear(t, f, "", nil)
	for _, c := range []struct {
		args any
		want string
	}{
		{map[string]any{}, `missing required field "query"`},
		{map[string]any{"query": ""}, `field "query" is empty`},
		{map[string]any{"query": "{ viewer { id } "}, "not a GraphQL document"},
		{map[string]any{"query": "query A { viewer { id } } query B { viewer { id } }"}, "exactly one operation, it has 2"},
		{map[string]any{"query": "fragment F on User { id }"}, "exactly one operation, it has 0"},
		{map[string]any{"query": "{ viewer { id } }", "variables": []any{1}}, `field "variables": want an object, got a JSON array`},
		{map[string]any{"query": "{ viewer { id } }", "variables": "x"}, `field "variables": want an object, got a JSON string`},
		{map[string]any{"query": "{ viewer { id } }", "operationName": "x"}, `unknown field "operationName"`},
		{map[string]any{"query": 1}, `field "query": want a string`},
	} {
		res := callLinear(t, l, c.args)
		if res.OK || res.Class != bus.ToolBadArguments || !strings.Contains(res.Error, c.want) {
			t.Errorf("%v: %+v, want %q", c.args, res, c.want)
		}
	}
	if n := len(f.ops()); n != 0 {
		t.Errorf("%d requests sent for bad arguments", n)
	}
}

// TestLinearGraphQLDescriptionTellsThePolicy: the agent reads in the
// tool's description what the policy in force lets it do.
func TestLinearGraphQLDescriptionTellsThePolicy(t *testing.T) {
	for policy, want := range map[string]string{
		"":                      "only on your own issue",
		bus.LinearGraphQLScoped: "only on your own issue",
		bus.LinearGraphQLAny:    "allows any query or mutation",
		bus.LinearGraphQLOff:    "turned this tool off",
	} {
		cfg := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: "http://127.0.0.1:1"},
			Tools: bus.TrackerToolSettings{LinearGraphQL: policy}}
		l, err := newLinear(cfg, testAPIKey, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		spec := l.tools()[0].spec
		if !strings.Contains(spec.Description, want) {
			t.Errorf("policy %q: description %q lacks %q", policy, spec.Description, want)
		}
		if spec.Mutates == (policy == bus.LinearGraphQLOff) {
			t.Errorf("policy %q: mutates = %v", policy, spec.Mutates)
		}
	}
}

// scopeRefusal is a custom scope's refusal with the rule that made it.
type scopeRefusal struct{ rule, msg string }

func (e *scopeRefusal) Error() string { return e.msg }

// Rule names the rule.
func (e *scopeRefusal) Rule() string { return e.rule }
