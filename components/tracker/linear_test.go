package tracker

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testHTTPTimeout is the test client's timeout: long enough for a 10 MiB
// body on a loaded machine under -race, short enough for the slow cases.
const testHTTPTimeout = 5 * time.Second

func newTestLinear(t *testing.T, f *fakeLinear, assignee string, logs *logBuf) *linear {
	t.Helper()
	if logs == nil {
		logs = &logBuf{}
	}
	cfg := bus.TrackerConfig{
		Kind:           bus.TrackerLinear,
		Provider:       bus.TrackerProvider{ProjectSlug: "proj-1", Endpoint: f.url(), Assignee: assignee},
		TerminalStates: []string{"Done", "Canceled"},
	}
	l, err := newLinear(cfg, testAPIKey, &http.Client{Timeout: testHTTPTimeout}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDocumentsValidateAgainstLinearSchema(t *testing.T) {
	for name, doc := range map[string]string{"issues_by_states": queryIssuesByStates, "issues_by_ids": queryIssuesByIDs, "viewer": queryViewer} {
		t.Run(name, func(t *testing.T) { validateDocument(t, doc, nil) })
	}
	// The validator is not a rubber stamp: a misspelt field, a wrong
	// variable type and a wrong variable value all fail.
	if documentErrors(strings.Replace(queryIssuesByStates, "branchName", "branch_name", 1), nil) == nil {
		t.Error("a misspelt field validated")
	}
	if documentErrors(strings.Replace(queryIssuesByIDs, "[ID!]!", "[Int!]!", 1), nil) == nil {
		t.Error("a wrong variable type validated")
	}
	if documentErrors(queryIssuesByIDs, map[string]any{"ids": "not-a-list-of-ids", "first": "fifty"}) == nil {
		t.Error("wrong variable values validated")
	}
	// The variables the adapter really sends validate (checked on every
	// request by the fake server, and here once more explicitly).
	if err := documentErrors(queryIssuesByStates, map[string]any{"projectSlug": "p", "states": []any{"Todo"}, "first": 50, "after": nil}); err != nil {
		t.Error(err)
	}
}

func TestPaginationInOrder(t *testing.T) {
	f := newFakeLinear(t)
	var issues []map[string]any
	for i := 1; i <= 120; i++ {
		issues = append(issues, linearIssue(i, "Todo"))
	}
	issues = append(issues, linearIssue(500, "Done"))
	f.setIssues(issues)
	l := newTestLinear(t, f, "", nil)
	got, dropped, err := l.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil || dropped != 0 {
		t.Fatalf("Candidates: %v (dropped %d)", err, dropped)
	}
	if len(got) != 120 {
		t.Fatalf("got %d issues, want 120", len(got))
	}
	for i, iss := range got {
		if iss.Identifier != fmt.Sprintf("SYM-%d", i+1) {
			t.Fatalf("issue %d is %s: order not preserved", i, iss.Identifier)
		}
	}
	ops := f.ops()
	if len(ops) != 3 {
		t.Fatalf("%d requests, want 3 pages", len(ops))
	}
	wantAfter := []any{nil, "cursor-50", "cursor-100"}
	for i, op := range ops {
		if op.Vars["after"] != wantAfter[i] || op.Vars["first"] != float64(50) || op.Vars["projectSlug"] != "proj-1" {
			t.Errorf("page %d vars %v", i+1, op.Vars)
		}
	}
	// Empty input: empty result, no request.
	got, _, err = l.Candidates(t.Context(), nil)
	if err != nil || len(got) != 0 || len(f.ops()) != 3 {
		t.Errorf("empty states: %v %v, %d requests", got, err, len(f.ops()))
	}
}

func TestRefreshBatches(t *testing.T) {
	f := newFakeLinear(t)
	var issues []map[string]any
	var ids []string
	for i := 1; i <= 120; i++ {
		issues = append(issues, linearIssue(i, "In Progress"))
		ids = append(ids, fmt.Sprintf("uuid-%03d", i))
	}
	f.setIssues(issues)
	l := newTestLinear(t, f, "", nil)
	// Duplicates and an unknown id: de-duplicated; the unknown is absent.
	req := append(append([]string{}, ids...), ids[:10]...)
	req = append(req, "uuid-gone")
	got, err := l.Refresh(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 120 {
		t.Errorf("got %d issues, want 120", len(got))
	}
	ops := f.ops()
	if len(ops) != 3 {
		t.Fatalf("%d requests, want 3 batches", len(ops))
	}
	sizes := []int{}
	for _, op := range ops {
		sizes = append(sizes, len(op.Vars["ids"].([]any)))
	}
	if fmt.Sprint(sizes) != "[50 50 21]" {
		t.Errorf("batch sizes %v, want [50 50 21]", sizes)
	}
	if got, err := l.Refresh(t.Context(), nil); err != nil || len(got) != 0 || len(f.ops()) != 3 {
		t.Errorf("empty refresh made a request or failed: %v", err)
	}
}

func TestNormalization(t *testing.T) {
	f := newFakeLinear(t)
	mk := func(n int, state string, mod func(m map[string]any)) map[string]any {
		m := linearIssue(n, state)
		mod(m)
		return m
	}
	blocker := func(typ, id, state string) map[string]any {
		return map[string]any{"type": typ, "issue": map[string]any{"id": "uuid-" + id, "identifier": id, "state": map[string]any{"name": state}}}
	}
	f.setIssues([]map[string]any{
		mk(1, "Todo", func(m map[string]any) {
			m["priority"] = 2.0
			m["labels"] = map[string]any{"nodes": []any{map[string]any{"name": " Bug "}, map[string]any{"name": "bug"}, map[string]any{"name": "UI"}}}
			m["inverseRelations"] = map[string]any{"nodes": []any{blocker("blocks", "SYM-90", "Done"), blocker("related", "SYM-91", "Todo"), blocker("duplicate", "SYM-92", "Todo")}}
		}),
		mk(2, "Todo", func(m map[string]any) {
			m["priority"] = 0.0
			m["inverseRelations"] = map[string]any{"nodes": []any{blocker("blocks", "SYM-93", "In Progress")}}
		}),
		mk(3, "In Progress", func(m map[string]any) {
			m["inverseRelations"] = map[string]any{"nodes": []any{blocker("blocks", "SYM-94", "Todo")}}
			m["assignee"] = nil
			m["description"] = nil
			m["branchName"] = ""
			m["createdAt"] = "not a time"
		}),
		mk(4, "todo", func(m map[string]any) { m["assignee"] = map[string]any{"id": "someone-else"} }),
		mk(5, "Todo", func(m map[string]any) { m["priority"] = 3.7 }),
	})
	for _, assignee := range []string{"", "me"} {
		l := newTestLinear(t, f, assignee, nil)
		got, _, err := l.Candidates(t.Context(), []string{"Todo", "In Progress", "todo"})
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]bus.Issue{}
		for _, iss := range got {
			by[iss.Identifier] = iss
		}
		i1, i2, i3, i4, i5 := by["SYM-1"], by["SYM-2"], by["SYM-3"], by["SYM-4"], by["SYM-5"]
		if i1.Priority == nil || *i1.Priority != 2 || i2.Priority != nil || *i5.Priority != 4 {
			t.Errorf("priority: %v %v %v", i1.Priority, i2.Priority, i5.Priority)
		}
		if fmt.Sprint(i1.Labels) != "[bug ui]" {
			t.Errorf("labels %v", i1.Labels)
		}
		if len(i1.BlockedBy) != 1 || *i1.BlockedBy[0].Identifier != "SYM-90" || *i1.BlockedBy[0].State != "Done" {
			t.Errorf("blockers of SYM-1: only type blocks, taking .issue: %+v", i1.BlockedBy)
		}
		if !i1.Dispatchable {
			t.Error("Todo with only a terminal blocker must be dispatchable")
		}
		if i2.Dispatchable {
			t.Error("Todo with an open blocker must not be dispatchable")
		}
		if i1.CreatedAt == nil || i1.CreatedAt.Format(time.RFC3339) != "2026-01-01T00:01:00Z" || i3.CreatedAt != nil {
			t.Errorf("timestamps: %v %v", i1.CreatedAt, i3.CreatedAt)
		}
		if i3.Description != nil || i3.BranchName != nil || i3.AssigneeID != nil || i3.URL == nil {
			t.Errorf("optional fields of SYM-3: %+v", i3)
		}
		switch assignee {
		case "":
			if !i3.Dispatchable || !i4.Dispatchable {
				t.Error("without an assignee filter, In Progress with open blockers and other assignees are dispatchable")
			}
		case "me":
			if i3.Dispatchable || i4.Dispatchable || !i1.Dispatchable {
				t.Errorf("assignee me: unassigned %v, other %v, mine %v", i3.Dispatchable, i4.Dispatchable, i1.Dispatchable)
			}
		}
	}
	// "me" is resolved once through viewer, however many polls.
	l := newTestLinear(t, f, "me", nil)
	before := len(f.ops())
	for range 3 {
		if _, _, err := l.Candidates(t.Context(), []string{"Todo"}); err != nil {
			t.Fatal(err)
		}
	}
	viewers := 0
	for _, op := range f.ops()[before:] {
		if op.Op == "viewer" {
			viewers++
		}
	}
	if viewers != 1 {
		t.Errorf("viewer asked %d times, want once", viewers)
	}
}

// TestListsCutAtFirstPage: Linear returns an issue's labels and relations
// only up to the document's `first` (the fake cuts them there too). A Todo
// issue whose blocker is past the cut must not be dispatchable, whether
// listed or refreshed; the cut is told apart from a list of exactly that
// size, logged, and does not hold back an issue outside Todo, where blockers
// do not count.
func TestListsCutAtFirstPage(t *testing.T) {
	for _, list := range []string{"labels(first: 50)", "inverseRelations(first: 50)"} {
		if !strings.Contains(fragmentIssueFields, list) {
			t.Fatalf("the fragment no longer asks for %s: update this test's sizes", list)
		}
	}
	relations := func(others int, blocks bool) map[string]any {
		nodes := []any{}
		for i := range others {
			nodes = append(nodes, map[string]any{"type": "related", "issue": map[string]any{
				"id": fmt.Sprintf("uuid-r%d", i), "identifier": fmt.Sprintf("REL-%d", i), "state": map[string]any{"name": "Todo"}}})
		}
		if blocks {
			nodes = append(nodes, map[string]any{"type": "blocks", "issue": map[string]any{
				"id": "uuid-blocker", "identifier": "SYM-99", "state": map[string]any{"name": "In Progress"}}})
		}
		return map[string]any{"nodes": nodes}
	}
	labels := func(n int) map[string]any {
		nodes := []any{}
		for i := range n {
			nodes = append(nodes, map[string]any{"name": fmt.Sprintf("label-%d", i)})
		}
		return map[string]any{"nodes": nodes}
	}
	with := func(n int, state, key string, v map[string]any) map[string]any {
		m := linearIssue(n, state)
		m[key] = v
		return m
	}
	f := newFakeLinear(t)
	f.setIssues([]map[string]any{
		with(1, "Todo", "inverseRelations", relations(60, true)),        // the blocker is 61st
		with(2, "Todo", "inverseRelations", relations(50, false)),       // exactly one page
		with(3, "In Progress", "inverseRelations", relations(60, true)), // blockers do not count
		with(4, "Todo", "labels", labels(61)),
	})
	logs := &logBuf{}
	l := newTestLinear(t, f, "", logs)
	got, _, err := l.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]bus.Issue{}
	for _, iss := range got {
		by[iss.Identifier] = iss
	}
	if len(by["SYM-1"].BlockedBy) != 0 {
		t.Fatalf("the fake did not cut the relations at 50: %+v", by["SYM-1"].BlockedBy)
	}
	if by["SYM-1"].Dispatchable {
		t.Error("a Todo issue whose relations were cut is dispatchable: a blocker may be past the cut")
	}
	if !by["SYM-2"].Dispatchable || !by["SYM-3"].Dispatchable || !by["SYM-4"].Dispatchable {
		t.Errorf("dispatchable: 50 relations %v, cut relations outside Todo %v, cut labels %v; want all true",
			by["SYM-2"].Dispatchable, by["SYM-3"].Dispatchable, by["SYM-4"].Dispatchable)
	}
	if n := len(by["SYM-4"].Labels); n != 50 {
		t.Errorf("SYM-4 has %d labels, want the first 50", n)
	}
	for _, want := range []string{"issue_identifier=SYM-1", "issue_identifier=SYM-4"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the cut list of %s was not logged:\n%s", want, logs)
		}
	}
	for _, quiet := range []string{"issue_identifier=SYM-2", "issue_identifier=SYM-3"} {
		if strings.Contains(logs.String(), quiet) {
			t.Errorf("logged %s, whose dispatch the cut does not change:\n%s", quiet, logs)
		}
	}
	ref, err := l.Refresh(t.Context(), []string{"uuid-001"})
	if err != nil || len(ref) != 1 || ref[0].Dispatchable {
		t.Errorf("refresh of SYM-1: %+v %v, want it not dispatchable", ref, err)
	}
}

