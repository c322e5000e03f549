package tracker

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// The GitHub Issues adapter (issue #25) reads one repository's issues over
// GitHub's REST API: GET /repos/{owner}/{repo}/issues to list, GET
// /repos/{owner}/{repo}/issues/{number} to refresh, and, for an open issue
// GitHub says is blocked, GET …/issues/{number}/dependencies/blocked_by.
// Pull requests, which the issues endpoint returns too, are never issues.
// States are open and closed, or, for open issues, the text of a state
// label (state_labels) or the status on a Projects (v2) board read over
// GraphQL (github_project.go). The transport — headers, conditional
// requests, rate limits, Link pages — is github_http.go; normalization
// github_normalize.go; the github_api tool github_tools.go and its scope
// github_scope.go.
//
// An issue's id is its number ("42"): what the refresh asks GitHub for,
// stable for the issue's life in the repository (a transferred issue is
// another repository's and reads as gone). Its identifier is the
// repository's name, lowercased, dots as '_', a hyphen and the number
// (socket.io#7 → socket_io-7), which passes the identifier rule for any
// repository name GitHub allows.
//
// native_ref carries {owner, repo, number, node_id}: the repository as
// configured, node_id from the payload.

// GitHub adapter limits.
const (
	githubPageSize = 100
	// githubMaxPages bounds one listing (100 × 100 = 10,000 issues and
	// pull requests): every page or nothing, and never forever.
	githubMaxPages = 100
	// githubMaxListingBytes bounds the bytes one listing reads in all.
	githubMaxListingBytes = 128 << 20
	// githubRefreshBatch and githubConcurrency: a refresh asks for its
	// issues 50 at a time, 4 requests at once, and so do the blocker reads
	// of a listing.
	githubRefreshBatch = 50
	githubConcurrency  = 4
	// priorityLabelPrefix is the label convention priority comes from.
	priorityLabelPrefix = "priority:"
)

// github is the GitHub REST adapter.
type github struct {
	endpoint    string   // the API root, no trailing slash
	base        *url.URL // endpoint, parsed
	owner, repo string
	apiKey      string
	assignee    string // "", a login, or "me"
	stateLabels string // the state label prefix; "" means open/closed
	terminal    []string
	prefix      string // the identifier's prefix
	httpc       *http.Client
	log         *slog.Logger
	now         func() time.Time
	// gate and cache are shared by every adapter the component builds
	// with the same endpoint and token.
	gate  *rateGate
	cache *etagCache
	// secondary counts the secondary limits without a retry-after met in
	// a row (reset by any answer that gets through): each waits twice
	// as long as the last.
	secondary atomic.Int32
	// projectOwner and projectNumber name the Projects (v2) board states
	// come from ("" without one); statusField and priorityField its
	// fields (github_project.go).
	projectOwner               string
	projectNumber              int
	statusField, priorityField string
	// toolPolicy is github_api's policy (tracker.tools.github_api):
	// scoped, any or off (github_scope.go).
	toolPolicy string

	// writes counts each run's recent github_api writes (github_quota.go).
	writes runWrites

	mu     sync.Mutex
	viewer string // resolved "me"
}

