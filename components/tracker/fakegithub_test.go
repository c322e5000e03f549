package tracker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// fakeGitHub is a loopback GitHub REST server for one repository,
// acme/app (numeric id 99): the issues listing with per_page/page, Link
// headers in GitHub's /repositories/{id} form and ETags, single issues,
// blockers, the repository and GET /user. It checks GitHub's required
// headers and the token on every request, records each, and lets a test
// inject faults.
type fakeGitHub struct {
	srv   *httptest.Server
	token string

	mu sync.Mutex
	// issues are the repository's issues and pull requests, by number.
	issues []map[string]any
	deps   map[int][]map[string]any
	reqs   []ghReq
	// remaining is sent as x-ratelimit-remaining (-1: no header).
	remaining int
	// fault, when set, may answer a request itself (true).
	fault func(w http.ResponseWriter, r *http.Request, n int) bool
	// repoMissing makes GET /repos/acme/app answer 404.
	repoMissing bool
	// project is the board acme/3's items (POST /graphql), two a page.
	project []ghBoardItem
}

// ghBoardItem is one item of the fake's project board.
type ghBoardItem struct {
	repo     string // owner/name of the issue's repository
	number   int
	status   string // "" for no value
	priority any    // a single-select name (string), a number, or nil
	archived bool
}

type ghReq struct {
	method      string
	path, query string
	// raw is the path as sent, escaped (the request line's).
	raw string
	// body is a write's body as sent.
	body   string
	inm    string // If-None-Match sent
	status int
}

const testGitHubToken = "ghp_testTokenValue0123456789abcdefXYZ"

func newFakeGitHub(t testing.TB) *fakeGitHub {
	f := &fakeGitHub{token: testGitHubToken, deps: map[int][]map[string]any{}, remaining: 4999}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) url() string { return f.srv.URL }

func (f *fakeGitHub) set(issues ...map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issues = issues
}

func (f *fakeGitHub) requests() []ghReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// ghIssueJSON is a REST issue of acme/app.
func ghIssueJSON(n int, state string, labels ...string) map[string]any {
	ls := []any{}
	for _, l := range labels {
		ls = append(ls, map[string]any{"id": 1, "name": l, "color": "fff"})
	}
	return map[string]any{
		"id": 1000 + n, "node_id": fmt.Sprintf("I_kwDOAAAB%d", n), "number": n,
		"title": fmt.Sprintf("Issue %d", n), "body": fmt.Sprintf("Body of %d", n), "state": state,
		"html_url":       fmt.Sprintf("https://github.com/acme/app/issues/%d", n),
		"repository_url": "https://api.github.com/repos/acme/app",
		"labels":         ls, "assignee": nil, "assignees": []any{},
		"created_at": fmt.Sprintf("2026-01-%02dT10:00:00Z", n%28+1), "updated_at": "2026-02-01T10:00:00Z",
		"issue_dependencies_summary": map[string]any{"blocked_by": 0, "total_blocked_by": 0, "blocking": 0, "total_blocking": 0},
	}
}

// ghPull is a pull request as the issues endpoint lists it.
func ghPull(n int, state string) map[string]any {
	p := ghIssueJSON(n, state)
	p["title"] = fmt.Sprintf("PR %d", n)
	p["pull_request"] = map[string]any{"url": fmt.Sprintf("https://api.github.com/repos/acme/app/pulls/%d", n)}
	return p
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	n := len(f.reqs)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.reqs = append(f.reqs, ghReq{method: r.Method, path: r.URL.Path, raw: r.URL.EscapedPath(), query: r.URL.RawQuery, inm: r.Header.Get("If-None-Match"), body: string(body)})
	fault, remaining := f.fault, f.remaining
	f.mu.Unlock()
	status := f.answer(w, r, n, fault, remaining)
	f.mu.Lock()
	f.reqs[n].status = status
	f.mu.Unlock()
}

func (f *fakeGitHub) answer(w http.ResponseWriter, r *http.Request, n int, fault func(http.ResponseWriter, *http.Request, int) bool, remaining int) int {
	if r.Header.Get("Accept") != "application/vnd.github+json" ||
		r.Header.Get("X-GitHub-Api-Version") != githubAPIVersion || r.Header.Get("User-Agent") == "" {
		http.Error(w, `{"message":"missing GitHub headers"}`, http.StatusBadRequest)
		return 400
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return 401
	}
	if remaining >= 0 {
		w.Header().Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
		w.Header().Set("X-Ratelimit-Limit", "5000")
	}
	if fault != nil && fault(w, r, n) {
		return -1
	}
	if r.Method == http.MethodPost && r.URL.Path == "/graphql" {
		return f.graphql(w, n)
	}
	if r.Method != http.MethodGet {
		return f.write(w, r, n)
	}
	path := r.URL.Path
	switch {
	case path == "/user":
		return f.json(w, r, map[string]any{"login": "Octo"})
	case path == "/repos/acme/app":
		if f.repoMissing {
			http.Error(w, `{"message":"Not Found"}`, 404)
			return 404
		}
		return f.json(w, r, map[string]any{"id": 99, "full_name": "acme/app"})
	case path == "/repos/acme/app/issues" || path == "/repositories/99/issues":
		return f.list(w, r)
	}
	rest, ok := strings.CutPrefix(path, "/repos/acme/app/issues/")
	if !ok {
		http.Error(w, `{"message":"Not Found"}`, 404)
		return 404
	}
	num, sub, _ := strings.Cut(rest, "/")
	nn, _ := strconv.Atoi(num)
	f.mu.Lock()
	i := slices.IndexFunc(f.issues, func(m map[string]any) bool { return m["number"] == nn })
	var iss map[string]any
	if i >= 0 {
		iss = f.issues[i]
	}
	deps := f.deps[nn]
	f.mu.Unlock()
	switch {
	case iss == nil:
		http.Error(w, `{"message":"Not Found"}`, 404)
		return 404
	case sub == "dependencies/blocked_by":
		if deps == nil {
			deps = []map[string]any{}
		}
		return f.json(w, r, deps)
	case sub == "":
		return f.json(w, r, iss)
	}
	http.Error(w, `{"message":"Not Found"}`, 404)
	return 404
}

