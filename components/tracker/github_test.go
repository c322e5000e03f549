package tracker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// ids lists the issues' ids.
func ids(list []bus.Issue) []string {
	out := make([]string, 0, len(list))
	for _, iss := range list {
		out = append(out, iss.ID)
	}
	return out
}

// TestGitHubThroughTheBus drives the adapter as the scheduler and the
// runner do, through the tracker's subjects: a poll's snapshot pages
// through 250 issues and pull requests (PRs left out), a refresh leaves
// out what is not an issue of the repository, the terminal listing reads
// closed issues; the token is in no log line and no message on the bus.
func TestGitHubThroughTheBus(t *testing.T) {
	f := newFakeGitHub(t)
	var all []map[string]any
	for n := 1; n <= 250; n++ {
		switch {
		case n%10 == 0:
			all = append(all, ghPull(n, "open"))
		case n%7 == 0:
			all = append(all, ghIssueJSON(n, "closed"))
		default:
			all = append(all, ghIssueJSON(n, "open"))
		}
	}
	f.set(all...)
	h := startTracker(t, map[string]string{"GITHUB_TOKEN": testGitHubToken})
	tc := bus.TrackerConfig{Kind: bus.TrackerGitHub, ActiveStates: []string{"open"}, TerminalStates: []string{"closed"},
		Provider: bus.TrackerProvider{Repo: "acme/app", Endpoint: f.url(), APIKey: bus.NewSecret("GITHUB_TOKEN", "")}}
	h.config(1, tc, time.Hour)

	snap := h.snapshot()
	var want []string
	for n := 1; n <= 250; n++ {
		if n%10 != 0 && n%7 != 0 {
			want = append(want, fmt.Sprint(n))
		}
	}
	if got := ids(snap.Issues); !slices.Equal(got, want) {
		t.Fatalf("snapshot ids = %v\nwant %v", got, want)
	}
	for _, iss := range snap.Issues {
		if iss.Identifier != "app-"+iss.ID || !safeid.Valid(iss.Identifier) || iss.State != "open" || !iss.Dispatchable {
			t.Fatalf("issue %+v", iss)
		}
	}
	pages := 0
	for _, r := range f.requests() {
		if strings.HasSuffix(r.path, "/issues") {
			pages++
		}
	}
	if pages != 3 {
		t.Errorf("listing took %d requests, want 3 pages of 100", pages)
	}

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	got, err := bus.Ask(ctx, h.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{"3", "10", "999", "not-a-number", "07", "3", "14"}})
	if err != nil {
		t.Fatal(err)
	}
	// 10 is a pull request, 999 does not exist, the others are not
	// issue numbers: left out; 14 is closed and comes back closed.
	if g := ids(got.Issues); !slices.Equal(g, []string{"3", "14"}) {
		t.Fatalf("refresh = %v, want [3 14]", g)
	}
	if got.Issues[0].Description == nil || *got.Issues[0].Description != "Body of 3" || got.Issues[1].State != "closed" {
		t.Fatalf("refreshed %+v", got.Issues)
	}

	term, err := bus.Ask(ctx, h.b, bus.TrackerTerminal, bus.IssuesByStates{States: []string{"closed"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, iss := range term.Issues {
		if iss.State != "closed" || iss.URL == nil || *iss.URL != "https://github.com/acme/app/issues/"+iss.ID {
			t.Fatalf("terminal %+v", iss)
		}
	}
	if len(term.Issues) != 250/7-250/70 {
		t.Fatalf("terminal = %d issues, want %d", len(term.Issues), 250/7-250/70)
	}

	// The token never leaves the tracker: not in its logs, not on the bus.
	if strings.Contains(h.logs.String(), testGitHubToken) {
		t.Fatal("the token is in the logs")
	}
	for {
		select {
		case m := <-h.raw:
			if strings.Contains(string(m.Data), testGitHubToken) {
				t.Fatalf("the token crossed the bus on %s", m.Subject)
			}
			continue
		default:
		}
		break
	}
}

// TestGitHubConditionalRequests: an unchanged poll is answered 304 on
// every page (no rate limit spent) and gives the same issues; a change
// is seen on the next poll.
func TestGitHubConditionalRequests(t *testing.T) {
	f := newFakeGitHub(t)
	var all []map[string]any
	for n := 1; n <= 150; n++ {
		all = append(all, ghIssueJSON(n, "open"))
	}
	f.set(all...)
	g := newTestGitHub(t, f, nil, nil)
	first, _, err := g.Candidates(t.Context(), []string{"open"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Refresh(t.Context(), []string{"5"}); err != nil {
		t.Fatal(err)
	}
	before := len(f.requests())
	second, _, err := g.Candidates(t.Context(), []string{"open"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := g.Refresh(t.Context(), []string{"5"})
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()[before:]
	if len(reqs) != 3 {
		t.Fatalf("second round sent %d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.inm == "" || r.status != http.StatusNotModified {
			t.Fatalf("request %+v: want If-None-Match answered 304", r)
		}
	}
	if !slices.Equal(ids(first), ids(second)) || len(second) != 150 || again[0].Title != "Issue 5" {
		t.Fatalf("answers from the cache differ: %d vs %d issues", len(first), len(second))
	}

	all[119]["title"] = "changed"
	f.set(all...)
	third, _, err := g.Candidates(t.Context(), []string{"open"})
	if err != nil {
		t.Fatal(err)
	}
	if third[119].Title != "changed" {
		t.Fatalf("a changed page was answered from the cache: %q", third[119].Title)
	}
}

func TestGitHubNormalization(t *testing.T) {
	f := newFakeGitHub(t)
	withLabels := func(n int, state string, labels ...string) map[string]any { return ghIssueJSON(n, state, labels...) }
	blocked := func(m map[string]any, total int) map[string]any {
		m["issue_dependencies_summary"] = map[string]any{"blocked_by": total, "total_blocked_by": total, "blocking": 0, "total_blocking": 0}
		return m
	}
	nine := withLabels(9, "open", "status:Todo")
	nine["assignees"] = []any{map[string]any{"login": "someone"}, map[string]any{"login": "octo"}}
	nine["assignee"] = map[string]any{"login": "someone"}
	other := ghIssueJSON(3, "open")
	other["repository_url"] = "https://api.github.com/repos/other/lib.v2"
	f.set(
		withLabels(1, "open", " Status: In Progress ", "Bug", "priority:2"),
		withLabels(2, "open"),
		withLabels(3, "open", "status:Todo", "status:Human Review"),
		blocked(withLabels(4, "open", "status:Todo"), 1),
		withLabels(5, "open", "status:Todo"),
		blocked(withLabels(6, "open", "status:Todo"), 2),
		withLabels(7, "closed", "status:Todo"),
		withLabels(8, "open", "status:todo", "priority:high", "PRIORITY: urgent", "priority:9"),
		nine,
		blocked(withLabels(11, "open", "status:Todo"), 2),
	)
	f.deps[4] = []map[string]any{withLabels(5, "open", "status:Todo")}
	f.deps[6] = []map[string]any{withLabels(7, "closed"), other}
	other["state"] = "closed"
	f.deps[11] = []map[string]any{withLabels(7, "closed")} // total says 2: one unseen
	labelled := func(c *bus.TrackerConfig) {
		c.Provider.StateLabels = "status:"
		c.ActiveStates = []string{"Todo", "In Progress"}
		c.TerminalStates = []string{"closed", "Done"}
	}
	g := newTestGitHub(t, f, labelled, nil)
	list, dropped, err := g.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil || dropped != 0 {
		t.Fatal(err, dropped)
	}
	byID := map[string]bus.Issue{}
	for _, iss := range list {
		byID[iss.ID] = iss
	}
	if got := ids(list); !slices.Equal(got, []string{"1", "4", "5", "6", "8", "9", "11"}) {
		t.Fatalf("Todo/In Progress = %v", got)
	}
	one := byID["1"]
	if one.State != "In Progress" || one.Priority == nil || *one.Priority != 2 || !slices.Equal(one.Labels, []string{"status: in progress", "bug", "priority:2"}) ||
		one.Identifier != "app-1" || one.CreatedAt == nil || one.BranchName != nil || !one.Dispatchable {
		t.Fatalf("issue 1 = %+v", one)
	}
	if want := map[string]string{"owner": "acme", "repo": "app", "number": "1", "node_id": "I_kwDOAAAB1"}; !maps.Equal(one.NativeRef, want) {
		t.Fatalf("issue 1's native_ref = %v, want %v", one.NativeRef, want)
	}
	if p := byID["8"].Priority; p == nil || *p != 1 {
		t.Fatalf("issue 8's priority = %v, want 1 (the most urgent label)", p)
	}
	if byID["5"].Priority != nil {
		t.Fatal("no priority label, yet a priority")
	}
	four := byID["4"]
	if four.Dispatchable || len(four.BlockedBy) != 1 || *four.BlockedBy[0].ID != "5" || *four.BlockedBy[0].Identifier != "app-5" || *four.BlockedBy[0].State != "Todo" {
		t.Fatalf("issue 4 (blocked by open 5) = %+v", four)
	}
	six := byID["6"]
	if !six.Dispatchable || len(six.BlockedBy) != 2 || *six.BlockedBy[1].Identifier != "lib_v2-3" || *six.BlockedBy[1].ID != "I_kwDOAAAB3" {
		t.Fatalf("issue 6 (blocked by closed issues, one in another repository) = %+v", six)
	}
	if byID["11"].Dispatchable {
		t.Fatal("issue 11 has a blocker that was not read, yet is dispatchable")
	}
	if a := byID["9"].AssigneeID; a == nil || *a != "someone" {
		t.Fatalf("issue 9's assignee = %v, want the first assignee", a)
	}

	// Several state labels: state open, not dispatchable.
	got, err := g.Refresh(t.Context(), []string{"3", "2", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].State != "open" || got[0].Dispatchable || got[1].State != "open" || got[2].State != "closed" {
		t.Fatalf("refresh 3, 2, 7 = %+v", got)
	}

	// assignee: me resolves the token's login once; logins compare
	// case-insensitively, and the matching one is the assignee.
	me := newTestGitHub(t, f, func(c *bus.TrackerConfig) { labelled(c); c.Provider.Assignee = "me" }, nil)
	for range 2 {
		if list, _, err = me.Candidates(t.Context(), []string{"Todo"}); err != nil {
			t.Fatal(err)
		}
	}
	users := 0
	for _, r := range f.requests() {
		if r.path == "/user" {
			users++
		}
	}
	for _, iss := range list {
		if iss.Dispatchable != (iss.ID == "9") {
			t.Fatalf("assignee me: issue %s dispatchable %v", iss.ID, iss.Dispatchable)
		}
		if iss.ID == "9" && *iss.AssigneeID != "octo" {
			t.Fatalf("assignee = %s, want the matching login", *iss.AssigneeID)
		}
	}
	if users != 1 {
		t.Fatalf("GET /user sent %d times, want once", users)
	}

	// Without state labels, blockers hold back an open issue.
	plain := newTestGitHub(t, f, nil, nil)
	list, _, err = plain.Candidates(t.Context(), []string{"open"})
	if err != nil {
		t.Fatal(err)
	}
	for _, iss := range list {
		if iss.State != "open" || iss.Dispatchable != (iss.ID != "4" && iss.ID != "11") {
			t.Fatalf("plain: issue %s state %s dispatchable %v", iss.ID, iss.State, iss.Dispatchable)
		}
	}
}

func TestGitHubIdentifiers(t *testing.T) {
	for repo, want := range map[string]string{"app": "app", "Socket.IO": "socket_io", "my_repo": "my_repo", ".github": "_github", "a-b.c-d": "a-b_c-d", "x..y": "x__y"} {
		got := githubIdentifierPrefix(repo)
		if got != want || !safeid.Valid(got+"-12") {
			t.Errorf("prefix of %q = %q, want %q (valid)", repo, got, want)
		}
	}
}

// TestGitHubRateLimits: the primary limit spent (remaining 0, even on a
// 200) and the secondary limits (429, 403 with retry-after or GitHub's
// message) stop every request until the wait GitHub names is over; a 403
// that is not a limit is a status error and stops nothing.
func TestGitHubRateLimits(t *testing.T) {
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request, n int) bool
		class string
		wait  time.Duration
		// ok: the limited answer itself carried data.
		ok bool
	}{
		{"200 with remaining 0", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("X-Ratelimit-Remaining", "0")
			w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(now.Add(90*time.Second).Unix()))
			w.Header().Set("Date", now.Format(http.TimeFormat))
			return false
		}, bus.TrackerRateLimited, 90 * time.Second, true},
		{"403 primary", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("X-Ratelimit-Remaining", "0")
			// GitHub's clock is 10 minutes ahead of ours: the wait is
			// read against its Date.
			w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(now.Add(10*time.Minute+300*time.Second).Unix()))
			w.Header().Set("Date", now.Add(10*time.Minute).Format(http.TimeFormat))
			http.Error(w, `{"message":"API rate limit exceeded"}`, 403)
			return true
		}, bus.TrackerRateLimited, 300 * time.Second, false},
		{"429 retry-after", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			return true
		}, bus.TrackerRateLimited, 30 * time.Second, false},
		{"403 secondary message", func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Error(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`, 403)
			return true
		}, bus.TrackerRateLimited, time.Minute, false},
		{"403 not a limit", func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Error(w, `{"message":"Resource not accessible by personal access token"}`, 403)
			return true
		}, bus.TrackerStatusError, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.set(ghIssueJSON(1, "open"))
			f.setFault(tc.fault)
			g := newTestGitHub(t, f, nil, nil)
			g.now = func() time.Time { return now }
			_, _, err := g.Candidates(t.Context(), []string{"open"})
			if tc.ok != (err == nil) {
				t.Fatalf("first listing: %v", err)
			}
			f.setFault(nil)
			sent := len(f.requests())
			_, _, err = g.Candidates(t.Context(), []string{"open"})
			class, wait := classOf(err)
			if tc.class == bus.TrackerStatusError {
				if err != nil || len(f.requests()) != sent+1 {
					t.Fatalf("after a 403 that is no limit: %v, %d requests", err, len(f.requests())-sent)
				}
				return
			}
			if class != tc.class || wait != tc.wait || len(f.requests()) != sent {
				t.Fatalf("second listing: class %s wait %s (want %s %s), %d requests sent", class, wait, tc.class, tc.wait, len(f.requests())-sent)
			}
			g.now = func() time.Time { return now.Add(tc.wait) }
			if _, _, err := g.Candidates(t.Context(), []string{"open"}); err != nil {
				t.Fatalf("after the wait: %v", err)
			}
		})
	}
}

// TestGitHubFaults: every page or nothing, classed errors, the token in
// no message.
func TestGitHubFaults(t *testing.T) {
	page2 := func(r *http.Request) bool { return r.URL.Query().Get("page") == "2" }
	cases := []struct {
		name    string
		fault   func(w http.ResponseWriter, r *http.Request, n int) bool
		class   string
		message string
	}{
		{"5xx on page 2", func(w http.ResponseWriter, r *http.Request, n int) bool {
			if page2(r) {
				http.Error(w, "upstream broke; your token was "+testGitHubToken, 502)
				return true
			}
			return false
		}, bus.TrackerStatusError, "HTTP 502"},
		{"page 2 not an array", func(w http.ResponseWriter, r *http.Request, n int) bool {
			if page2(r) {
				fmt.Fprint(w, `{"message":"odd"}`)
				return true
			}
			return false
		}, bus.TrackerMalformed, "page 2 is not a JSON array"},
		{"next page off the endpoint", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", `<https://evil.example/repositories/99/issues?page=2>; rel="next"`)
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "not on the endpoint"},
		{"next page elsewhere on the endpoint", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", `<http://`+r.Host+`/repos/other/repo/issues?page=2>; rel="next"`)
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "is not a page of /repos/acme/app/issues"},
		{"next page not absolute", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", `</repositories/99/issues?page=2>; rel="next"`)
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "not an absolute URL"},
		{"a page repeated", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", `<http://`+r.Host+`/repositories/99/issues?page=2>; rel="next"`)
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "already read"},
		{"pages without end", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", fmt.Sprintf(`<http://%s/repositories/99/issues?page=%d>; rel="next"`, r.Host, n+2))
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "more than 100 pages"},
		{"broken link header", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("Link", `http://x; rel=next`)
			fmt.Fprint(w, `[]`)
			return true
		}, bus.TrackerPaginationError, "Link header"},
		{"bad token", func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Error(w, `{"message":"Bad credentials"}`, 401)
			return true
		}, bus.TrackerStatusError, "missing, wrong or expired"},
		{"redirect", func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Redirect(w, r, "https://elsewhere.example/x", http.StatusFound)
			return true
		}, bus.TrackerStatusError, "redirects are not followed"},
		{"a page over 16 MiB", func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Write([]byte("["))
			chunk := []byte(strings.Repeat(`{"number":1,"title":"x","state":"open"},`, 1000))
			for written := 0; written <= MaxResponseBytes; written += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					break
				}
			}
			return true
		}, bus.TrackerMalformed, "larger than"},
		{"timeout", func(w http.ResponseWriter, r *http.Request, n int) bool {
			<-r.Context().Done()
			return true
		}, bus.TrackerRequestError, "request to GitHub failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			var all []map[string]any
			for n := 1; n <= 120; n++ {
				all = append(all, ghIssueJSON(n, "open"))
			}
			f.set(all...)
			f.setFault(tc.fault)
			logs := &logBuf{}
			g := newTestGitHub(t, f, nil, logs)
			if tc.name == "timeout" {
				g.httpc.Timeout = 200 * time.Millisecond
			}
			list, _, err := g.Candidates(t.Context(), []string{"open"})
			class, _ := classOf(err)
			if err == nil || list != nil || class != tc.class || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v (class %s, %d issues), want %s with %q", err, class, len(list), tc.class, tc.message)
			}
			if strings.Contains(err.Error(), testGitHubToken) || strings.Contains(logs.String(), testGitHubToken) {
				t.Fatalf("the token is in the error or the logs: %v", err)
			}
		})
	}

	// A malformed record is dropped from a listing and fails a refresh.
	f := newFakeGitHub(t)
	bad := ghIssueJSON(2, "open")
	delete(bad, "title")
	f.set(ghIssueJSON(1, "open"), bad)
	g := newTestGitHub(t, f, nil, nil)
	list, dropped, err := g.Candidates(t.Context(), []string{"open"})
	if err != nil || dropped != 1 || len(list) != 1 {
		t.Fatalf("listing with a malformed record: %v, dropped %d, %d issues", err, dropped, len(list))
	}
	if _, err := g.Refresh(t.Context(), []string{"1", "2"}); err == nil || !strings.Contains(err.Error(), "missing title") {
		t.Fatalf("refresh of a malformed record: %v", err)
	}

	// A transferred issue (301) is gone; a repository the token cannot
	// read (every issue 404 and the repository too) is an error, not
	// every issue gone.
	f.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if strings.HasSuffix(r.URL.Path, "/issues/1") {
			http.Redirect(w, r, "/repos/acme/elsewhere/issues/4", http.StatusMovedPermanently)
			return true
		}
		return false
	})
	if got, err := g.Refresh(t.Context(), []string{"1", "404"}); err != nil || len(got) != 0 {
		t.Fatalf("refresh of a moved and a missing issue: %v %v", got, err)
	}
	f.mu.Lock()
	f.repoMissing = true
	f.mu.Unlock()
	g2 := newTestGitHub(t, f, nil, nil)
	if _, err := g2.Refresh(t.Context(), []string{"404"}); err == nil || !strings.Contains(err.Error(), "cannot read it") {
		t.Fatalf("refresh with the repository unreadable: %v", err)
	}
	var te *Error
	if _, err := g2.Refresh(t.Context(), []string{"404"}); !errors.As(err, &te) || te.Class != bus.TrackerStatusError {
		t.Fatalf("class: %v", err)
	}
}