// TestRepeatedIssueAcrossPagesListedOnce: pages shift while a listing is
// read, so an issue can come back on a later page; it is listed once (the
// first copy, in order) and the repeats are logged once per listing.
func TestRepeatedIssueAcrossPagesListedOnce(t *testing.T) {
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, n int, op string) bool {
		switch n % 3 {
		case 1:
			writePage(w, []map[string]any{linearIssue(1, "Todo"), linearIssue(2, "Todo")}, true, "c1")
		case 2:
			second := linearIssue(2, "Todo")
			second["title"] = "moved while listing"
			writePage(w, []map[string]any{second, linearIssue(3, "Todo")}, true, "c2")
		default:
			writePage(w, []map[string]any{linearIssue(1, "Todo"), linearIssue(4, "Todo")}, false, "")
		}
		return true
	}
	logs := &logBuf{}
	l := newTestLinear(t, f, "", logs)
	for listing := 1; listing <= 2; listing++ {
		got, dropped, err := l.Candidates(t.Context(), []string{"Todo"})
		if err != nil || dropped != 0 {
			t.Fatalf("listing %d: %v (dropped %d)", listing, err, dropped)
		}
		var idents []string
		for _, iss := range got {
			idents = append(idents, iss.Identifier)
		}
		if strings.Join(idents, ",") != "SYM-1,SYM-2,SYM-3,SYM-4" || got[1].Title != "Issue 2" {
			t.Errorf("listing %d: %v (SYM-2 %q), want each issue once, the first copy, in order", listing, idents, got[1].Title)
		}
		warned := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "more than once") {
				warned++
				if !strings.Contains(line, "repeats=2") || !strings.Contains(line, "uuid-002,uuid-001") {
					t.Errorf("the warning does not name the repeats: %s", line)
				}
			}
		}
		if warned != listing {
			t.Errorf("after %d listings, %d warnings; want one per listing:\n%s", listing, warned, logs)
		}
	}
}

