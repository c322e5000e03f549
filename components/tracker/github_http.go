package tracker

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// GitHub's REST transport: the headers every request carries, the
// conditional requests that make an unchanged poll free, the primary and
// secondary rate limits, and the Link header that pages a listing. The
// parsers here read headers a server chose: each is bounded and fuzzed
// (github_fuzz_test.go).

const (
	// githubAPIVersion is the REST API version requested
	// (X-GitHub-Api-Version); the payloads read here are that version's.
	githubAPIVersion = "2022-11-28"
	githubUserAgent  = "symphony-oss-symphony"
	// githubDefaultSecondaryWait is GitHub's advice for a secondary rate
	// limit that names no wait: at least a minute.
	githubDefaultSecondaryWait = time.Minute
	// githubMaxWait bounds a wait read from headers: the primary window is
	// an hour, so a reset further off is a broken clock or header, and
	// waiting past it would stall the tracker for nothing.
	githubMaxWait = time.Hour + 5*time.Minute
	// maxHeaderValue bounds a header value the parsers read.
	maxHeaderValue = 8 << 10
	// maxLinks bounds the links one Link header may list.
	maxLinks = 32
)

// etagCache keeps, per URL, the ETag and body of the last 200 answer, so
// the next request asks If-None-Match and a 304 (which GitHub does not
// count against the rate limit) is answered from here. It is bounded by
// entries and bytes, least recently used first out; a body over a
// quarter of the byte bound is not kept.
type etagCache struct {
	mu       sync.Mutex
	entries  map[string]*list.Element
	lru      *list.List // of *etagEntry, most recent at the front
	bytes    int
	maxBytes int
	maxItems int
}

type etagEntry struct {
	url  string
	etag string
	body []byte
	link string
}

// Bounds of one credential's ETag cache.
const (
	etagCacheBytes = 32 << 20
	etagCacheItems = 1024
)

func newETagCache(maxItems, maxBytes int) *etagCache {
	return &etagCache{entries: map[string]*list.Element{}, lru: list.New(), maxItems: maxItems, maxBytes: maxBytes}
}

// get returns the cached answer of u (a copy of its fields; the body is
// never changed after it is stored).
func (c *etagCache) get(u string) (etagEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[u]
	if !ok {
		return etagEntry{}, false
	}
	c.lru.MoveToFront(el)
	return *el.Value.(*etagEntry), true
}

// put stores an answer, evicting the least recently used to fit.
func (c *etagCache) put(e etagEntry) {
	size := len(e.body) + len(e.url) + len(e.etag) + len(e.link)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.url]; ok {
		c.remove(el)
	}
	if e.etag == "" || size > c.maxBytes/4 {
		return
	}
	for c.lru.Len() > 0 && (c.bytes+size > c.maxBytes || c.lru.Len() >= c.maxItems) {
		c.remove(c.lru.Back())
	}
	c.entries[e.url] = c.lru.PushFront(&e)
	c.bytes += size
}

func (c *etagCache) remove(el *list.Element) {
	e := el.Value.(*etagEntry)
	c.bytes -= len(e.body) + len(e.url) + len(e.etag) + len(e.link)
	delete(c.entries, e.url)
	c.lru.Remove(el)
}

// etagCaches are the ETag caches of the GitHub credentials the component
// has used, one per endpoint and key like the rate gates: GitHub's ETags
// depend on who asks, and a reload that keeps the key keeps the cache.
type etagCaches struct {
	mu sync.Mutex
	m  map[[32]byte]*etagCache
}

func (cs *etagCaches) of(endpoint, key string) *etagCache {
	id := sha256.Sum256([]byte(endpoint + "\x00" + key))
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.m[id]; ok {
		return c
	}
	if cs.m == nil || len(cs.m) >= maxRateGates {
		cs.m = map[[32]byte]*etagCache{}
	}
	c := newETagCache(etagCacheItems, etagCacheBytes)
	cs.m[id] = c
	return c
}

// ghAnswer is one GitHub answer: a 2xx body (from the cache for a 304), or
// a status the caller decides about (301, 404, 410).
type ghAnswer struct {
	status int
	body   []byte
	header http.Header
	// link is the Link header (the cached one for a 304).
	link string
}