// TestGitHubRateLimitIsShared: a poll that hits a secondary limit fails
// with rate_limited and the wait, and a refresh asked over the bus right
// after, like a reload's new adapter on the same token, sends nothing
// before the wait is over.
func TestGitHubRateLimitIsShared(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(1, "open"))
	f.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Retry-After", "600")
		http.Error(w, `{"message":"You have exceeded a secondary rate limit"}`, 403)
		return true
	})
	h := startTracker(t, map[string]string{"GITHUB_TOKEN": testGitHubToken})
	tc := bus.TrackerConfig{Kind: bus.TrackerGitHub, ActiveStates: []string{"open"}, TerminalStates: []string{"closed"},
		Provider: bus.TrackerProvider{Repo: "acme/app", Endpoint: f.url(), APIKey: bus.NewSecret("GITHUB_TOKEN", "")}}
	h.config(1, tc, time.Hour)
	fail := h.failure()
	if fail.Class != bus.TrackerRateLimited || fail.RetryAfterMS < 590_000 || strings.Contains(fail.Message, testGitHubToken) {
		t.Fatalf("poll failure = %+v", fail)
	}
	tc.RequiredLabels = []string{"x"} // a reload: a new adapter, the same token
	h.config(2, tc, time.Hour)
	sent := len(f.requests())
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	_, err := bus.Ask(ctx, h.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{"1"}})
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Code != bus.TrackerRateLimited {
		t.Fatalf("refresh during the limit: %v", err)
	}
	if got := len(f.requests()); got != sent {
		t.Fatalf("%d requests sent during the limit", got-sent)
	}
}

