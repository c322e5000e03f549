package tracker

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/tracker/linearscope"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// The GraphQL documents the Linear adapter sends. They are static: every
// value travels in variables, so nothing from an issue or the config can
// change a query. A test validates each one against Linear's schema.
var (
	//go:embed queries/issues_by_states.graphql
	docIssuesByStates string
	//go:embed queries/issues_by_ids.graphql
	docIssuesByIDs string
	//go:embed queries/issue_fields.graphql
	fragmentIssueFields string
	//go:embed queries/viewer.graphql
	queryViewer string

	// The issue queries share one fragment file; joining two embedded
	// constants is not building a query from data.
	queryIssuesByStates = docIssuesByStates + "\n" + fragmentIssueFields
	queryIssuesByIDs    = docIssuesByIDs + "\n" + fragmentIssueFields
)

// Linear adapter limits.
const (
	linearPageSize = 50
	// linearMaxPages bounds one listing (50 × 200 = 10,000 issues): a
	// provider that keeps saying hasNextPage cannot loop us forever.
	linearMaxPages = 200
	// MaxResponseBytes caps a GraphQL response body.
	MaxResponseBytes = 16 << 20
	// DefaultRequestTimeout bounds one HTTP request.
	DefaultRequestTimeout = 30 * time.Second
	// defaultRateLimitWait is used when a rate limit names no reset time.
	defaultRateLimitWait = time.Minute
)

// linear is the Linear GraphQL adapter.
type linear struct {
	endpoint    string
	apiKey      string
	projectSlug string
	assignee    string // "", a user id, or "me"
	terminal    []string
	httpc       *http.Client
	log         *slog.Logger
	now         func() time.Time
	// scope decides whether linear_graphql may send a document (see
	// linear_tools.go): built from tracker.tools.linear_graphql; nil means
	// the default, linearscope.PolicyScoped, so nothing unscoped ships.
	scope scopeCheck
	// policy is the scope policy's name, told to the agent in the tool's
	// description.
	policy linearscope.Policy

	// gate is the Linear rate limit in effect. The component shares one
	// among the adapters it builds (withGate): the poller and every run's
	// tool session, pinned to the adapter of its dispatch, spend one quota.
	gate *rateGate

	mu       sync.Mutex
	viewerID string // resolved "me"
}

// rateGates are the rate limits of the Linear credentials the component
// has used: one per endpoint and key, since a limit is the key's quota. A
// reload that keeps them keeps the limit in effect; a new key starts free.
type rateGates struct {
	mu sync.Mutex
	m  map[[32]byte]*rateGate
}

// maxRateGates bounds the credentials remembered (a new key per reload,
// forever, must not grow memory); past it the oldest limits are forgotten.
const maxRateGates = 64

// of returns the gate of endpoint and key.
func (gs *rateGates) of(endpoint, key string) *rateGate {
	id := sha256.Sum256([]byte(endpoint + "\x00" + key))
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g, ok := gs.m[id]; ok {
		return g
	}
	if gs.m == nil || len(gs.m) >= maxRateGates {
		gs.m = map[[32]byte]*rateGate{}
	}
	g := &rateGate{}
	gs.m[id] = g
	return g
}

// rateGate is a provider's rate limit: no request before till. It also
// keeps the primary quota the provider last reported (GitHub's
// x-ratelimit-*), shared like the limit by every adapter on the token, so
// the tools can leave the poller a reserve (github_quota.go).
type rateGate struct {
	mu   sync.Mutex
	till time.Time
	// quota is the last report; known once one came.
	quota struct {
		remaining, limit int64
		reset            time.Time // zero when not reported
		known            bool
	}
}

// wait is how long requests must still wait at now.
func (g *rateGate) wait(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.till.Sub(now)
}

// limit makes requests wait until till (a later limit already in effect
// stands).
func (g *rateGate) limit(till time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if till.After(g.till) {
		g.till = till
	}
}