// get sends one GET of u, which must be under the endpoint, with GitHub's
// headers and, when the cache has u, If-None-Match. It sends nothing while
// a rate limit is in effect and records the limits every answer reports.
// 2xx and 304 answers come back as 200 with their body; 301, 404 and 410
// as their status with no body (whether they mean "gone" is the caller's
// call); anything else is a classed error. Errors are not redacted (the
// adapter's exits do that).
func (g *github) get(ctx context.Context, u string) (ghAnswer, error) {
	if wait := g.gate.wait(g.now()); wait > 0 {
		return ghAnswer{}, &Error{Class: bus.TrackerRateLimited, Message: "GitHub rate limit in effect", RetryAfter: wait}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ghAnswer{}, errorf(bus.TrackerConfigError, "bad GitHub URL: %v", err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("User-Agent", githubUserAgent)
	req.Header.Set("Authorization", "Bearer "+g.apiKey)
	cached, haveCached := g.cache.get(u)
	if haveCached {
		req.Header.Set("If-None-Match", cached.etag)
	}
	resp, err := g.httpc.Do(req)
	if err != nil {
		return ghAnswer{}, &Error{Class: bus.TrackerRequestError, Message: "request to GitHub failed: " + err.Error(), Err: err}
	}
	defer resp.Body.Close()
	g.observe(resp.Header)
	switch s := resp.StatusCode; {
	case s == http.StatusNotModified && haveCached:
		g.secondary.Store(0)
		return ghAnswer{status: http.StatusOK, body: cached.body, header: resp.Header, link: cached.link}, nil
	case s == http.StatusNotModified:
		return ghAnswer{}, errorf(bus.TrackerMalformed, "GitHub answered 304 Not Modified to a request without If-None-Match")
	case s == http.StatusMovedPermanently || s == http.StatusNotFound || s == http.StatusGone:
		return ghAnswer{status: s, header: resp.Header}, nil
	case s >= 300 && s <= 399:
		return ghAnswer{}, redirectErrorOf("GitHub", resp, "tracker.provider.endpoint to GitHub's REST API root")
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return ghAnswer{}, &Error{Class: bus.TrackerRequestError, Message: "reading GitHub's response failed: " + err.Error(), Err: err}
	}
	if len(raw) > MaxResponseBytes {
		return ghAnswer{}, errorf(bus.TrackerMalformed, "GitHub's response is larger than %d bytes", MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ghAnswer{}, g.statusError(resp.StatusCode, resp.Header, raw)
	}
	g.secondary.Store(0)
	link := resp.Header.Get("Link")
	if etag := resp.Header.Get("ETag"); etag != "" && len(etag) <= maxHeaderValue && len(link) <= maxHeaderValue {
		g.cache.put(etagEntry{url: u, etag: etag, body: raw, link: link})
	}
	return ghAnswer{status: resp.StatusCode, body: raw, header: resp.Header, link: link}, nil
}

// observe records a primary limit an answer reports as spent
// (x-ratelimit-remaining 0): no request goes out before its reset, which
// GitHub would refuse anyway and count as abuse if repeated.
func (g *github) observe(h http.Header) {
	rl := parseGitHubRateLimit(h, g.now())
	if rl.hasRemaining && rl.remaining == 0 {
		g.gate.limit(g.now().Add(rl.resetWait(githubDefaultSecondaryWait)))
	}
	if rl.hasRemaining {
		g.gate.noteQuota(rl.remaining, rl.limit, rl.reset)
	}
}

// statusError classes a non-2xx answer: 429, or 403 with the marks of a
// rate limit (remaining 0, retry-after, or "rate limit" in the message),
// is rate_limited and sets the back-off; anything else is status_error
// with an excerpt of the body.
func (g *github) statusError(status int, h http.Header, body []byte) error {
	rl := parseGitHubRateLimit(h, g.now())
	limited := status == http.StatusTooManyRequests ||
		(status == http.StatusForbidden && ((rl.hasRemaining && rl.remaining == 0) || rl.hasRetryAfter || strings.Contains(strings.ToLower(snippet(body, g.apiKey)), "rate limit")))
	if limited {
		wait := rl.wait()
		kind := "secondary"
		switch {
		case rl.hasRemaining && rl.remaining == 0 && !rl.hasRetryAfter:
			kind = "primary"
		case !rl.hasRetryAfter:
			// A secondary limit that names no wait, met again after the
			// last wait: GitHub asks for exponentially longer waits (1, 2,
			// 4… minutes), until an answer gets through.
			n := min(g.secondary.Add(1), 7)
			wait = min(githubDefaultSecondaryWait<<(n-1), githubMaxWait)
		}
		g.gate.limit(g.now().Add(wait))
		return &Error{Class: bus.TrackerRateLimited, Message: fmt.Sprintf("GitHub %s rate limit (HTTP %d)", kind, status), RetryAfter: wait}
	}
	hint := ""
	switch status {
	case http.StatusUnauthorized:
		hint = " (the token is missing, wrong or expired)"
	case http.StatusForbidden:
		hint = " (the token may lack read access to the repository's issues)"
	}
	return errorf(bus.TrackerStatusError, "GitHub answered HTTP %d%s: %s", status, hint, snippet(body, g.apiKey))
}

// redirectErrorOf explains a 3xx answer that is not followed, naming the
// host it pointed at only.
func redirectErrorOf(who string, resp *http.Response, fix string) error {
	where := "no Location"
	if u, err := resp.Location(); err == nil && u.Host != "" {
		where = fmt.Sprintf("a redirect to host %.100q", u.Host)
	}
	return errorf(bus.TrackerStatusError, "%s answered HTTP %d (%s); redirects are not followed: set %s", who, resp.StatusCode, where, fix)
}

// ghRateLimit is what an answer's headers say about GitHub's limits.
type ghRateLimit struct {
	remaining    int64
	hasRemaining bool
	// limit is the primary window's size (x-ratelimit-limit), 0 unknown.
	limit         int64
	reset         time.Time // the primary window's reset, on our clock
	hasReset      bool
	retryAfter    time.Duration
	hasRetryAfter bool
	// at is when the answer was read (our clock).
	at time.Time
}

// parseGitHubRateLimit reads x-ratelimit-remaining, x-ratelimit-reset
// (epoch seconds, on GitHub's clock: moved to ours by the answer's Date,
// when it has one) and retry-after (seconds or an HTTP date). Values over
// maxHeaderValue or unparsable are ignored.
func parseGitHubRateLimit(h http.Header, now time.Time) ghRateLimit {
	rl := ghRateLimit{at: now}
	get := func(k string) string {
		v := h.Get(k)
		if len(v) > maxHeaderValue {
			return ""
		}
		return strings.TrimSpace(v)
	}
	if n, err := strconv.ParseInt(get("X-Ratelimit-Remaining"), 10, 64); err == nil && n >= 0 {
		rl.remaining, rl.hasRemaining = n, true
	}
	if n, err := strconv.ParseInt(get("X-Ratelimit-Limit"), 10, 64); err == nil && n > 0 {
		rl.limit = n
	}
	if secs, err := strconv.ParseInt(get("X-Ratelimit-Reset"), 10, 64); err == nil && secs > 0 && secs < 1<<40 {
		reset := time.Unix(secs, 0)
		if date, err := http.ParseTime(get("Date")); err == nil {
			reset = now.Add(reset.Sub(date))
		}
		rl.reset, rl.hasReset = reset, true
	}
	if v := get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			rl.retryAfter, rl.hasRetryAfter = time.Duration(min(secs, int64(githubMaxWait/time.Second)))*time.Second, true
		} else if t, err := http.ParseTime(v); err == nil {
			rl.retryAfter, rl.hasRetryAfter = t.Sub(now), true
		}
	}
	rl.reset = clampReset(rl.reset, now)
	return rl
}

func clampReset(t, now time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return now.Add(min(max(t.Sub(now), 0), githubMaxWait))
}

// wait is how long a rate-limited answer asks to wait: retry-after when
// given; else, when the primary limit is spent, until its reset; else
// GitHub's advice for a secondary limit, a minute. At least a second, at
// most githubMaxWait.
func (rl ghRateLimit) wait() time.Duration {
	var w time.Duration
	switch {
	case rl.hasRetryAfter:
		w = rl.retryAfter
	case rl.hasRemaining && rl.remaining == 0 && rl.hasReset:
		return rl.resetWait(githubDefaultSecondaryWait)
	default:
		w = githubDefaultSecondaryWait
	}
	return min(max(w, time.Second), githubMaxWait)
}

// resetWait is the wait until the primary window resets (def when the
// answer names no reset), at least a second.
func (rl ghRateLimit) resetWait(def time.Duration) time.Duration {
	if !rl.hasReset {
		return def
	}
	return min(max(rl.reset.Sub(rl.at), time.Second), githubMaxWait)
}

// parseLinkNext returns the target of rel="next" in a Link header
// (RFC 8288: `<url>; rel="next", <url>; rel="last"`), "" when there is
// none. A header over maxHeaderValue, with more than maxLinks links, or
// whose syntax is broken, is an error.
func parseLinkNext(v string) (string, error) {
	if len(v) > maxHeaderValue {
		return "", fmt.Errorf("Link header is %d bytes, over %d", len(v), maxHeaderValue)
	}
	next := ""
	for n := 0; ; n++ {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			return next, nil
		}
		if n >= maxLinks {
			return "", fmt.Errorf("Link header lists more than %d links", maxLinks)
		}
		if v[0] != '<' {
			return "", fmt.Errorf("Link header: want <, got %q", cutText(v, 20))
		}
		end := strings.IndexByte(v, '>')
		if end < 0 {
			return "", errors.New("Link header: a target has no closing >")
		}
		target := v[1:end]
		v = v[end+1:]
		// The parameters run to the next comma outside quotes.
		params, rest := splitLinkParams(v)
		v = rest
		if linkRelIsNext(params) {
			if next != "" && next != target {
				return "", errors.New("Link header names two different next pages")
			}
			next = target
		}
	}
}

