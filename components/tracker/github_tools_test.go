package tracker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

var ghOwn = bus.IssueRef{ID: "7", Identifier: "app-7"}

func callGitHub(t *testing.T, g *github, args any) bus.ToolResult {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return runTool(t.Context(), g.tools(), bus.CallTool{RunID: "r1", Issue: ghOwn, Tool: "github_api", Arguments: raw})
}

// writes lists the non-GET requests the fake received.
func (f *fakeGitHub) writes() []ghReq {
	var out []ghReq
	for _, r := range f.requests() {
		if r.method != http.MethodGet {
			out = append(out, r)
		}
	}
	return out
}

// TestGitHubAPIScoped: by default reads of the repository go out, writes
// only on the run's own issue and only the allowed ones; every refusal
// names its rule and sends nothing.
func TestGitHubAPIScoped(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"), ghIssueJSON(8, "open"))
	g := newTestGitHub(t, f, nil, nil)

	res := callGitHub(t, g, map[string]any{"method": "get", "path": "/repos/acme/app/issues/8", "params": map[string]any{"per_page": 5, "labels": []any{"a", "b"}}})
	var out struct {
		Status int            `json:"status"`
		Body   map[string]any `json:"body"`
	}
	if !res.OK || json.Unmarshal(res.Output, &out) != nil || out.Status != 200 || out.Body["title"] != "Issue 8" {
		t.Fatalf("read of another issue: %+v %s", res, res.Output)
	}
	if r := f.requests()[len(f.requests())-1]; r.query != "labels=a%2Cb&per_page=5" {
		t.Errorf("query sent = %q", r.query)
	}
	if res.RateLimit == nil || res.RateLimit.Headers["X-Ratelimit-Remaining"] != "4999" {
		t.Errorf("rate limit = %+v", res.RateLimit)
	}

	allowed := []map[string]any{
		{"method": "POST", "path": "/repos/acme/app/issues/7/comments", "body": map[string]any{"body": "Done: see the PR."}},
		{"method": "PATCH", "path": "/repos/ACME/App/issues/7", "body": map[string]any{"state": "closed", "state_reason": "completed", "labels": []any{"status:Human Review"}}},
		{"method": "POST", "path": "/repos/acme/app/issues/7/labels", "body": map[string]any{"labels": []any{"x"}}},
		{"method": "DELETE", "path": "/repos/acme/app/issues/7/labels/status%3ATodo"},
		{"method": "POST", "path": "/repos/acme/app/issues/7/assignees", "body": map[string]any{"assignees": []any{"octo"}}},
	}
	for _, a := range allowed {
		if res := callGitHub(t, g, a); !res.OK {
			t.Errorf("%v %v refused: %+v", a["method"], a["path"], res)
		}
	}
	w := f.writes()
	if len(w) != len(allowed) || w[0].body != `{"body":"Done: see the PR."}` || w[3].path != "/repos/acme/app/issues/7/labels/status:Todo" || w[1].path != "/repos/ACME/App/issues/7" {
		t.Fatalf("writes sent: %+v", w)
	}

	refusedCalls := []struct {
		args map[string]any
		rule string
	}{
		{map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/8", "body": map[string]any{"state": "closed"}}, "target_not_own_issue"},
		{map[string]any{"method": "POST", "path": "/repos/acme/app/issues/70/comments", "body": map[string]any{"body": "x"}}, "target_not_own_issue"},
		{map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/7", "body": map[string]any{"milestone": 3}}, "body_field_not_allowed"},
		{map[string]any{"method": "POST", "path": "/repos/acme/app/issues/7/comments", "body": map[string]any{"body": "x", "extra": 1}}, "body_field_not_allowed"},
		{map[string]any{"method": "DELETE", "path": "/repos/acme/app"}, "write_not_allowed"},
		{map[string]any{"method": "POST", "path": "/repos/acme/app/issues", "body": map[string]any{"title": "new"}}, "write_not_allowed"},
		{map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/comments/1", "body": map[string]any{"body": "x"}}, "write_not_allowed"},
		{map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/07", "body": map[string]any{"state": "closed"}}, "target_not_own_issue"},
		{map[string]any{"method": "PUT", "path": "/repos/acme/app/issues/7/lock"}, "write_not_allowed"},
		{map[string]any{"method": "GET", "path": "/user"}, "outside_repository"},
		{map[string]any{"method": "GET", "path": "/repos/other/app/issues"}, "outside_repository"},
		{map[string]any{"method": "POST", "path": "/repos/acme/app-other/issues/7/comments", "body": map[string]any{"body": "x"}}, "outside_repository"},
		// No allowed write takes query parameters; GitHub may read them
		// as fields the body check never saw.
		{map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/7", "params": map[string]any{"milestone": "3", "assignee": "mallory"}, "body": map[string]any{"title": "x"}}, "params_not_allowed"},
		{map[string]any{"method": "POST", "path": "/repos/acme/app/issues/7/comments", "params": map[string]any{"body": "q"}, "body": map[string]any{"body": "x"}}, "params_not_allowed"},
		{map[string]any{"method": "DELETE", "path": "/repos/acme/app/issues/7/labels/x", "params": map[string]any{"a": 1}}, "params_not_allowed"},
	}
	before := len(f.requests())
	for _, c := range refusedCalls {
		res := callGitHub(t, g, c.args)
		if res.OK || res.Class != bus.ToolRefused || res.Rule != c.rule {
			t.Errorf("%v %v: %+v, want refused by %s", c.args["method"], c.args["path"], res, c.rule)
		}
	}
	if n := len(f.requests()) - before; n != 0 {
		t.Fatalf("%d refused calls were sent", n)
	}

	badCalls := []map[string]any{
		{"method": "HEAD", "path": "/repos/acme/app"},
		{"path": "/repos/acme/app"},
		{"method": "GET", "path": "repos/acme/app"},
		{"method": "GET", "path": "https://evil.example/repos/acme/app"},
		{"method": "GET", "path": "//evil.example/repos/acme/app"},
		{"method": "GET", "path": "/repos/acme/app/../../user"},
		{"method": "GET", "path": "/repos/acme/app/issues?state=all"},
		{"method": "GET", "path": "/repos/acme%2Fapp/issues"},
		{"method": "GET", "path": "/repos/acme/app", "body": map[string]any{"a": 1}},
		{"method": "GET", "path": "/repos/acme/app", "params": map[string]any{"a": map[string]any{}}},
		{"method": "GET", "path": "/repos/acme/app", "token": "x"},
	}
	for _, a := range badCalls {
		if res := callGitHub(t, g, a); res.OK || res.Class != bus.ToolBadArguments {
			t.Errorf("%v: %+v, want bad_arguments", a, res)
		}
	}
	if n := len(f.requests()) - before; n != 0 {
		t.Fatalf("%d bad calls were sent", n)
	}
}

// TestGitHubAPIWirePathIsTheCheckedPath: the path GitHub receives
// decodes, segment by segment, to exactly the segments the scope checked:
// a double-encoded slash, dot segment or control character stays a
// literal character of one segment (a label's name), never a path
// separator, and a label named "100%" works.
func TestGitHubAPIWirePathIsTheCheckedPath(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"))
	g := newTestGitHub(t, f, nil, nil)
	for _, c := range []struct{ method, path, raw string }{
		{"DELETE", "/repos/acme/app/issues/7/labels/..%252F..%252F8%252Flabels", "/repos/acme/app/issues/7/labels/..%252F..%252F8%252Flabels"},
		{"GET", "/repos/acme/app/%252E%252E/%252E%252E/other/secret/issues", "/repos/acme/app/%252E%252E/%252E%252E/other/secret/issues"},
		{"GET", "/repos/acme/app/..%252F..%252Fother%252Fsecret", "/repos/acme/app/..%252F..%252Fother%252Fsecret"},
		{"DELETE", "/repos/acme/app/issues/7/labels/100%25", "/repos/acme/app/issues/7/labels/100%25"},
		{"DELETE", "/repos/acme/app/issues/7/labels/a%3Fb", "/repos/acme/app/issues/7/labels/a%3Fb"},
		{"DELETE", "/repos/acme/app/issues/7/labels/a%23b", "/repos/acme/app/issues/7/labels/a%23b"},
		{"DELETE", "/repos/acme/app/issues/7/labels/x%2500y", "/repos/acme/app/issues/7/labels/x%2500y"},
		{"DELETE", "/repos/acme/app/issues/7/labels/status:In%20Progress", "/repos/acme/app/issues/7/labels/status:In%20Progress"},
	} {
		before := len(f.requests())
		res := callGitHub(t, g, map[string]any{"method": c.method, "path": c.path})
		reqs := f.requests()
		if len(reqs) != before+1 {
			t.Errorf("%s %s: not sent: %+v", c.method, c.path, res)
			continue
		}
		if got := reqs[len(reqs)-1].raw; got != c.raw {
			t.Errorf("%s %s: sent %s, want %s", c.method, c.path, got, c.raw)
		}
	}
}

// TestGitHubAPISessionIsTheRunsRepository: a run whose issue is not this
// repository's (dispatched from acme/other before a reload to acme/app,
// its tools opened after) gets every call refused, reads too, under every
// policy: its issue number would name another issue here.
func TestGitHubAPISessionIsTheRunsRepository(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(5, "open"), ghIssueJSON(7, "open"))
	h := startTracker(t, map[string]string{"GITHUB_TOKEN": testGitHubToken})
	tc := bus.TrackerConfig{Kind: bus.TrackerGitHub, ActiveStates: []string{"open"}, TerminalStates: []string{"closed"},
		Provider: bus.TrackerProvider{Repo: "acme/other", Endpoint: f.url(), APIKey: bus.NewSecret("GITHUB_TOKEN", "")}}
	h.config(1, tc, time.Hour)
	// The run's issue, dispatched from acme/other; then the reload.
	theirs := bus.IssueRef{ID: "5", Identifier: "other-5"}
	tc.Provider.Repo = "acme/app"
	tc.Tools.GitHubAPI = bus.LinearGraphQLAny
	h.config(2, tc, time.Hour)
	h.snapshot()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if _, err := bus.Ask(ctx, h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: theirs}); err != nil {
		t.Fatal(err)
	}
	before := len(f.requests())
	for _, args := range []string{
		`{"method":"PATCH","path":"/repos/acme/app/issues/5","body":{"state":"closed"}}`,
		`{"method":"GET","path":"/repos/acme/app/issues/5"}`,
	} {
		res, err := bus.Ask(ctx, h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: theirs, Tool: "github_api", Arguments: json.RawMessage(args)})
		if err != nil || res.OK || res.Rule != "issue_not_in_repository" || !strings.Contains(res.Error, "acme/app") {
			t.Errorf("%s: %+v %v", args, res, err)
		}
	}
	if n := len(f.requests()) - before; n != 0 {
		t.Fatalf("%d calls of a run from another repository were sent", n)
	}
	// The adapter alone refuses too, whatever the identifier's form.
	g := newTestGitHub(t, f, nil, nil)
	for _, own := range []bus.IssueRef{{ID: "7", Identifier: "other-7"}, {ID: "7"}, {ID: "7", Identifier: "app-07"}, {ID: "x", Identifier: "app-x"}} {
		res := runTool(t.Context(), g.tools(), bus.CallTool{RunID: "r1", Issue: own, Tool: "github_api", Arguments: json.RawMessage(`{"method":"GET","path":"/repos/acme/app"}`)})
		if res.Rule != "issue_not_in_repository" {
			t.Errorf("own %+v: %+v", own, res)
		}
	}
}

// TestGitHubAPIScrubsEscapedToken: a server that echoes the token back,
// in a rate-limit header or JSON-escaped in its body (\u escapes, whole
// or split), returns nothing that decodes to it.
func TestGitHubAPIScrubsEscapedToken(t *testing.T) {
	tok := testGitHubToken
	var esc strings.Builder
	for _, c := range tok {
		fmt.Fprintf(&esc, "\\u%04x", c)
	}
	split := tok[:10] + fmt.Sprintf("\\u%04x", tok[10]) + tok[11:]
	f := newFakeGitHub(t)
	f.setFault(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("X-Ratelimit-Echo", r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/repos/acme/app/issues/7/comments" {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		fmt.Fprintf(w, `{"escaped":"%s","split":"%s","list":["a %s b"],"<&>":1}`, esc.String(), split, esc.String())
		return true
	})
	g := newTestGitHub(t, f, nil, nil)
	for _, args := range []map[string]any{
		{"method": "GET", "path": "/repos/acme/app"},
		{"method": "POST", "path": "/repos/acme/app/issues/7/comments", "body": map[string]any{"body": "x"}},
	} {
		res := callGitHub(t, g, args)
		rec, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Body map[string]any `json:"body"`
		}
		if err := json.Unmarshal(res.Output, &out); err != nil || out.Body["escaped"] != "[redacted]" || out.Body["<&>"] == nil {
			t.Errorf("%v: output %s (%v)", args["path"], res.Output, err)
		}
		for _, where := range []string{string(rec), string(res.Output), fmt.Sprint(res.RateLimit.Headers), res.Error} {
			if strings.Contains(where, tok) || strings.Contains(where, esc.String()) || strings.Contains(where, split) {
				t.Errorf("%v: the token came back: %s", args["path"], where)
			}
		}
		if !strings.Contains(res.RateLimit.Headers["X-Ratelimit-Echo"], "[redacted]") {
			t.Errorf("%v: the echoed header: %v", args["path"], res.RateLimit.Headers)
		}
		var decoded any
		if json.Unmarshal(res.Output, &decoded) != nil || strings.Contains(fmt.Sprint(decoded), tok) {
			t.Errorf("%v: the decoded output holds the token", args["path"])
		}
	}
}

// TestGitHubAPIKeepsAReserveForThePoller: once the token's quota is
// under the reserve (a tenth of the limit, at least 100), github_api is
// refused without a request, and the poll still goes out.
func TestGitHubAPIKeepsAReserveForThePoller(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"))
	g := newTestGitHub(t, f, nil, nil)
	read := map[string]any{"method": "GET", "path": "/repos/acme/app/issues/7"}
	f.mu.Lock()
	f.remaining = 501
	f.mu.Unlock()
	if res := callGitHub(t, g, read); !res.OK {
		t.Fatalf("a read with 501 of 5000 left: %+v", res)
	}
	// The answer said 501: over the reserve of 500.
	f.mu.Lock()
	f.remaining = 499
	f.mu.Unlock()
	if res := callGitHub(t, g, read); !res.OK {
		t.Fatalf("a read after 501 left: %+v", res)
	}
	before := len(f.requests())
	res := callGitHub(t, g, read)
	if res.OK || res.Class != bus.TrackerRateLimited || res.Rule != "quota_reserve" || !strings.Contains(res.Error, "reserve of 500") ||
		res.RateLimit == nil || !res.RateLimit.Limited || res.RateLimit.RetryAfterMS <= 0 {
		t.Fatalf("a read under the reserve: %+v %+v", res, res.RateLimit)
	}
	if n := len(f.requests()) - before; n != 0 {
		t.Fatalf("%d requests sent under the reserve", n)
	}
	if _, _, err := g.Candidates(t.Context(), []string{"open"}); err != nil || len(f.requests()) == before {
		t.Fatalf("the poll under the reserve: %v", err)
	}
	// The poll saw the quota back (a new window): the tool works again.
	f.mu.Lock()
	f.remaining = 4999
	f.mu.Unlock()
	if _, _, err := g.Candidates(t.Context(), []string{"open"}); err != nil {
		t.Fatal(err)
	}
	if res := callGitHub(t, g, read); !res.OK {
		t.Fatalf("a read once the quota is back: %+v", res)
	}
	if r := githubQuotaReserve(0); r != 100 {
		t.Errorf("reserve without a known limit = %d, want 100", r)
	}
	if r := githubQuotaReserve(60); r != 100 {
		t.Errorf("reserve of a 60 limit = %d, want 100", r)
	}
}

// TestGitHubAPIBoundsARunsWrites: a run writes at most 30 times a
// minute; the next write is refused without a request, reads and other
// runs go on, and the window moves on.
func TestGitHubAPIBoundsARunsWrites(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"))
	g := newTestGitHub(t, f, nil, nil)
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	call := func(run string, args string) bus.ToolResult {
		return runTool(t.Context(), g.tools(), bus.CallTool{RunID: run, Issue: ghOwn, Tool: "github_api", Arguments: json.RawMessage(args)})
	}
	comment := `{"method":"POST","path":"/repos/acme/app/issues/7/comments","body":{"body":"x"}}`
	for i := range githubRunWritesPerMinute {
		if res := call("r1", comment); !res.OK {
			t.Fatalf("write %d: %+v", i+1, res)
		}
		now = now.Add(time.Second)
	}
	before := len(f.requests())
	res := call("r1", comment)
	if res.OK || res.Class != bus.TrackerRateLimited || res.Rule != "run_write_rate" || !strings.Contains(res.Error, "30 writes a minute") ||
		res.RateLimit == nil || res.RateLimit.RetryAfterMS != 30000 {
		t.Fatalf("write 31: %+v %+v", res, res.RateLimit)
	}
	if len(f.requests()) != before {
		t.Fatal("a write over the bound was sent")
	}
	if res := call("r1", `{"method":"GET","path":"/repos/acme/app/issues/7"}`); !res.OK {
		t.Errorf("a read of the run: %+v", res)
	}
	if res := call("r2", comment); !res.OK {
		t.Errorf("another run's write: %+v", res)
	}
	now = now.Add(31 * time.Second)
	if res := call("r1", comment); !res.OK {
		t.Errorf("a write once the window moved on: %+v", res)
	}
}

// TestGitHubAPIPolicies: any is the reference's behaviour (another issue's
// write goes out), off refuses reads too.
func TestGitHubAPIPolicies(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"), ghIssueJSON(8, "open"))
	anyPolicy := newTestGitHub(t, f, func(c *bus.TrackerConfig) { c.Tools.GitHubAPI = bus.LinearGraphQLAny }, nil)
	if res := callGitHub(t, anyPolicy, map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/8", "body": map[string]any{"milestone": 1}}); !res.OK {
		t.Fatalf("any: %+v", res)
	}
	if res := callGitHub(t, anyPolicy, map[string]any{"method": "GET", "path": "/user"}); !res.OK || !strings.Contains(string(res.Output), "Octo") {
		t.Fatalf("any, GET /user: %+v", res)
	}
	off := newTestGitHub(t, f, func(c *bus.TrackerConfig) { c.Tools.GitHubAPI = bus.LinearGraphQLOff }, nil)
	if res := callGitHub(t, off, map[string]any{"method": "GET", "path": "/repos/acme/app"}); res.Class != bus.ToolRefused || res.Rule != "tool_disabled" {
		t.Fatalf("off: %+v", res)
	}
	if off.tools()[0].spec.Mutates || !strings.Contains(off.tools()[0].spec.Description, "turned this tool off") {
		t.Errorf("off spec: %+v", off.tools()[0].spec)
	}
	if _, err := newGitHub(bus.TrackerConfig{Provider: bus.TrackerProvider{Repo: "a/b", Endpoint: f.url()}, Tools: bus.TrackerToolSettings{GitHubAPI: "everything"}}, "k", nil, nil); err == nil {
		t.Error("an unknown policy built an adapter")
	}
}

// TestGitHubAPIFailuresAreResults: a non-2xx answer is a failure that
// keeps it, the token scrubbed; a rate limit a call meets holds the
// poller too, and the next call, without a request.
func TestGitHubAPIFailuresAreResults(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"))
	status := http.StatusUnprocessableEntity
	f.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "120")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"message":"Validation Failed","documentation_url":"x","echo":"%s"}`, testGitHubToken)
		return true
	})
	g := newTestGitHub(t, f, nil, nil)
	args := map[string]any{"method": "PATCH", "path": "/repos/acme/app/issues/7", "body": map[string]any{"state": "nope"}}
	res := callGitHub(t, g, args)
	if res.OK || res.Class != bus.TrackerStatusError || !strings.Contains(res.Error, "HTTP 422") || !strings.Contains(string(res.Output), `"status":422`) {
		t.Fatalf("422: %+v %s", res, res.Output)
	}
	if strings.Contains(string(res.Output)+res.Error, testGitHubToken) {
		t.Fatal("the token is in the result")
	}
	status = http.StatusTooManyRequests
	res = callGitHub(t, g, args)
	if res.OK || res.Class != bus.TrackerRateLimited || res.RateLimit == nil || !res.RateLimit.Limited || res.RateLimit.RetryAfterMS != 120_000 {
		t.Fatalf("429: %+v %+v", res, res.RateLimit)
	}
	n := len(f.requests())
	if _, _, err := g.Candidates(t.Context(), []string{"open"}); !classIs(err, bus.TrackerRateLimited) {
		t.Errorf("poll during the limit: %v", err)
	}
	if res := callGitHub(t, g, args); res.Class != bus.TrackerRateLimited || len(f.requests()) != n {
		t.Errorf("call during the limit: %+v, %d requests", res, len(f.requests())-n)
	}
	f.srv.Close()
	g.gate = &rateGate{}
	if res := callGitHub(t, g, args); res.OK || res.Class != bus.TrackerRequestError {
		t.Errorf("transport failure: %+v", res)
	}
}

// TestGitHubAPIOverTheBus: a run's session lists github_api and runs it
// on the run's own issue with the token the tracker holds; the record's
// arguments are masked; the policy is the one in force when the session
// opened.
func TestGitHubAPIOverTheBus(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(7, "open"))
	h := startTracker(t, map[string]string{"GITHUB_TOKEN": testGitHubToken})
	tc := bus.TrackerConfig{Kind: bus.TrackerGitHub, ActiveStates: []string{"open"}, TerminalStates: []string{"closed"},
		Provider: bus.TrackerProvider{Repo: "acme/app", Endpoint: f.url(), APIKey: bus.NewSecret("GITHUB_TOKEN", "")}}
	h.config(1, tc, time.Hour)
	h.snapshot()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	specs, err := bus.Ask(ctx, h.b, bus.TrackerTools, bus.ListTools{RunID: "r1", Issue: ghOwn})
	if err != nil || specs.Tracker != bus.TrackerGitHub || len(specs.Tools) != 1 || specs.Tools[0].Name != "github_api" || !specs.Tools[0].Mutates {
		t.Fatalf("tools: %+v %v", specs, err)
	}
	tc.Tools.GitHubAPI = bus.LinearGraphQLOff
	h.config(2, tc, time.Hour)
	h.snapshot()
	args := json.RawMessage(`{"method":"POST","path":"/repos/acme/app/issues/7/comments","body":{"body":"hello ` + testGitHubToken + `"}}`)
	res, err := bus.Ask(ctx, h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: ghOwn, Tool: "github_api", Arguments: args})
	if err != nil || !res.OK {
		t.Fatalf("call in the session pinned before the reload: %+v %v", res, err)
	}
	if w := f.writes(); len(w) != 1 || !strings.Contains(w[0].body, "hello") {
		t.Fatalf("writes: %+v", w)
	}
	if strings.Contains(string(res.Arguments), testGitHubToken) || !strings.Contains(string(res.Arguments), "hello ******") {
		t.Errorf("recorded arguments: %s", res.Arguments)
	}
	res, err = bus.Ask(ctx, h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r1", Issue: bus.IssueRef{ID: "8"}, Tool: "github_api", Arguments: args})
	if err != nil || res.Rule != "own_issue_only" {
		t.Errorf("a call naming another issue: %+v %v", res, err)
	}
	// A run that starts after the reload gets the policy in force.
	if _, err := bus.Ask(ctx, h.b, bus.TrackerTools, bus.ListTools{RunID: "r2", Issue: ghOwn}); err != nil {
		t.Fatal(err)
	}
	res, _ = bus.Ask(ctx, h.b, bus.TrackerToolCall, bus.CallTool{RunID: "r2", Issue: ghOwn, Tool: "github_api", Arguments: args})
	if res.Rule != "tool_disabled" {
		t.Errorf("a run after the reload to off: %+v", res)
	}
	if strings.Contains(h.logs.String(), testGitHubToken) {
		t.Fatal("the token is in the logs")
	}
}
