package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// github_api is the reference's GitHub tool (openai/symphony's
// github/agent_tool.ex, same name and input schema): one REST request,
// sent host-side with the adapter's token, client, headers and rate-limit
// gate, within the scope of tracker.tools.github_api (github_scope.go).
// The answer comes back as {"status": …, "body": …}; a non-2xx answer is
// a failure result that keeps it; the token is scrubbed from everything
// returned.

// githubAPISchema is the reference's input schema.
var githubAPISchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["method","path"],"properties":{` +
	`"method":{"type":"string","enum":["GET","POST","PATCH","PUT","DELETE"],"description":"GitHub REST method."},` +
	`"path":{"type":"string","description":"GitHub REST path such as /repos/owner/repo/issues/1/comments."},` +
	`"params":{"type":["object","null"],"description":"Optional query parameters.","additionalProperties":true},` +
	`"body":{"description":"Optional JSON request body."}}}`)

// tools implements adapter.
func (g *github) tools() []tool {
	return []tool{{
		spec: bus.ToolSpec{Name: "github_api", Mutates: g.toolPolicy != bus.LinearGraphQLOff, InputSchema: githubAPISchema,
			Description: "Execute one GitHub REST API request with Symphony's GitHub credential (you never need the token). " +
				`Input: {"method": "GET"|"POST"|"PATCH"|"PUT"|"DELETE", "path": "/repos/OWNER/REPO/…", "params"?: object, "body"?: any}. ` +
				fmt.Sprintf("The repository is %s/%s. ", g.owner, g.repo) +
				`The answer comes back as {"status": number, "body": JSON}; a non-2xx status makes the call fail but keeps the answer. ` +
				fmt.Sprintf("Calls are held back (rate_limited) while the token's quota is under the reserve kept for polling, and a run makes at most %d writes a minute. ", githubRunWritesPerMinute) +
				g.policyHint()},
		call: g.apiTool,
	}}
}

// policyHint tells the agent what the policy in force lets it do.
func (g *github) policyHint() string {
	switch g.toolPolicy {
	case bus.LinearGraphQLOff:
		return "The operator has turned this tool off: every call is refused (rule tool_disabled)."
	case bus.LinearGraphQLAny:
		return "The operator allows any request the token allows."
	}
	return "Reads (GET) of this repository are allowed; writes only on your own issue: comments (POST …/issues/N/comments), " +
		"PATCH …/issues/N (title, body, state, state_reason, labels, assignees), its labels and assignees; a write takes no params. A refused call names the rule that refused it."
}

// apiTool is github_api.
func (g *github) apiTool(ctx context.Context, run toolRun, args json.RawMessage) bus.ToolResult {
	if err := g.ownsIssue(run.issue); err != nil {
		return refused(ruleOf(err), err.Error())
	}
	c, bad := parseGitHubCall(args)
	if bad != nil {
		return *bad
	}
	if err := g.checkScope(c, run.issue); err != nil {
		return refused(ruleOf(err), scrub(err.Error(), g.apiKey))
	}
	if res := g.toolQuota(run.id, c.method); res != nil {
		return *res
	}
	u, err := endpointURL(g.base, c.segs...)
	if err != nil {
		return failed(bus.ToolBadArguments, err.Error())
	}
	u.RawQuery = c.params.Encode()
	status, h, raw, err := g.send(ctx, c.method, u.String(), c.body)
	if err != nil {
		class, retry := classOf(err)
		res := failed(class, g.redact(err).Error())
		if class == bus.TrackerRateLimited {
			res.RateLimit = &bus.ToolRateLimit{Limited: true, RetryAfterMS: retry.Milliseconds()}
		}
		res.RateLimit = rateLimitOf(h, res.RateLimit, g.apiKey)
		return res
	}
	raw = scrubJSON(raw, g.apiKey)
	body := json.RawMessage("null")
	if len(bytes.TrimSpace(raw)) > 0 {
		if json.Valid(raw) {
			body = raw
		} else {
			body, _ = json.Marshal(string(bytes.ToValidUTF8(raw, []byte("\uFFFD"))))
		}
	}
	out, _ := json.Marshal(struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
	}{status, body})
	res := bus.ToolResult{OK: true, Output: out}
	if status < 200 || status > 299 {
		res = bus.ToolResult{Class: bus.TrackerStatusError, Output: out,
			Error: scrub(fmt.Sprintf("GitHub answered HTTP %d: %s", status, snippet(raw, g.apiKey)), g.apiKey)}
	}
	res.RateLimit = rateLimitOf(h, nil, g.apiKey)
	return res
}

// ownsIssue refuses a session whose run's issue is not this adapter's
// repository's: its identifier must be the repository's prefix, "-" and
// the issue number (its id). A session pins the adapter in force when the
// run's tools opened, which, after a reload to another repository, is
// not the repository the issue was dispatched from; the scope compares
// bare numbers, so that issue's number here names another issue.
func (g *github) ownsIssue(own bus.IssueRef) error {
	if isNumber(own.ID) && own.Identifier == g.prefix+"-"+own.ID {
		return nil
	}
	return &ghRefusal{"issue_not_in_repository", fmt.Sprintf("this run's issue %.100q is not an issue of %s/%s (the tracker now reads another repository); github_api is off for this run",
		own.Identifier, g.owner, g.repo)}
}

// parseGitHubCall decodes and checks the arguments; a non-nil result is
// the failure to return.
func parseGitHubCall(args json.RawMessage) (ghToolCall, *bus.ToolResult) {
	var method, path string
	var params, body json.RawMessage
	bad := func(msg string) (ghToolCall, *bus.ToolResult) {
		r := failed(bus.ToolBadArguments, msg)
		return ghToolCall{}, &r
	}
	if err := decodeArgs(args, argField{"method", true, &method}, argField{"path", true, &path},
		argField{"params", false, &params}, argField{"body", false, &body}); err != nil {
		return bad(err.Error())
	}
	c := ghToolCall{method: strings.ToUpper(strings.TrimSpace(method))}
	if !slices.Contains(ghToolMethods, c.method) {
		return bad(fmt.Sprintf(`field "method": want one of %s, got %.20q`, strings.Join(ghToolMethods, ", "), method))
	}
	segs, err := parseToolPath(path)
	if err != nil {
		return bad(`field "path": ` + err.Error())
	}
	c.segs = segs
	if c.params, err = toolParams(params); err != nil {
		return bad(err.Error())
	}
	if len(body) > 0 && string(body) != "null" {
		if c.method == "GET" {
			return bad(`field "body": a GET takes no body (give query parameters in params)`)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return bad(`field "body": ` + err.Error())
		}
		// What is sent is what was checked: the body re-encoded from the
		// decoded value, whose top-level keys the scope saw.
		c.body, _ = json.Marshal(v)
		if m, ok := v.(map[string]any); ok {
			for k := range m {
				c.fields = append(c.fields, k)
			}
			slices.Sort(c.fields)
		}
	}
	return c, nil
}

// send sends one request of the tool through the adapter's gate and
// client with GitHub's headers, and returns any answer's status, headers
// and body (at most MaxResponseBytes). A rate limit the answer reports is
// recorded for every adapter on the token and returned as rate_limited.
func (g *github) send(ctx context.Context, method, u string, body []byte) (int, http.Header, []byte, error) {
	if wait := g.gate.wait(g.now()); wait > 0 {
		return 0, nil, nil, &Error{Class: bus.TrackerRateLimited, Message: "GitHub rate limit in effect", RetryAfter: wait}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, errorf(bus.ToolBadArguments, "cannot build the request: %v", err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("User-Agent", githubUserAgent)
	req.Header.Set("Authorization", "Bearer "+g.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.httpc.Do(req)
	if err != nil {
		return 0, nil, nil, &Error{Class: bus.TrackerRequestError, Message: "request to GitHub failed: " + err.Error(), Err: err}
	}
	defer resp.Body.Close()
	g.observe(resp.Header)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, resp.Header, nil, &Error{Class: bus.TrackerRequestError, Message: "reading GitHub's response failed: " + err.Error(), Err: err}
	}
	if len(raw) > MaxResponseBytes {
		return 0, resp.Header, nil, errorf(bus.TrackerMalformed, "GitHub's response is larger than %d bytes", MaxResponseBytes)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusForbidden {
		if err := g.statusError(resp.StatusCode, resp.Header, raw); classIs(err, bus.TrackerRateLimited) {
			return 0, resp.Header, nil, err
		}
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		g.secondary.Store(0)
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// classIs reports whether err has the class.
func classIs(err error, class string) bool {
	c, _ := classOf(err)
	return err != nil && c == class
}