// write answers a write the way GitHub answers a created comment or an
// updated issue, echoing what it was asked.
func (f *fakeGitHub) write(w http.ResponseWriter, r *http.Request, n int) int {
	f.mu.Lock()
	sent := f.reqs[n].body
	f.mu.Unlock()
	var body any
	json.Unmarshal([]byte(sent), &body)
	status := http.StatusOK
	if r.Method == http.MethodPost {
		status = http.StatusCreated
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "sent": body})
	return status
}

// graphql answers the project document, after checking it against
// GitHub's schema with its variables.
func (f *fakeGitHub) graphql(w http.ResponseWriter, n int) int {
	f.mu.Lock()
	sent := f.reqs[n].body
	items := slices.Clone(f.project)
	f.mu.Unlock()
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.Unmarshal([]byte(sent), &req); err != nil {
		http.Error(w, `{"message":"not JSON"}`, 400)
		return 400
	}
	if err := githubDocumentErrors(req.Query, req.Variables); err != nil {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"errors": []any{map[string]any{"message": err.Error()}}})
		return 200
	}
	if req.Variables["owner"] != "acme" || req.Variables["number"] != float64(3) {
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"repositoryOwner": map[string]any{"projectV2": nil}},
			"errors": []any{map[string]any{"type": "NOT_FOUND", "message": "Could not resolve to a ProjectV2 with the number."}}})
		return 200
	}
	start := 0
	if after, ok := req.Variables["after"].(string); ok {
		start, _ = strconv.Atoi(strings.TrimPrefix(after, "c"))
	}
	end := min(start+2, len(items))
	nodes := []any{}
	for _, it := range items[start:end] {
		owner, name, _ := strings.Cut(it.repo, "/")
		node := map[string]any{"isArchived": it.archived,
			"content": map[string]any{"number": it.number, "repository": map[string]any{"nameWithOwner": owner + "/" + name}},
			"status":  nil, "priority": nil}
		if it.status != "" {
			node["status"] = map[string]any{"name": it.status}
		}
		switch p := it.priority.(type) {
		case string:
			node["priority"] = map[string]any{"name": p}
		case int:
			node["priority"] = map[string]any{"number": p}
		}
		nodes = append(nodes, node)
	}
	var cursor any
	if end > 0 {
		cursor = "c" + strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"repositoryOwner": map[string]any{"projectV2": map[string]any{
		"items": map[string]any{"nodes": nodes, "pageInfo": map[string]any{"hasNextPage": end < len(items), "endCursor": cursor}}}}}})
	return 200
}

// list serves a page of the issues listing, sorted by number (creation).
func (f *fakeGitHub) list(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	state := q.Get("state")
	f.mu.Lock()
	var all []map[string]any
	for _, iss := range f.issues {
		if state == "all" || iss["state"] == state {
			all = append(all, iss)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(all, func(a, b map[string]any) int { return a["number"].(int) - b["number"].(int) })
	lo, hi := min((page-1)*per, len(all)), min(page*per, len(all))
	if hi < len(all) {
		q.Set("page", strconv.Itoa(page+1))
		w.Header().Set("Link", fmt.Sprintf(`<%s/repositories/99/issues?%s>; rel="next", <%s/repositories/99/issues?page=%d>; rel="last"`,
			f.srv.URL, q.Encode(), f.srv.URL, (len(all)+per-1)/per))
	}
	return f.json(w, r, all[lo:hi])
}

// json writes v with an ETag of its bytes, or 304 when the request
// already has them.
func (f *fakeGitHub) json(w http.ResponseWriter, r *http.Request, v any) int {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(body)
	etag := `W/"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return 304
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
	return 200
}

// newTestGitHub is an adapter on f for acme/app.
func newTestGitHub(t testing.TB, f *fakeGitHub, mod func(*bus.TrackerConfig), logs *logBuf) *github {
	t.Helper()
	if logs == nil {
		logs = &logBuf{}
	}
	cfg := bus.TrackerConfig{
		Kind:           bus.TrackerGitHub,
		Provider:       bus.TrackerProvider{Repo: "acme/app", Endpoint: f.url()},
		ActiveStates:   []string{"open"},
		TerminalStates: []string{"closed"},
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := newGitHub(cfg, f.token, &http.Client{Timeout: testHTTPTimeout}, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// setFault sets (nil: clears) the fault under the lock: a request still
// being served from an earlier step reads it.
func (f *fakeGitHub) setFault(fault func(w http.ResponseWriter, r *http.Request, n int) bool) {
	f.mu.Lock()
	f.fault = fault
	f.mu.Unlock()
}