func TestMalformedRecordDroppedFromPollFailsRefresh(t *testing.T) {
	f := newFakeLinear(t)
	bad := linearIssue(2, "Todo")
	delete(bad, "identifier")
	f.setIssues([]map[string]any{linearIssue(1, "Todo"), bad, linearIssue(3, "Todo")})
	logs := &logBuf{}
	l := newTestLinear(t, f, "", logs)
	got, dropped, err := l.Candidates(t.Context(), []string{"Todo"})
	if err != nil || len(got) != 2 || dropped != 1 {
		t.Fatalf("poll: %d issues, %d dropped, %v", len(got), dropped, err)
	}
	if !strings.Contains(logs.String(), "uuid-002: missing identifier") {
		t.Errorf("the drop was not logged with its reason:\n%s", logs)
	}
	_, err = l.Refresh(t.Context(), []string{"uuid-001", "uuid-002"})
	var te *Error
	if !errors.As(err, &te) || te.Class != bus.TrackerMalformed || !strings.Contains(err.Error(), "missing identifier") {
		t.Errorf("refresh: %v", err)
	}
}

func TestErrorCategories(t *testing.T) {
	reset := time.Now().Add(42 * time.Second).UnixMilli()
	cases := []struct {
		name   string
		inject func(w http.ResponseWriter, n int, op string) bool
		class  string
		retry  time.Duration // minimum expected
	}{
		{"status 500", func(w http.ResponseWriter, n int, op string) bool {
			http.Error(w, "upstream exploded", 500)
			return true
		}, bus.TrackerStatusError, 0},
		{"429 with retry-after", func(w http.ResponseWriter, n int, op string) bool {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			return true
		}, bus.TrackerRateLimited, 7 * time.Second},
		{"RATELIMITED in a 200", func(w http.ResponseWriter, n int, op string) bool {
			w.Header().Set("X-RateLimit-Requests-Reset", fmt.Sprint(reset))
			fmt.Fprint(w, `{"data":null,"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}`)
			return true
		}, bus.TrackerRateLimited, 30 * time.Second},
		// Linear's usual rate-limit answer: HTTP 400 with RATELIMITED.
		{"400 with RATELIMITED and retry-after", func(w http.ResponseWriter, n int, op string) bool {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED","statusCode":429}}]}`)
			return true
		}, bus.TrackerRateLimited, 120 * time.Second},
		{"400 with RATELIMITED and no reset", func(w http.ResponseWriter, n int, op string) bool {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"message":"Rate limit exceeded","extensions":{"type":"ratelimited"}}]}`)
			return true
		}, bus.TrackerRateLimited, defaultRateLimitWait},
		{"400 with another graphql error", func(w http.ResponseWriter, n int, op string) bool {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"message":"Argument 'first' is invalid","extensions":{"code":"INVALID_INPUT"}}]}`)
			return true
		}, bus.TrackerStatusError, 0},
		{"graphql errors", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprint(w, `{"data":null,"errors":[{"message":"Field 'x' doesn't exist"}]}`)
			return true
		}, bus.TrackerGraphQLError, 0},
		{"malformed json", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprint(w, `{"data": {"issues": [`)
			return true
		}, bus.TrackerMalformed, 0},
		{"wrong shape", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprint(w, `{"data": {"issues": {"nodes": 5}}}`)
			return true
		}, bus.TrackerMalformed, 0},
		{"next page without cursor", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprint(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":true,"endCursor":null}}}}`)
			return true
		}, bus.TrackerPaginationError, 0},
		{"repeated cursor", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprint(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":true,"endCursor":"same"}}}}`)
			return true
		}, bus.TrackerPaginationError, 0},
		{"slow response", func(w http.ResponseWriter, n int, op string) bool {
			time.Sleep(testHTTPTimeout + time.Second)
			return false
		}, bus.TrackerRequestError, 0},
		// A tracker may echo the key (the fake checked that the request's
		// Authorization is testAPIKey) in any text the messages quote.
		{"401 echoing the key", func(w http.ResponseWriter, n int, op string) bool {
			http.Error(w, `{"errors":[{"message":"bad key `+testAPIKey+`"}]}`, http.StatusUnauthorized)
			return true
		}, bus.TrackerStatusError, 0},
		{"500 echoing the key across the excerpt's cut", func(w http.ResponseWriter, n int, op string) bool {
			http.Error(w, strings.Repeat("x", 180)+" "+testAPIKey, 500)
			return true
		}, bus.TrackerStatusError, 0},
		{"graphql error echoing the key", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprintf(w, `{"data":null,"errors":[{"message":"key %s is not allowed"}]}`, testAPIKey)
			return true
		}, bus.TrackerGraphQLError, 0},
		{"repeated cursor echoing the key", func(w http.ResponseWriter, n int, op string) bool {
			fmt.Fprintf(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":true,"endCursor":%q}}}}`, testAPIKey)
			return true
		}, bus.TrackerPaginationError, 0},
		{"oversized body", func(w http.ResponseWriter, n int, op string) bool {
			w.Write([]byte(`{"data":"`))
			w.Write(bytes.Repeat([]byte("x"), MaxResponseBytes+10))
			w.Write([]byte(`"}`))
			return true
		}, bus.TrackerMalformed, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeLinear(t)
			f.setIssues([]map[string]any{linearIssue(1, "Todo")})
			f.inject = c.inject
			logs := &logBuf{}
			l := newTestLinear(t, f, "", logs)
			_, _, err := l.Candidates(t.Context(), []string{"Todo"})
			class, retry := classOf(err)
			if err == nil || class != c.class {
				t.Fatalf("err = %v (class %s), want %s", err, class, c.class)
			}
			if retry < c.retry {
				t.Errorf("retry after %v, want at least %v", retry, c.retry)
			}
			if strings.Contains(err.Error(), testAPIKey) || strings.Contains(logs.String(), testAPIKey) {
				t.Errorf("the API key leaked into an error or a log line: %v", err)
			}
			// Nor a piece of it: the excerpt is cut after the key is removed.
			if strings.Contains(err.Error(), testAPIKey[:len("lin_api_")+4]) {
				t.Errorf("part of the API key is in the error: %v", err)
			}
		})
	}
	// Wrong key: the status is reported, the key is not.
	f := newFakeLinear(t)
	l := newTestLinear(t, f, "", nil)
	l.apiKey = "wrong"
	if _, _, err := l.Candidates(t.Context(), []string{"Todo"}); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("unauthorized: %v", err)
	}
	// Nothing listening: a request error.
	l = newTestLinear(t, f, "", nil)
	l.endpoint = "http://127.0.0.1:1/graphql"
	if _, _, err := l.Candidates(t.Context(), []string{"Todo"}); err == nil || func() string { c, _ := classOf(err); return c }() != bus.TrackerRequestError {
		t.Errorf("connection refused: %v", err)
	}
}