// splitLinkParams splits `; rel="next", <…` at the comma that ends the
// link's parameters (commas inside quotes do not).
func splitLinkParams(v string) (params, rest string) {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return v[:i], v[i+1:]
			}
		}
	}
	return v, ""
}

// linkRelIsNext reports whether a link's parameters have rel naming next
// (rel may list several relation types).
func linkRelIsNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		for _, rel := range strings.Fields(val) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// checkNext makes sure a next page stays where the listing is: an absolute
// URL on the endpoint's scheme and host, whose path is the listing's own
// (/repos/{owner}/{repo}/…) or GitHub's numeric form of it
// (/repositories/{id}/…, what api.github.com puts in its Link headers).
// Anything else would send the token elsewhere.
func (g *github) checkNext(next, first string) (string, error) {
	u, err := url.Parse(next)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("next page %q is not an absolute URL", cutText(next, 200))
	}
	if u.Scheme != g.base.Scheme || !strings.EqualFold(u.Host, g.base.Host) || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("next page %q is not on the endpoint %s", cutText(next, 200), g.endpoint)
	}
	fu, _ := url.Parse(first)
	own := strings.TrimPrefix(fu.EscapedPath(), g.base.EscapedPath())
	suffix := strings.TrimPrefix(own, "/repos/"+g.owner+"/"+g.repo)
	path := strings.TrimPrefix(u.EscapedPath(), g.base.EscapedPath())
	if !strings.HasPrefix(u.EscapedPath(), g.base.EscapedPath()) {
		return "", fmt.Errorf("next page %q is not under the endpoint %s", cutText(next, 200), g.endpoint)
	}
	if strings.EqualFold(path, own) {
		return u.String(), nil
	}
	if rest, ok := strings.CutPrefix(path, "/repositories/"); ok {
		id, tail, _ := strings.Cut(rest, "/")
		if n, err := strconv.ParseUint(id, 10, 63); err == nil && n > 0 && "/"+tail == suffix {
			return u.String(), nil
		}
	}
	return "", fmt.Errorf("next page %q is not a page of %s", cutText(next, 200), cutText(own, 200))
}

// cutText cuts s to n bytes (valid UTF-8) for a message.
func cutText(s string, n int) string { return snippetText(s, n) }