func newGitHub(cfg bus.TrackerConfig, apiKey string, httpc *http.Client, log *slog.Logger) (*github, error) {
	owner, repo, ok := strings.Cut(cfg.Provider.Repo, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return nil, errorf(bus.TrackerConfigError, "tracker.provider.repo must be owner/name, got %q", cfg.Provider.Repo)
	}
	if apiKey == "" {
		return nil, errorf(bus.TrackerMissingSecret, "the GitHub token is not set (tracker.provider.api_key)")
	}
	base, err := url.Parse(strings.TrimRight(cfg.Provider.Endpoint, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, errorf(bus.TrackerConfigError, "tracker.provider.endpoint must be an http(s) URL, got %q", cfg.Provider.Endpoint)
	}
	// The loader refused it already; a config that gets here anyway does
	// not send the token in clear.
	if err := workflowfile.CheckTransport(base); err != nil {
		return nil, errorf(bus.TrackerConfigError, "tracker.provider.endpoint %v", err)
	}
	if httpc == nil {
		httpc = &http.Client{Timeout: DefaultRequestTimeout}
	}
	// As for Linear: a followed redirect would re-send the token to
	// wherever the server points.
	noRedirects := *httpc
	noRedirects.CheckRedirect = refuseRedirect
	policy := cfg.Tools.GitHubAPI
	switch policy {
	case "":
		policy = bus.LinearGraphQLScoped
	case bus.LinearGraphQLScoped, bus.LinearGraphQLAny, bus.LinearGraphQLOff:
	default:
		// The loader refuses any other value; one that gets here is a
		// configuration error, not a quiet fallback.
		return nil, errorf(bus.TrackerConfigError, "tracker.tools.github_api: unknown policy %q", policy)
	}
	g := &github{toolPolicy: policy,
		endpoint: base.String(), base: base, owner: owner, repo: repo,
		apiKey: apiKey, assignee: cfg.Provider.Assignee, stateLabels: cfg.Provider.StateLabels,
		terminal: cfg.TerminalStates, prefix: githubIdentifierPrefix(repo),
		httpc: &noRedirects, log: log, now: time.Now,
		gate: &rateGate{}, cache: newETagCache(etagCacheItems, etagCacheBytes),
		statusField: cfg.Provider.StatusField, priorityField: cfg.Provider.PriorityField,
	}
	if cfg.Provider.Project != "" {
		if g.projectOwner, g.projectNumber, err = parseProject(cfg.Provider.Project); err != nil {
			return nil, errorf(bus.TrackerConfigError, "%v", err)
		}
		if g.statusField == "" {
			g.statusField = "Status"
		}
	}
	return g, nil
}

// namedStates reports whether open issues take named states (state
// labels or a project) rather than being just open.
func (g *github) namedStates() bool { return g.stateLabels != "" || g.projectOwner != "" }

// githubIdentifierPrefix is the identifier's repository part: the name
// lowercased (GitHub's names are case-insensitive, so the config's
// spelling must not matter), '.' (allowed in names, not in identifiers)
// as '_'.
func githubIdentifierPrefix(repo string) string {
	return strings.ReplaceAll(strings.ToLower(repo), ".", "_")
}

// url is the endpoint's URL for the path segments after /repos/{owner}/{repo}.
func (g *github) url(query url.Values, segs ...string) (string, error) {
	u, err := endpointURL(g.base, append([]string{"repos", g.owner, g.repo}, segs...)...)
	if err != nil {
		return "", err
	}
	if query != nil {
		u.RawQuery = query.Encode()
	}
	return u.String(), nil
}

// endpointURL is base with segs appended, each one exactly one path
// segment on the wire: escaped once with url.PathEscape ('/', '%', '?',
// '#' and the rest included), Path and RawPath set together so nothing
// decodes or re-encodes them again (url.JoinPath unescapes what it
// joins, so a segment "..%2F8" would have become two). The result is
// checked: its escaped path, split and unescaped, must give base's
// segments and then exactly segs.
func endpointURL(base *url.URL, segs ...string) (*url.URL, error) {
	u := *base
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	path, raw := strings.TrimSuffix(base.Path, "/"), strings.TrimSuffix(base.EscapedPath(), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\") {
			return nil, errorf(bus.ToolBadArguments, "path segment %.100q is not allowed (empty, dot or a slash)", s)
		}
		path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.Path, u.RawPath = path, raw
	if got, err := wireSegments(u.EscapedPath()); err != nil || !slices.Equal(got[len(got)-len(segs):], segs) || u.EscapedPath() != raw {
		return nil, errorf(bus.ToolBadArguments, "the path %.200q does not encode to its own segments", path)
	}
	return &u, nil
}

// wireSegments splits an escaped path as a server does: at each '/', then
// each segment unescaped once.
func wireSegments(escaped string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(escaped, "/"), "/")
	for i, p := range parts {
		s, err := url.PathUnescape(p)
		if err != nil {
			return nil, err
		}
		parts[i] = s
	}
	return parts, nil
}

// redact removes the token from err's text (see linear.redact).
func (g *github) redact(err error) error {
	return redactSecret(err, g.apiKey)
}

// Candidates implements adapter.
func (g *github) Candidates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	list, dropped, err := g.byStates(ctx, states)
	return list, dropped, g.redact(err)
}

// Terminal implements adapter.
func (g *github) Terminal(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	list, dropped, err := g.byStates(ctx, states)
	return list, dropped, g.redact(err)
}

// Refresh implements adapter.
func (g *github) Refresh(ctx context.Context, ids []string) ([]bus.Issue, error) {
	list, err := g.refresh(ctx, ids)
	return list, g.redact(err)
}

// ghQueryState is the state= of the listing that holds the wanted
// states: a closed issue is only ever in state closed; every other state
// is an open issue's (open itself, or a state label's).
func (g *github) ghQueryState(want map[string]bool) string {
	open := false
	for s := range want {
		if s != "closed" && (g.namedStates() || s == "open") {
			open = true
		}
	}
	switch {
	case open && want["closed"]:
		return "all"
	case open:
		return "open"
	case want["closed"]:
		return "closed"
	}
	return ""
}