// TestRedirectsAreNotFollowed: a tracker answering 3xx makes no second
// request, to anywhere (the query and, for the same host name, the key would
// go along); the poll fails with a status error that names the status and
// the host. Both the default client and a caller's client are covered.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}`)
	}))
	t.Cleanup(other.Close)
	target := other.URL + "/graphql"
	otherHost := strings.TrimPrefix(other.URL, "http://")
	for _, status := range []int{
		http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
	} {
		for _, client := range []string{"default", "caller's"} {
			t.Run(fmt.Sprintf("%d %s client", status, client), func(t *testing.T) {
				f := newFakeLinear(t)
				f.inject = func(w http.ResponseWriter, n int, op string) bool {
					w.Header().Set("Location", target)
					w.WriteHeader(status)
					return true
				}
				before := elsewhere.Load()
				l := newTestLinear(t, f, "", nil)
				if client == "default" {
					var err error
					l, err = newLinear(bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url()}},
						testAPIKey, nil, slog.New(slog.DiscardHandler))
					if err != nil {
						t.Fatal(err)
					}
				}
				_, _, err := l.Candidates(t.Context(), []string{"Todo"})
				if n := elsewhere.Load() - before; n != 0 {
					t.Fatalf("the redirect was followed: %d requests reached %s", n, target)
				}
				if len(f.ops()) != 1 {
					t.Errorf("%d requests to the tracker, want 1", len(f.ops()))
				}
				class, _ := classOf(err)
				if class != bus.TrackerStatusError || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", status)) ||
					!strings.Contains(err.Error(), otherHost) || strings.Contains(err.Error(), testAPIKey) {
					t.Errorf("err = %v (class %s), want a status error naming HTTP %d and host %s", err, class, status, otherHost)
				}
			})
		}
	}
	// The caller's client is copied, not changed.
	mine := &http.Client{Timeout: testHTTPTimeout}
	if _, err := newLinear(bus.TrackerConfig{Provider: bus.TrackerProvider{ProjectSlug: "p"}}, testAPIKey, mine, slog.New(slog.DiscardHandler)); err != nil || mine.CheckRedirect != nil {
		t.Errorf("the caller's client was modified (or %v)", err)
	}
}