// TestETagCacheIsBounded: entries and bytes stay within the bounds, the
// least recently used go first, a body too large is not kept.
func TestETagCacheIsBounded(t *testing.T) {
	c := newETagCache(3, 4000)
	for i := range 5 {
		c.put(etagEntry{url: fmt.Sprint("u", i), etag: "e", body: make([]byte, 100)})
		if i == 2 {
			c.get("u0") // u0 is used: u1 goes first
		}
	}
	if _, ok := c.get("u0"); !ok {
		t.Error("the recently used entry was evicted")
	}
	for _, u := range []string{"u1", "u2"} {
		if _, ok := c.get(u); ok {
			t.Errorf("%s kept past the bound of 3 entries", u)
		}
	}
	c.put(etagEntry{url: "big", etag: "e", body: make([]byte, 1001)})
	if _, ok := c.get("big"); ok {
		t.Error("a body over a quarter of the bytes was kept")
	}
	for i := range 10 {
		c.put(etagEntry{url: fmt.Sprint("m", i), etag: "e", body: make([]byte, 900)})
	}
	if c.bytes > 4000 || c.lru.Len() > 3 || len(c.entries) != c.lru.Len() {
		t.Fatalf("cache holds %d bytes in %d entries (%d indexed)", c.bytes, c.lru.Len(), len(c.entries))
	}
}