func newLinear(cfg bus.TrackerConfig, apiKey string, httpc *http.Client, log *slog.Logger) (*linear, error) {
	if cfg.Provider.ProjectSlug == "" {
		return nil, errorf(bus.TrackerConfigError, "tracker.provider.project_slug is required")
	}
	if apiKey == "" {
		return nil, errorf(bus.TrackerMissingSecret, "the Linear API key is not set (tracker.provider.api_key)")
	}
	// The loader refused it already; a config that gets here anyway does
	// not send the key in clear. (An endpoint that is no URL at all fails
	// at the first request, as it did.)
	if u, err := url.Parse(cfg.Provider.Endpoint); err == nil {
		if err := workflowfile.CheckTransport(u); err != nil {
			return nil, errorf(bus.TrackerConfigError, "tracker.provider.endpoint %v", err)
		}
	}
	if httpc == nil {
		httpc = &http.Client{Timeout: DefaultRequestTimeout}
	}
	// The process talks only to the configured endpoint (SECURITY.md). A
	// followed redirect would re-send the query, and to the same host name
	// the key, to wherever the tracker points, over http or another port.
	// The caller's client is copied, not changed: it may be shared.
	noRedirects := *httpc
	noRedirects.CheckRedirect = refuseRedirect
	httpc = &noRedirects
	// The workflow loader has refused any other value already; one that
	// gets here anyway is a configuration error, not a quiet fallback.
	policy, err := linearscope.ParsePolicy(cfg.Tools.LinearGraphQL)
	if err != nil {
		return nil, errorf(bus.TrackerConfigError, "tracker.tools.linear_graphql: %v", err)
	}
	return &linear{
		endpoint:    cfg.Provider.Endpoint,
		apiKey:      apiKey,
		projectSlug: cfg.Provider.ProjectSlug,
		assignee:    cfg.Provider.Assignee,
		terminal:    cfg.TerminalStates,
		httpc:       httpc,
		log:         log,
		now:         time.Now,
		gate:        &rateGate{},
		scope:       scopeOf(policy),
		policy:      policy,
	}, nil
}

// gqlResponse is the envelope of every GraphQL answer.
type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
		Type string `json:"type"`
	} `json:"extensions"`
}

// refuseRedirect is the client's CheckRedirect: the 3xx answer itself is
// returned, and request reports it as a status error.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// do sends one document with its variables and decodes data into out. Every
// error it returns has the key removed: the messages quote Linear's answers
// (body excerpts, GraphQL errors, decoder errors), a tracker may echo the key
// there, and the message is logged, published as PollFailed and shown on the
// dashboard.
func (l *linear) do(ctx context.Context, query string, vars map[string]any, out any) error {
	return l.redact(l.request(ctx, query, vars, out))
}

// request is do without the redaction; only do calls it.
func (l *linear) request(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return errorf(bus.TrackerRequestError, "encode request: %v", err)
	}
	raw, h, err := l.post(ctx, body)
	if err != nil {
		return err
	}
	limited, err := decodeGraphQL(raw, out)
	if limited {
		return l.rateLimited(h, "RATELIMITED")
	}
	return err
}

