package tracker

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/symphony-oss/symphony/bus"
)

// The scope of github_api (tracker.tools.github_api), beyond the
// reference, which sends any request the token allows:
//
//   - scoped (the default): reads (GET) of the configured repository,
//     anything under /repos/{owner}/{repo}; writes only on the run's own
//     issue — a comment (POST …/issues/{n}/comments, body), an edit of
//     its title, body, state, state_reason, labels or assignees (PATCH
//     …/issues/{n}), its labels (POST, PUT, DELETE …/issues/{n}/labels,
//     DELETE …/labels/{name}) and its assignees (POST, DELETE
//     …/issues/{n}/assignees); a write takes no query parameters.
//   - any: the reference's behaviour, any method on any path of the
//     endpoint (only the syntax and size checked).
//   - off: every call refused, reads too (rule tool_disabled).
//
// A refusal names its rule; nothing refused is sent.

// ghToolCall is one github_api call, checked and ready to send.
type ghToolCall struct {
	method string
	// segs are the path's segments, unescaped.
	segs   []string
	params url.Values
	// body is the request body re-encoded from the checked value (nil
	// for none); fields are its top-level keys when it is an object.
	body   []byte
	fields []string
}

// Bounds of a github_api call.
const (
	ghToolMaxPath   = 2048
	ghToolMaxParams = 64
)

var ghToolMethods = []string{"GET", "POST", "PATCH", "PUT", "DELETE"}

// ghRefusal is a call the scope refused, with the rule it broke.
type ghRefusal struct {
	rule, msg string
}

func (r *ghRefusal) Error() string { return r.msg }

// Rule names the rule (see ruleOf).
func (r *ghRefusal) Rule() string { return r.rule }

// parseToolPath splits a REST path ("/repos/o/r/issues/1") into its
// unescaped segments. It must start with '/', hold no scheme, query,
// fragment, backslash or control character, and no segment may be empty,
// "." or "..", or hold an escaped '/'.
func parseToolPath(p string) ([]string, error) {
	p = strings.TrimSpace(p)
	switch {
	case len(p) > ghToolMaxPath:
		return nil, fmt.Errorf("path is %d bytes, over %d", len(p), ghToolMaxPath)
	case !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//"):
		return nil, fmt.Errorf("path must be a REST path starting with one /, like /repos/OWNER/REPO/issues/1, got %.100q", p)
	case strings.ContainsAny(p, "?#\\") || strings.Contains(p, "://"):
		return nil, fmt.Errorf("path %.100q holds a query, fragment, backslash or URL: give query parameters in params", p)
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return nil, fmt.Errorf("path holds a control character")
	}
	raw := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	segs := make([]string, 0, len(raw))
	for _, r := range raw {
		s, err := url.PathUnescape(r)
		if err != nil || s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\") || strings.IndexFunc(s, unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("path segment %.100q is not allowed (empty, dot, an escaped slash or a control character)", r)
		}
		segs = append(segs, s)
	}
	return segs, nil
}

// toolParams turns params (a JSON object of strings, numbers, booleans,
// or lists of them, which GitHub takes comma-separated) into a query.
func toolParams(raw json.RawMessage) (url.Values, error) {
	q := url.Values{}
	if len(raw) == 0 || string(raw) == "null" {
		return q, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf(`field "params": want an object of query parameters`)
	}
	if len(m) > ghToolMaxParams {
		return nil, fmt.Errorf(`field "params": %d parameters, over %d`, len(m), ghToolMaxParams)
	}
	for k, v := range m {
		s, err := paramValue(v)
		if err != nil {
			return nil, fmt.Errorf(`field "params": %.100q: %v`, k, err)
		}
		q.Set(k, s)
	}
	return q, nil
}