// TestGitHubProjectStates: with a Projects (v2) board, an open issue's
// state is its Status on the board (every page of the board read, items
// of other repositories and archived ones ignored), open off the board or
// with no status, closed when closed; the board's Priority field wins
// over priority: labels. The document sent validates against GitHub's
// schema (the fake checks it).
func TestGitHubProjectStates(t *testing.T) {
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(1, "open", "priority:4"), ghIssueJSON(2, "open"), ghIssueJSON(3, "open"), ghIssueJSON(4, "closed"),
		ghIssueJSON(5, "open"), ghIssueJSON(6, "open"), ghPull(7, "open"))
	f.project = []ghBoardItem{
		{repo: "acme/app", number: 1, status: "In Progress", priority: "High"},
		{repo: "other/app", number: 2, status: "Todo"},
		{repo: "acme/app", number: 3, status: "Todo", priority: 1},
		{repo: "ACME/App", number: 4, status: "Todo"},
		{repo: "acme/app", number: 5, status: "Todo", archived: true},
		{repo: "acme/app", number: 6},
		{repo: "acme/app", number: 7, status: "Todo"},
	}
	board := func(c *bus.TrackerConfig) {
		c.Provider.Project, c.Provider.StatusField, c.Provider.PriorityField = "acme/3", "Status", "Priority"
		c.ActiveStates, c.TerminalStates = []string{"Todo", "In Progress"}, []string{"Done", "closed"}
	}
	g := newTestGitHub(t, f, board, nil)
	list, _, err := g.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); !slices.Equal(got, []string{"1", "3"}) {
		t.Fatalf("Todo/In Progress = %v, want [1 3]", got)
	}
	if list[0].State != "In Progress" || *list[0].Priority != 2 || list[1].State != "Todo" || *list[1].Priority != 1 {
		t.Fatalf("issues = %+v", list)
	}
	got, err := g.Refresh(t.Context(), []string{"2", "4", "5", "6"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"open", "closed", "open", "open"} {
		if got[i].State != want {
			t.Errorf("issue %s: state %q, want %q", got[i].ID, got[i].State, want)
		}
	}
	graphql := 0
	for _, r := range f.requests() {
		if r.path == "/graphql" {
			graphql++
		}
	}
	if graphql != 8 {
		t.Errorf("%d GraphQL requests, want 4 pages of the board for each of the two calls", graphql)
	}

	// A board the token cannot see is a classed error, never "every issue
	// open".
	missing := newTestGitHub(t, f, func(c *bus.TrackerConfig) { board(c); c.Provider.Project = "acme/4" }, nil)
	if _, _, err := missing.Candidates(t.Context(), []string{"Todo"}); !classIs(err, bus.TrackerGraphQLError) || !strings.Contains(err.Error(), "Could not resolve") {
		t.Fatalf("missing board: %v", err)
	}
	// A GraphQL rate limit holds the REST requests too.
	f.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path != "/graphql" {
			return false
		}
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(time.Now().Add(time.Hour).Unix()))
		fmt.Fprint(w, `{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded"}]}`)
		return true
	})
	if _, _, err := g.Candidates(t.Context(), []string{"Todo"}); !classIs(err, bus.TrackerRateLimited) {
		t.Fatalf("GraphQL rate limit: %v", err)
	}
	n := len(f.requests())
	if _, err := g.Refresh(t.Context(), []string{"1"}); !classIs(err, bus.TrackerRateLimited) || len(f.requests()) != n {
		t.Fatalf("refresh during the limit: %v, %d requests", err, len(f.requests())-n)
	}
	if u := (&github{base: mustURL(t, "https://ghe.example/api/v3")}).graphqlURL(); u != "https://ghe.example/api/graphql" {
		t.Errorf("GHES GraphQL URL = %s", u)
	}
	if u := (&github{base: mustURL(t, "https://api.github.com")}).graphqlURL(); u != "https://api.github.com/graphql" {
		t.Errorf("GraphQL URL = %s", u)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestGitHubSecondaryLimitBacksOff: a secondary limit that names no wait,
// met again after each wait, waits 1, 2, 4 minutes; an answer that gets
// through starts again at one.
func TestGitHubSecondaryLimitBacksOff(t *testing.T) {
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	f := newFakeGitHub(t)
	f.set(ghIssueJSON(1, "open"))
	limited := func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Error(w, `{"message":"You have exceeded a secondary rate limit."}`, 403)
		return true
	}
	f.setFault(limited)
	g := newTestGitHub(t, f, nil, nil)
	g.now = func() time.Time { return now }
	expect := func(want time.Duration) {
		t.Helper()
		_, _, err := g.Candidates(t.Context(), []string{"open"})
		if _, wait := classOf(err); wait != want {
			t.Fatalf("wait %s, want %s (%v)", wait, want, err)
		}
		now = now.Add(want)
	}
	expect(time.Minute)
	expect(2 * time.Minute)
	expect(4 * time.Minute)
	f.setFault(nil) // one answer gets through
	if _, _, err := g.Candidates(t.Context(), []string{"open"}); err != nil {
		t.Fatal(err)
	}
	f.setFault(limited)
	expect(time.Minute)
}