// byStates lists the repository's issues in states: every page, pull
// requests left out, an issue listed twice kept once, then the blockers
// of the open ones GitHub says have any.
func (g *github) byStates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	want := stateSet(states)
	q := g.ghQueryState(want)
	if q == "" {
		return []bus.Issue{}, 0, nil
	}
	r, err := g.rules(ctx)
	if err != nil {
		return nil, 0, err
	}
	pm, err := g.readProject(ctx)
	if err != nil {
		return nil, 0, err
	}
	first, err := g.url(url.Values{"state": {q}, "per_page": {strconv.Itoa(githubPageSize)}, "sort": {"created"}, "direction": {"asc"}}, "issues")
	if err != nil {
		return nil, 0, err
	}
	var items []*ghItem
	dropped, repeats := 0, 0
	listed := map[string]bool{}
	err = g.pages(ctx, first, func(page int, raw json.RawMessage) {
		it, err := g.normalize(raw, pm)
		switch {
		case err != nil:
			dropped++
			g.log.Warn("dropped a malformed issue from the listing", "reason", scrub(err.Error(), g.apiKey), "page", page)
		case it == nil || !want[normState(it.iss.State)]:
		case listed[it.iss.ID]:
			repeats++
		default:
			listed[it.iss.ID] = true
			items = append(items, it)
		}
	})
	if err != nil {
		return nil, 0, err
	}
	if repeats > 0 {
		g.log.Warn("GitHub listed issues more than once (they moved between pages); kept the first of each", "repeats", repeats)
	}
	if err := g.blockers(ctx, items, pm); err != nil {
		return nil, 0, err
	}
	out := make([]bus.Issue, 0, len(items))
	for _, it := range items {
		out = append(out, g.finish(it, r))
	}
	return out, dropped, nil
}

// pages reads a listing from first, following rel="next", and hands each
// element of each page to each. Every page or nothing: a failed page, a
// page that is not a JSON array, a next page off the listing, a repeated
// one, more than githubMaxPages or githubMaxListingBytes fail it all.
func (g *github) pages(ctx context.Context, first string, each func(page int, raw json.RawMessage)) error {
	seen := map[string]bool{first: true}
	total := 0
	for page, u := 1, first; ; page++ {
		if page > githubMaxPages {
			return errorf(bus.TrackerPaginationError, "more than %d pages; refusing to go on", githubMaxPages)
		}
		ans, err := g.get(ctx, u)
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		if ans.status != http.StatusOK && ans.status/100 != 2 {
			return errorf(bus.TrackerStatusError, "page %d: GitHub answered HTTP %d (is tracker.provider.repo %s/%s right, and readable with the token?)", page, ans.status, g.owner, g.repo)
		}
		if total += len(ans.body); total > githubMaxListingBytes {
			return errorf(bus.TrackerPaginationError, "the listing is over %d bytes; refusing to go on", githubMaxListingBytes)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(ans.body, &elems); err != nil {
			return errorf(bus.TrackerMalformed, "page %d is not a JSON array of issues: %v", page, err)
		}
		for _, raw := range elems {
			each(page, raw)
		}
		next, err := parseLinkNext(ans.link)
		if err != nil {
			return errorf(bus.TrackerPaginationError, "page %d: %v", page, err)
		}
		if next == "" {
			return nil
		}
		if next, err = g.checkNext(next, first); err != nil {
			return errorf(bus.TrackerPaginationError, "page %d: %v", page, err)
		}
		if seen[next] {
			return errorf(bus.TrackerPaginationError, "page %d names a page already read as its next", page)
		}
		seen[next] = true
		u = next
	}
}

// refresh reads each id's issue, 4 at a time in batches of 50. An id that
// is not an issue number of this repository, an issue GitHub says is gone
// (404, 410) or moved (301, transferred), and a pull request are left out:
// they are not visible here. Anything else that fails fails the call.
func (g *github) refresh(ctx context.Context, ids []string) ([]bus.Issue, error) {
	ids = dedupe(ids)
	var nums []string
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 63); err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
			g.log.Warn("refresh: not an issue number of this GitHub repository; left out as not visible", "issue_id", cutText(id, 100))
			continue
		}
		nums = append(nums, id)
	}
	if len(nums) == 0 {
		return []bus.Issue{}, nil
	}
	r, err := g.rules(ctx)
	if err != nil {
		return nil, err
	}
	pm, err := g.readProject(ctx)
	if err != nil {
		return nil, err
	}
	var items []*ghItem
	var repoChecked bool
	for batch := range slices.Chunk(nums, githubRefreshBatch) {
		got := make([]*ghItem, len(batch))
		gone := make([]bool, len(batch))
		err := runBounded(ctx, len(batch), githubConcurrency, func(ctx context.Context, i int) error {
			it, isGone, err := g.one(ctx, batch[i], pm)
			got[i], gone[i] = it, isGone
			return err
		})
		if err != nil {
			return nil, err
		}
		if slices.Contains(gone, true) && !repoChecked {
			// A repository the token cannot read answers 404 for every
			// issue: that is an error, not every issue gone at once.
			if err := g.checkRepo(ctx); err != nil {
				return nil, err
			}
			repoChecked = true
		}
		for _, it := range got {
			if it != nil {
				items = append(items, it)
			}
		}
	}
	if err := g.blockers(ctx, items, pm); err != nil {
		return nil, err
	}
	out := make([]bus.Issue, 0, len(items))
	for _, it := range items {
		out = append(out, g.finish(it, r))
	}
	return out, nil
}

