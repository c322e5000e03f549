package tracker

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// fuzzGitHub is an adapter for the parsers alone (no requests).
func fuzzGitHub(t testing.TB, stateLabels string) *github {
	g, err := newGitHub(bus.TrackerConfig{Kind: bus.TrackerGitHub, TerminalStates: []string{"closed", "Done"},
		Provider: bus.TrackerProvider{Repo: "acme/socket.io", Endpoint: "https://api.github.com", StateLabels: stateLabels}},
		testGitHubToken, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// FuzzGitHubIssue: any issue payload normalizes to a complete, routable
// issue or an error (or nil for a pull request), in time linear in its
// size; blocker pages parse or fail cleanly.
func FuzzGitHubIssue(f *testing.F) {
	for _, s := range []string{
		`{"number":1,"title":"t","state":"open","labels":[{"name":"status:Todo"},"priority:1"],"assignees":[{"login":"a"}]}`,
		`{"number":2,"title":"t","state":"closed","pull_request":{"url":"x"}}`,
		`{"number":3,"title":"t","state":"open","pull_request":null,"issue_dependencies_summary":{"blocked_by":1,"total_blocked_by":-4}}`,
		`{"number":-1,"title":"t","state":"open"}`, `{"number":1e30}`, `[]`, `{"number":4,"title":"","state":"open","labels":[{"name":"Status: a"},{"name":"status:b"}]}`,
		`[{"number":5,"state":"open","repository_url":"https://api.github.com/repos/o/r.x"},{"number":"x"}]`,
	} {
		f.Add([]byte(s), "status:")
	}
	f.Fuzz(func(t *testing.T, raw []byte, prefix string) {
		if len(raw) > 1<<20 || len(prefix) > 100 {
			return
		}
		g := fuzzGitHub(t, prefix)
		r := newRules(g.terminal, "")
		start := time.Now()
		it, err := g.normalize(raw, projectMap{1: {status: "In Progress"}})
		if err == nil && it != nil {
			iss := g.finish(it, r)
			if iss.ID == "" || iss.State == "" || iss.Labels == nil || iss.BlockedBy == nil || !safeid.Valid(iss.Identifier) {
				t.Fatalf("accepted an incomplete issue %+v", iss)
			}
			if p := iss.Priority; p != nil && (*p < 1 || *p > 4) {
				t.Fatalf("priority %d", *p)
			}
			if len(it.ambiguous) > 0 && iss.Dispatchable {
				t.Fatal("an issue with several state labels is dispatchable")
			}
			if b, _ := json.Marshal(iss); len(b) > 2*len(raw)+1024 {
				t.Fatalf("an issue of %d bytes normalized to %d", len(raw), len(b))
			}
		}
		if _, err := g.parseBlockers(raw, nil); err != nil && err.Error() == "" {
			t.Fatal("an error without a message")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%d bytes took %s", len(raw), d)
		}
	})
}

// FuzzLinkHeader: any Link header yields a next target (taken from the
// header itself) or an error, and checkNext lets through only pages of
// the listing on the endpoint.
func FuzzLinkHeader(f *testing.F) {
	for _, s := range []string{
		`<https://api.github.com/repositories/99/issues?page=2>; rel="next", <https://api.github.com/repositories/99/issues?page=9>; rel="last"`,
		`<https://api.github.com/repos/acme/socket.io/issues?page=2&a=b,c>; rel="prev next"`,
		`<https://evil.example/repositories/99/issues?page=2>; rel=next`, `<x>; rel="next", <y>; rel="next"`, `<`, `<a>; title="a,b"; rel="next"`, ``,
	} {
		f.Add(s)
	}
	g := fuzzGitHub(f, "")
	first, err := g.url(nil, "issues")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		next, err := parseLinkNext(v)
		if err != nil {
			return
		}
		if next != "" && !strings.Contains(v, "<"+next+">") {
			t.Fatalf("next %q is not a target of the header", next)
		}
		if next == "" {
			return
		}
		u, err := g.checkNext(next, first)
		if err != nil {
			return
		}
		if !strings.HasPrefix(u, "https://api.github.com/repos/acme/socket.io/issues") && !strings.HasPrefix(u, "https://api.github.com/repositories/") {
			t.Fatalf("checkNext let %q through", u)
		}
	})
}

// FuzzGitHubRateLimit: any rate-limit headers give a wait between a
// second and githubMaxWait, never a negative or endless one.
func FuzzGitHubRateLimit(f *testing.F) {
	f.Add("0", "1765159200", "30", "Mon, 08 Dec 2026 02:00:00 GMT")
	f.Add("", "", "Mon, 08 Dec 2026 02:00:00 GMT", "")
	f.Add("-1", "99999999999999999", "1e9", "garbage")
	now := time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, remaining, reset, retry, date string) {
		h := http.Header{}
		h.Set("X-Ratelimit-Remaining", remaining)
		h.Set("X-Ratelimit-Reset", reset)
		h.Set("Retry-After", retry)
		h.Set("Date", date)
		rl := parseGitHubRateLimit(h, now)
		for _, w := range []time.Duration{rl.wait(), rl.resetWait(githubDefaultSecondaryWait)} {
			if w < time.Second || w > githubMaxWait {
				t.Fatalf("wait %s from %q %q %q %q", w, remaining, reset, retry, date)
			}
		}
	})
}