// TestRateLimitBackOff: after a rate limit, a 429 or Linear's 400 with
// RATELIMITED in the body, the adapter sends nothing until the provider's
// retry-after (seconds or a date) has passed.
func TestRateLimitBackOff(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for name, limit := range map[string]func(w http.ResponseWriter){
		"429 with retry-after seconds": func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
		},
		"400 RATELIMITED with a retry-after date": func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", start.Add(30*time.Second).Format(http.TimeFormat))
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeLinear(t)
			f.setIssues([]map[string]any{linearIssue(1, "Todo")})
			f.inject = func(w http.ResponseWriter, n int, op string) bool {
				if n == 1 {
					limit(w)
					return true
				}
				return false
			}
			l := newTestLinear(t, f, "", nil)
			clock := start
			l.now = func() time.Time { return clock }
			_, _, err := l.Candidates(t.Context(), []string{"Todo"})
			if class, retry := classOf(err); class != bus.TrackerRateLimited || retry != 30*time.Second {
				t.Fatalf("first call: %v (class %s, retry %v), want rate_limited for 30s", err, class, retry)
			}
			clock = clock.Add(29 * time.Second)
			_, _, err = l.Candidates(t.Context(), []string{"Todo"})
			class, retry := classOf(err)
			if class != bus.TrackerRateLimited || retry != time.Second || len(f.ops()) != 1 {
				t.Errorf("within the window: %v (retry %v), %d requests sent", err, retry, len(f.ops()))
			}
			clock = clock.Add(2 * time.Second)
			if got, _, err := l.Candidates(t.Context(), []string{"Todo"}); err != nil || len(got) != 1 {
				t.Errorf("after the window: %v", err)
			}
		})
	}
}