// post sends one encoded GraphQL request and returns the body of a 2xx
// answer with the answer's headers (also returned, when an answer came,
// with an error). It sends nothing while a rate limit is in effect, and
// records one the answer reports as HTTP 429 or 400 RATELIMITED; a
// RATELIMITED in a 2xx body is the caller's to read. Its errors are not
// redacted (do and the tools do that).
func (l *linear) post(ctx context.Context, body []byte) ([]byte, http.Header, error) {
	if wait := l.gate.wait(l.now()); wait > 0 {
		return nil, nil, &Error{Class: bus.TrackerRateLimited, Message: "Linear rate limit in effect", RetryAfter: wait}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, errorf(bus.TrackerConfigError, "bad endpoint %q: %v", l.endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	// Personal API keys go without "Bearer".
	req.Header.Set("Authorization", l.apiKey)
	resp, err := l.httpc.Do(req)
	if err != nil {
		return nil, nil, &Error{Class: bus.TrackerRequestError, Message: "request to Linear failed: " + err.Error(), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return nil, resp.Header, redirectError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, resp.Header, &Error{Class: bus.TrackerRequestError, Message: "reading Linear's response failed: " + err.Error(), Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusTooManyRequests {
			return nil, resp.Header, l.rateLimited(resp.Header, "HTTP 429")
		}
		// Linear sends its rate limit as HTTP 400 with RATELIMITED in the
		// body: read as a plain status error it would get no back-off, and
		// every poll would hit the limit again and prolong it.
		var ignored json.RawMessage
		if limited, _ := decodeGraphQL(raw, &ignored); limited {
			return nil, resp.Header, l.rateLimited(resp.Header, fmt.Sprintf("HTTP %d, RATELIMITED", resp.StatusCode))
		}
		// A GraphQL error body may still explain a 400; include a little.
		return nil, resp.Header, errorf(bus.TrackerStatusError, "Linear answered HTTP %d: %s", resp.StatusCode, snippet(raw, l.apiKey))
	}
	return raw, resp.Header, nil
}

// redirectError explains a 3xx answer, naming where it pointed (the host
// only: a path or query may carry anything).
func redirectError(resp *http.Response) error {
	where := "no Location"
	if u, err := resp.Location(); err == nil && u.Host != "" {
		where = fmt.Sprintf("a redirect to host %.100q", u.Host)
	}
	return errorf(bus.TrackerStatusError, "Linear answered HTTP %d (%s); redirects are not followed: set tracker.provider.endpoint to the GraphQL URL itself", resp.StatusCode, where)
}

// redact removes the key from err's text, keeping its class and
// retry-after. An error without the key is returned as it is.
func (l *linear) redact(err error) error { return redactSecret(err, l.apiKey) }

// redactSecret removes secret from err's text, keeping its class and
// retry-after; an error without it is returned as it is.
func redactSecret(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	class, retry := classOf(err)
	msg := err.Error()
	var te *Error
	if errors.As(err, &te) {
		// The new Error() adds the class again: drop the inner one.
		msg = strings.Replace(msg, te.Error(), te.Message, 1)
	}
	out := &Error{Class: class, Message: scrub(msg, secret), RetryAfter: retry}
	// The cause stays reachable (errors.Is on a timeout) unless its own
	// text has the secret.
	if te != nil && te.Err != nil && !strings.Contains(te.Err.Error(), secret) {
		out.Err = te.Err
	}
	return out
}

// decodeGraphQL decodes a GraphQL response body into out. limited reports a
// rate-limit error in the body (extensions.code RATELIMITED).
func decodeGraphQL(raw []byte, out any) (limited bool, err error) {
	if len(raw) > MaxResponseBytes {
		return false, errorf(bus.TrackerMalformed, "Linear's response is larger than %d bytes", MaxResponseBytes)
	}
	var env gqlResponse
	if err := json.Unmarshal(raw, &env); err != nil {
		return false, errorf(bus.TrackerMalformed, "Linear's response is not JSON: %v", err)
	}
	if len(env.Errors) > 0 {
		msgs := make([]string, 0, len(env.Errors))
		for _, e := range env.Errors {
			if strings.EqualFold(e.Extensions.Code, "RATELIMITED") || strings.EqualFold(e.Extensions.Type, "ratelimited") {
				return true, nil
			}
			msgs = append(msgs, e.Message)
		}
		return false, errorf(bus.TrackerGraphQLError, "Linear returned errors: %s", strings.Join(msgs, "; "))
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return false, errorf(bus.TrackerMalformed, "Linear's response has no data")
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return false, errorf(bus.TrackerMalformed, "Linear's data does not have the expected shape: %v", err)
	}
	return false, nil
}

// rateLimited records the back-off the provider asked for and returns the
// classed error.
func (l *linear) rateLimited(h http.Header, why string) error {
	wait := retryAfter(h, l.now())
	l.gate.limit(l.now().Add(wait))
	return &Error{Class: bus.TrackerRateLimited, Message: "Linear rate limit (" + why + ")", RetryAfter: wait}
}

// retryAfter reads how long to wait from Retry-After (seconds or an HTTP
// date) and Linear's X-RateLimit-*-Reset headers (epoch milliseconds),
// taking the longest; a minute when none says.
func retryAfter(h http.Header, now time.Time) time.Duration {
	var wait time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 && secs < 86400*7 {
			wait = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil {
			wait = t.Sub(now)
		}
	}
	for name, vals := range h {
		if !strings.HasPrefix(name, "X-Ratelimit-") || !strings.HasSuffix(name, "-Reset") || len(vals) == 0 {
			continue
		}
		ms, err := strconv.ParseInt(strings.TrimSpace(vals[0]), 10, 64)
		if err != nil {
			continue
		}
		if d := time.UnixMilli(ms).Sub(now); d > wait && d < 7*24*time.Hour {
			wait = d
		}
	}
	if wait <= 0 {
		wait = defaultRateLimitWait
	}
	return wait
}

// gqlIssue is an Issue node as the documents above request it. Every field
// is a pointer: what is missing must be told apart from what is empty.
type gqlIssue struct {
	ID          *string  `json:"id"`
	Identifier  *string  `json:"identifier"`
	Title       *string  `json:"title"`
	Description *string  `json:"description"`
	Priority    *float64 `json:"priority"`
	BranchName  *string  `json:"branchName"`
	URL         *string  `json:"url"`
	CreatedAt   *string  `json:"createdAt"`
	UpdatedAt   *string  `json:"updatedAt"`
	State       *struct {
		Name *string `json:"name"`
	} `json:"state"`
	Assignee *struct {
		ID *string `json:"id"`
	} `json:"assignee"`
	Labels *struct {
		Nodes []struct {
			Name *string `json:"name"`
		} `json:"nodes"`
		PageInfo *nestedPageInfo `json:"pageInfo"`
	} `json:"labels"`
	InverseRelations *struct {
		Nodes []struct {
			Type  *string `json:"type"`
			Issue *struct {
				ID         *string `json:"id"`
				Identifier *string `json:"identifier"`
				State      *struct {
					Name *string `json:"name"`
				} `json:"state"`
			} `json:"issue"`
		} `json:"nodes"`
		PageInfo *nestedPageInfo `json:"pageInfo"`
	} `json:"inverseRelations"`
}

// nestedPageInfo is the pageInfo of a list inside an issue (labels,
// relations). Those lists are not paged further: hasNextPage only says the
// issue has more than the documents ask for.
type nestedPageInfo struct {
	HasNextPage bool `json:"hasNextPage"`
}

func (p *nestedPageInfo) more() bool { return p != nil && p.HasNextPage }

// unseen names the lists of an issue that Linear cut at their first page.
type unseen struct {
	labels, relations bool
}

type gqlIssuePage struct {
	Issues *struct {
		Nodes    []json.RawMessage `json:"nodes"`
		PageInfo *struct {
			HasNextPage bool    `json:"hasNextPage"`
			EndCursor   *string `json:"endCursor"`
		} `json:"pageInfo"`
	} `json:"issues"`
}

// normalizeLinear turns one node into a bus.Issue, or explains what is
// missing; cut tells which of its lists Linear returned only in part (see
// unseen.log).
func normalizeLinear(raw json.RawMessage, r rules) (_ bus.Issue, cut unseen, _ error) {
	var n gqlIssue
	if err := json.Unmarshal(raw, &n); err != nil {
		return bus.Issue{}, cut, fmt.Errorf("issue node: %v", err)
	}
	who := "issue"
	if n.ID != nil {
		who = "issue " + *n.ID
	}
	switch {
	case n.ID == nil || *n.ID == "":
		return bus.Issue{}, cut, fmt.Errorf("%s: missing id", who)
	case n.Identifier == nil || *n.Identifier == "":
		return bus.Issue{}, cut, fmt.Errorf("%s: missing identifier", who)
	case n.Title == nil:
		return bus.Issue{}, cut, fmt.Errorf("%s: missing title", who)
	case n.State == nil || n.State.Name == nil || *n.State.Name == "":
		return bus.Issue{}, cut, fmt.Errorf("%s: missing state", who)
	}
	iss := bus.Issue{
		ID:          *n.ID,
		Identifier:  *n.Identifier,
		Title:       *n.Title,
		Description: n.Description,
		State:       *n.State.Name,
		BranchName:  nonEmpty(n.BranchName),
		URL:         nonEmpty(n.URL),
		CreatedAt:   parseTime(n.CreatedAt),
		UpdatedAt:   parseTime(n.UpdatedAt),
		Labels:      []string{},
		BlockedBy:   []bus.Blocker{},
	}
	if n.Priority != nil && !math.IsNaN(*n.Priority) && !math.IsInf(*n.Priority, 0) {
		// Linear's priority is a Float; 0 means "no priority".
		if p := int(math.Round(*n.Priority)); p != 0 {
			iss.Priority = &p
		}
	}
	if n.Assignee != nil {
		iss.AssigneeID = nonEmpty(n.Assignee.ID)
	}
	if n.Labels != nil {
		var names []string
		for _, l := range n.Labels.Nodes {
			if l.Name != nil {
				names = append(names, *l.Name)
			}
		}
		iss.Labels = normLabels(names)
		cut.labels = n.Labels.PageInfo.more()
	}
	if n.InverseRelations != nil {
		for _, rel := range n.InverseRelations.Nodes {
			if rel.Type == nil || *rel.Type != "blocks" || rel.Issue == nil {
				continue
			}
			b := bus.Blocker{ID: rel.Issue.ID, Identifier: rel.Issue.Identifier}
			if rel.Issue.State != nil {
				b.State = rel.Issue.State.Name
			}
			iss.BlockedBy = append(iss.BlockedBy, b)
		}
		cut.relations = n.InverseRelations.PageInfo.more()
	}
	r.dispatchable(&iss, cut.relations)
	return iss, cut, nil
}

// log explains, for an issue with lists Linear cut short, what that means:
// a Todo issue is held back (a relation not seen may be an open blocker);
// a required label not seen makes the scheduler pass the issue over. An
// issue in another state is not held back for its relations: blockers do
// not count there, and a running agent would be stopped for nothing.
func (c unseen) log(log *slog.Logger, iss bus.Issue) {
	if c.relations && !iss.Dispatchable && normState(iss.State) == "todo" {
		log.Warn("not dispatchable: Linear returned only the first page of the issue's relations, and a blocker may be among the rest",
			"issue_id", iss.ID, "issue_identifier", iss.Identifier)
	}
	if c.labels {
		log.Warn("Linear returned only the first page of the issue's labels; a required label among the rest is not seen",
			"issue_id", iss.ID, "issue_identifier", iss.Identifier)
	}
}

func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

func parseTime(s *string) *time.Time {
	if s == nil {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

// rules resolves the assignee filter ("me" through viewer, once).
func (l *linear) rules(ctx context.Context) (rules, error) {
	if l.assignee != "me" {
		return newRules(l.terminal, l.assignee), nil
	}
	l.mu.Lock()
	id := l.viewerID
	l.mu.Unlock()
	if id == "" {
		var v struct {
			Viewer *struct {
				ID *string `json:"id"`
			} `json:"viewer"`
		}
		if err := l.do(ctx, queryViewer, map[string]any{}, &v); err != nil {
			return rules{}, err
		}
		if v.Viewer == nil || v.Viewer.ID == nil || *v.Viewer.ID == "" {
			return rules{}, errorf(bus.TrackerMalformed, "Linear's viewer has no id (needed for assignee: me)")
		}
		id = *v.Viewer.ID
		l.mu.Lock()
		l.viewerID = id
		l.mu.Unlock()
	}
	return newRules(l.terminal, id), nil
}

// byStates lists the project's issues in states, every page, in order.
func (l *linear) byStates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	if len(states) == 0 {
		return []bus.Issue{}, 0, nil
	}
	r, err := l.rules(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := []bus.Issue{}
	dropped := 0
	var after *string
	seen := map[string]bool{}
	// Pages move under the listing: an issue updated between two requests
	// can come back on the next page. Listed twice, it would be claimed and
	// run twice; the first copy is kept, and the repeats logged once.
	listed := map[string]bool{}
	var repeats []string
	for page := 1; ; page++ {
		if page > linearMaxPages {
			return nil, 0, errorf(bus.TrackerPaginationError, "more than %d pages of issues; refusing to go on", linearMaxPages)
		}
		vars := map[string]any{"projectSlug": l.projectSlug, "states": states, "first": linearPageSize, "after": after}
		var p gqlIssuePage
		if err := l.do(ctx, queryIssuesByStates, vars, &p); err != nil {
			return nil, 0, fmt.Errorf("page %d: %w", page, err)
		}
		if p.Issues == nil || p.Issues.PageInfo == nil {
			return nil, 0, errorf(bus.TrackerMalformed, "page %d: issues or pageInfo missing", page)
		}
		for _, raw := range p.Issues.Nodes {
			iss, cut, err := normalizeLinear(raw, r)
			if err != nil {
				dropped++
				l.log.Warn("dropped a malformed issue from the listing", "reason", scrub(err.Error(), l.apiKey), "page", page)
				continue
			}
			if listed[iss.ID] {
				repeats = append(repeats, iss.ID)
				continue
			}
			listed[iss.ID] = true
			cut.log(l.log, iss)
			out = append(out, iss)
		}
		if !p.Issues.PageInfo.HasNextPage {
			if len(repeats) > 0 {
				l.log.Warn("Linear listed issues more than once; kept the first of each", "repeats", len(repeats),
					"issue_ids", scrub(strings.Join(repeats[:min(len(repeats), 10)], ","), l.apiKey), "pages", page)
			}
			return out, dropped, nil
		}
		cur := p.Issues.PageInfo.EndCursor
		if cur == nil || *cur == "" {
			return nil, 0, errorf(bus.TrackerPaginationError, "page %d says there is a next page but gives no cursor", page)
		}
		if seen[*cur] {
			return nil, 0, errorf(bus.TrackerPaginationError, "page %d repeats cursor %q", page, *cur)
		}
		seen[*cur] = true
		after = cur
	}
}

// Candidates implements adapter.
func (l *linear) Candidates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	list, dropped, err := l.byStates(ctx, states)
	return list, dropped, l.redact(err)
}

// Terminal implements adapter.
func (l *linear) Terminal(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	list, dropped, err := l.byStates(ctx, states)
	return list, dropped, l.redact(err)
}

// Refresh implements adapter: de-duplicated ids in batches of 50; any
// malformed record or failed batch fails the whole call. do redacts what
// the requests say; the exits redact too because the adapter's own messages
// quote answers as well (a repeated cursor, an issue id).
func (l *linear) Refresh(ctx context.Context, ids []string) ([]bus.Issue, error) {
	list, err := l.refresh(ctx, ids)
	return list, l.redact(err)
}

func (l *linear) refresh(ctx context.Context, ids []string) ([]bus.Issue, error) {
	ids = dedupe(ids)
	if len(ids) == 0 {
		return []bus.Issue{}, nil
	}
	r, err := l.rules(ctx)
	if err != nil {
		return nil, err
	}
	out := []bus.Issue{}
	for batch := range slices.Chunk(ids, linearPageSize) {
		var p gqlIssuePage
		if err := l.do(ctx, queryIssuesByIDs, map[string]any{"ids": batch, "first": linearPageSize}, &p); err != nil {
			return nil, err
		}
		if p.Issues == nil {
			return nil, errorf(bus.TrackerMalformed, "issues missing from the refresh answer")
		}
		for _, raw := range p.Issues.Nodes {
			iss, cut, err := normalizeLinear(raw, r)
			if err != nil {
				return nil, errorf(bus.TrackerMalformed, "refresh: %v", err)
			}
			if !slices.Contains(batch, iss.ID) {
				return nil, errorf(bus.TrackerMalformed, "refresh: Linear returned issue %s that was not asked for", iss.ID)
			}
			cut.log(l.log, iss)
			out = append(out, iss)
		}
	}
	return out, nil
}

func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// snippet is a short, single-line excerpt of a response body for messages.
// The secret is removed before the cut, which could otherwise keep a piece
// of it that no later scrub recognises.
func snippet(b []byte, secret string) string {
	s := strings.Join(strings.Fields(scrub(string(b), secret)), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// scrub removes the secret from a message, whatever put it there.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "[redacted]")
}