// FuzzGitHubAPICall: any github_api arguments are refused, found bad, or
// make a call whose path stays relative to the endpoint and which, under
// the scoped policy, is a read of the repository or a listed write on the
// run's own issue.
func FuzzGitHubAPICall(f *testing.F) {
	for _, s := range []string{
		`{"method":"GET","path":"/repos/acme/socket.io/issues","params":{"state":"open","labels":["a","b"]}}`,
		`{"method":"PATCH","path":"/repos/acme/socket.io/issues/7","body":{"state":"closed"}}`,
		`{"method":"POST","path":"/repos/acme/socket.io/issues/7/comments","body":{"body":"x"}}`,
		`{"method":"DELETE","path":"/repos/acme/socket.io/issues/7/labels/a%2Fb"}`,
		`{"method":"get","path":"/repos/acme/socket.io/../x"}`, `{"method":"POST","path":"/repos/ACME/Socket.IO/issues/7/labels","body":[1]}`,
		`{"method":"DELETE","path":"/repos/acme/socket.io/issues/7/labels/..%252F..%252F8%252Flabels"}`,
		`{"method":"GET","path":"/repos/acme/socket.io/%252E%252E/x"}`, `{"method":"DELETE","path":"/repos/acme/socket.io/issues/7/labels/100%25"}`,
	} {
		f.Add([]byte(s))
	}
	g := fuzzGitHub(f, "")
	own := bus.IssueRef{ID: "7", Identifier: "socket_io-7"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > bus.ToolArgumentsMaxBytes {
			return
		}
		c, bad := parseGitHubCall(raw)
		if bad != nil {
			if bad.OK || bad.Class != bus.ToolBadArguments || bad.Error == "" {
				t.Fatalf("bad arguments as %+v", bad)
			}
			return
		}
		u, err := endpointURL(g.base, c.segs...)
		if err != nil {
			t.Fatalf("checked segments %q give no URL: %v", c.segs, err)
		}
		s := u.String()
		if !strings.HasPrefix(s, "https://api.github.com/") || strings.Contains(s[len("https://api.github.com/"):], "//") {
			t.Fatalf("call left the endpoint: %s", u)
		}
		// What the server sees, split at '/' and unescaped once, is
		// exactly what was checked.
		back, err := url.Parse(s)
		if err != nil {
			t.Fatalf("built URL %q does not parse: %v", s, err)
		}
		if wire, err := wireSegments(back.EscapedPath()); err != nil || !slices.Equal(wire, c.segs) {
			t.Fatalf("wire path %q decodes to %q, checked %q (%v)", back.EscapedPath(), wire, c.segs, err)
		}
		if err := g.checkScope(c, own); err != nil {
			if ruleOf(err) == "scope" {
				t.Fatalf("a refusal without a rule: %v", err)
			}
			return
		}
		if len(c.segs) < 3 || c.segs[0] != "repos" || !strings.EqualFold(c.segs[1], "acme") || !strings.EqualFold(c.segs[2], "socket.io") {
			t.Fatalf("scoped let %v through", c.segs)
		}
		if c.method != "GET" && (len(c.segs) < 5 || c.segs[3] != "issues" || c.segs[4] != "7") {
			t.Fatalf("scoped let a write on %v through", c.segs)
		}
		if c.method != "GET" && len(c.params) > 0 {
			t.Fatalf("scoped let a write with query parameters %v through", c.params)
		}
	})
}

// FuzzGitHubProjectPage: any GraphQL answer decodes to a board page or a
// classed error, and the items taken from it are this repository's, with
// priorities 1..4 or none.
func FuzzGitHubProjectPage(f *testing.F) {
	for _, s := range []string{
		`{"data":{"repositoryOwner":{"projectV2":{"items":{"nodes":[{"isArchived":false,"content":{"number":1,"repository":{"nameWithOwner":"acme/socket.io"}},"status":{"name":"Todo"},"priority":{"number":2}}],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}}}`,
		`{"data":{"repositoryOwner":{"projectV2":{"items":{"nodes":[{"content":{"number":2,"repository":{"nameWithOwner":"ACME/Socket.IO"}},"priority":{"name":"urgent"}},{"content":{}}]}}}}}`,
		`{"errors":[{"type":"RATE_LIMITED","message":"x"}]}`, `{"data":null,"errors":[{"message":"nope"}]}`, `{"data":{"repositoryOwner":null}}`, `[1]`,
	} {
		f.Add([]byte(s))
	}
	g := fuzzGitHub(f, "")
	g.projectOwner, g.projectNumber = "acme", 3
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<20 {
			return
		}
		var p ghProjectPage
		if err := g.decodeGraphQL(raw, http.Header{}, &p); err != nil {
			if c, _ := classOf(err); c == "" {
				t.Fatalf("unclassed %v", err)
			}
			return
		}
		out := projectMap{}
		g.collectItems(p, "acme/socket.io", out)
		for n, it := range out {
			if pr := it.priority; pr != nil && (*pr < 1 || *pr > 4) {
				t.Fatalf("issue %d: priority %d", n, *pr)
			}
			if it.status != strings.TrimSpace(it.status) {
				t.Fatalf("status %q not trimmed", it.status)
			}
		}
	})
}