// one reads one issue by number: nil and gone for an issue that is not
// (or no longer) this repository's.
func (g *github) one(ctx context.Context, num string, pm projectMap) (*ghItem, bool, error) {
	u, err := g.url(nil, "issues", num)
	if err != nil {
		return nil, false, fmt.Errorf("issue %s: %w", num, err)
	}
	ans, err := g.get(ctx, u)
	if err != nil {
		return nil, false, fmt.Errorf("issue %s: %w", num, err)
	}
	if ans.status != http.StatusOK {
		g.log.Info("refresh: GitHub says the issue is gone or moved; left out", "issue_id", num, "status", ans.status)
		return nil, true, nil
	}
	it, err := g.normalize(ans.body, pm)
	if err != nil {
		return nil, false, errorf(bus.TrackerMalformed, "refresh: %v", err)
	}
	if it == nil {
		return nil, false, nil // a pull request
	}
	if it.iss.ID != num {
		return nil, false, errorf(bus.TrackerMalformed, "refresh: asked for issue %s, GitHub answered issue %s", num, it.iss.ID)
	}
	return it, false, nil
}

// checkRepo makes sure the repository itself is readable.
func (g *github) checkRepo(ctx context.Context) error {
	u, err := g.url(nil)
	if err != nil {
		return fmt.Errorf("repository %s/%s: %w", g.owner, g.repo, err)
	}
	ans, err := g.get(ctx, u)
	if err != nil {
		return fmt.Errorf("repository %s/%s: %w", g.owner, g.repo, err)
	}
	if ans.status != http.StatusOK {
		return errorf(bus.TrackerStatusError, "repository %s/%s: GitHub answered HTTP %d (it does not exist, or the token cannot read it)", g.owner, g.repo, ans.status)
	}
	return nil
}

// rules resolves the assignee filter ("me" through GET /user, once).
// The login is compared case-insensitively (GitHub's logins are), so
// rules.assignee is left empty and finish applies it.
func (g *github) rules(ctx context.Context) (rules, error) {
	r := newRules(g.terminal, "")
	if g.assignee != "me" {
		return r, nil
	}
	g.mu.Lock()
	login := g.viewer
	g.mu.Unlock()
	if login != "" {
		return r, nil
	}
	me, err := endpointURL(g.base, "user")
	if err != nil {
		return rules{}, fmt.Errorf("resolve assignee me (GET /user): %w", err)
	}
	ans, err := g.get(ctx, me.String())
	if err != nil {
		return rules{}, fmt.Errorf("resolve assignee me (GET /user): %w", err)
	}
	var u struct {
		Login *string `json:"login"`
	}
	if ans.status != http.StatusOK || json.Unmarshal(ans.body, &u) != nil || u.Login == nil || *u.Login == "" {
		return rules{}, errorf(bus.TrackerMalformed, "GitHub's GET /user has no login (needed for assignee: me; an app installation token has no user: name the login instead)")
	}
	g.mu.Lock()
	g.viewer = *u.Login
	g.mu.Unlock()
	return r, nil
}

// login is the assignee filter's login ("" for none).
func (g *github) login() string {
	if g.assignee != "me" {
		return g.assignee
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.viewer
}

// runBounded runs f for 0..n-1, at most limit at once; the first error
// cancels the rest and is returned.
func runBounded(ctx context.Context, n, limit int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// queryGitHubProjectItems reads one page of a Projects (v2) board.
//
//go:embed queries/github_project_items.graphql
var queryGitHubProjectItems string