func TestRetryAfterHeaders(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"12"}}, 12 * time.Second},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"X-Ratelimit-Requests-Reset": {fmt.Sprint(now.Add(5 * time.Minute).UnixMilli())}}, 5 * time.Minute},
		{http.Header{"Retry-After": {"3"}, "X-Ratelimit-Complexity-Reset": {fmt.Sprint(now.Add(10 * time.Second).UnixMilli())}}, 10 * time.Second},
		{http.Header{}, defaultRateLimitWait},
		{http.Header{"Retry-After": {"soon"}}, defaultRateLimitWait},
	}
	for _, c := range cases {
		if got := retryAfter(c.h, now); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

func FuzzDecodeGraphQL(f *testing.F) {
	for _, s := range []string{
		`{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}`,
		`{"errors":[{"message":"x","extensions":{"code":"RATELIMITED"}}]}`,
		`{"data":null}`, `[]`,
		`{"data":{"issues":{"nodes":[{"id":"a","identifier":"A-1","title":"t","state":{"name":"Todo"},"assignee":{"id":"me-id"},"inverseRelations":{"nodes":[],"pageInfo":{"hasNextPage":true}}}]}}}`, `{"data":{"issues":{"nodes":[{"id":"a","identifier":"A-1","title":"t","state":{"name":"Todo"},"priority":1e308,"inverseRelations":{"nodes":[{"type":"blocks","issue":null}]}}]}}}`,
	} {
		f.Add([]byte(s))
	}
	r := newRules([]string{"Done"}, "me-id")
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p gqlIssuePage
		limited, err := decodeGraphQL(raw, &p)
		if err != nil {
			if c, _ := classOf(err); c == "" {
				t.Fatalf("unclassed %v", err)
			}
			return
		}
		if limited || p.Issues == nil {
			return
		}
		for _, n := range p.Issues.Nodes {
			iss, cut, err := normalizeLinear(n, r)
			if err == nil && (iss.ID == "" || iss.Identifier == "" || iss.State == "" || iss.Labels == nil || iss.BlockedBy == nil) {
				t.Fatalf("accepted an incomplete issue %+v", iss)
			}
			if err == nil && cut.relations && normState(iss.State) == "todo" && iss.Dispatchable {
				t.Fatalf("a Todo issue with relations not seen is dispatchable: %+v", iss)
			}
		}
	})
}