func paramValue(v json.RawMessage) (string, error) {
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, e := range list {
			s, err := scalar(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return scalar(v)
}

func scalar(v json.RawMessage) (string, error) {
	var x any
	dec := json.NewDecoder(strings.NewReader(string(v)))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return "", err
	}
	switch s := x.(type) {
	case string:
		return s, nil
	case json.Number:
		return s.String(), nil
	case bool:
		return fmt.Sprint(s), nil
	}
	return "", fmt.Errorf("want a string, number, boolean or a list of them")
}

// ghWrite is one write the scoped policy allows on the run's own issue:
// the method, the segments after issues/{n}, and the body fields allowed
// (nil: any body).
type ghWrite struct {
	method string
	sub    []string
	fields []string
}

var ghAllowedWrites = []ghWrite{
	{"PATCH", nil, []string{"title", "body", "state", "state_reason", "labels", "assignees"}},
	{"POST", []string{"comments"}, []string{"body"}},
	{"POST", []string{"labels"}, nil},
	{"PUT", []string{"labels"}, nil},
	{"DELETE", []string{"labels"}, nil},
	{"DELETE", []string{"labels", "*"}, nil},
	{"POST", []string{"assignees"}, nil},
	{"DELETE", []string{"assignees"}, nil},
}

// checkScope applies the policy to a call for the run whose own issue is
// own (its id is the issue number).
func (g *github) checkScope(c ghToolCall, own bus.IssueRef) error {
	switch g.toolPolicy {
	case bus.LinearGraphQLOff:
		return &ghRefusal{"tool_disabled", "the operator has turned github_api off (tracker.tools.github_api: off)"}
	case bus.LinearGraphQLAny:
		return nil
	}
	s := c.segs
	if len(s) < 3 || s[0] != "repos" || !strings.EqualFold(s[1], g.owner) || !strings.EqualFold(s[2], g.repo) {
		return &ghRefusal{"outside_repository", fmt.Sprintf("only paths under /repos/%s/%s are allowed", g.owner, g.repo)}
	}
	if c.method == "GET" {
		return nil
	}
	if len(c.params) > 0 {
		// GitHub may take a query parameter as a field of the write,
		// one the body check never saw; no allowed write needs one.
		return &ghRefusal{"params_not_allowed", "a write takes no query parameters (params); give its fields in body"}
	}
	rest := s[3:]
	if len(rest) < 2 || rest[0] != "issues" {
		return &ghRefusal{"write_not_allowed", "writes are allowed only on your own issue (/repos/OWNER/REPO/issues/" + own.ID + "…)"}
	}
	if !isNumber(rest[1]) {
		return &ghRefusal{"write_not_allowed", "writes are allowed only on your own issue (/repos/OWNER/REPO/issues/" + own.ID + "…)"}
	}
	if rest[1] != own.ID {
		return &ghRefusal{"target_not_own_issue", fmt.Sprintf("writes are allowed only on your own issue, #%s", own.ID)}
	}
	sub := rest[2:]
	i := slices.IndexFunc(ghAllowedWrites, func(w ghWrite) bool {
		if w.method != c.method || len(w.sub) != len(sub) {
			return false
		}
		for j := range sub {
			if w.sub[j] != "*" && w.sub[j] != sub[j] {
				return false
			}
		}
		return true
	})
	if i < 0 {
		return &ghRefusal{"write_not_allowed", fmt.Sprintf("%s %s is not an allowed write on your issue (comments, labels, assignees, and PATCH of title, body, state, state_reason, labels, assignees)", c.method, "/"+strings.Join(s, "/"))}
	}
	if allowed := ghAllowedWrites[i].fields; allowed != nil {
		for _, f := range c.fields {
			if !slices.Contains(allowed, f) {
				return &ghRefusal{"body_field_not_allowed", fmt.Sprintf("body field %.100q is not allowed here (allowed: %s)", f, strings.Join(allowed, ", "))}
			}
		}
	}
	return nil
}

// isNumber reports whether s is a decimal number (an issue number).
func isNumber(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
