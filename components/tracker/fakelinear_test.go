package tracker

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
)

// linearSchema loads Linear's real schema once per test binary.
var linearSchema = sync.OnceValues(func() (*ast.Schema, error) {
	raw, err := os.ReadFile("testdata/linear-schema.graphql")
	if err != nil {
		return nil, err
	}
	s, gerr := gqlparser.LoadSchema(&ast.Source{Name: "linear-schema.graphql", Input: string(raw)})
	if gerr != nil {
		return nil, gerr
	}
	return s, nil
})

// validateDocument checks a document, and when vars is not nil its
// variables, against Linear's schema.
func validateDocument(t testing.TB, doc string, vars map[string]any) {
	t.Helper()
	if err := documentErrors(doc, vars); err != nil {
		t.Errorf("%v\n%s", err, doc)
	}
}

func documentErrors(doc string, vars map[string]any) error {
	schema, err := linearSchema()
	if err != nil {
		return fmt.Errorf("load schema: %w", err)
	}
	q, errs := gqlparser.LoadQuery(schema, doc)
	if len(errs) > 0 {
		return fmt.Errorf("document does not validate against Linear's schema: %v", errs)
	}
	if vars == nil {
		return nil
	}
	for _, op := range q.Operations {
		if _, err := validator.VariableValues(schema, op, vars); err != nil {
			return fmt.Errorf("variables %v do not validate for %s: %v", vars, op.Name, err)
		}
	}
	return nil
}

const testAPIKey = "lin_api_FAKE_KEY_never_logged_1234567890"

// fakeLinear is a GraphQL server that serves issues from memory the way
// Linear does: pages of `first` ordered by creation, cursors, id filters,
// viewer. Every request is validated against the real schema. Faults can be
// injected per request.
type fakeLinear struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	issues []map[string]any
	viewer string
	// inject, when set, may answer a request instead of the normal logic
	// (n counts requests from 1). Return false to fall through.
	inject   func(w http.ResponseWriter, n int, op string) bool
	requests []fakeRequest
}

type fakeRequest struct {
	Op   string
	Vars map[string]any
	// Query and Auth are the document and the Authorization header sent.
	Query, Auth string
}

func newFakeLinear(t testing.TB) *fakeLinear {
	f := &fakeLinear{t: t, viewer: "user-me"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLinear) url() string { return f.srv.URL + "/graphql" }

func (f *fakeLinear) setIssues(issues []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issues = issues
}

func (f *fakeLinear) ops() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeLinear) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != testAPIKey {
		http.Error(w, `{"errors":[{"message":"Authentication required","extensions":{"code":"AUTHENTICATION_ERROR"}}]}`, http.StatusUnauthorized)
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	validateDocument(f.t, req.Query, req.Variables)
	op := "?"
	switch {
	case strings.Contains(req.Query, "query SymphonyViewer"):
		op = "viewer"
	case strings.Contains(req.Query, "query SymphonyIssuesByIDs"):
		op = "byIDs"
	case strings.Contains(req.Query, "query SymphonyIssuesByStates"):
		op = "byStates"
	}
	nested := nestedLists(f.t, req.Query)
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Op: op, Vars: req.Variables, Query: req.Query, Auth: r.Header.Get("Authorization")})
	n := len(f.requests)
	inject := f.inject
	issues := slices.Clone(f.issues)
	f.mu.Unlock()
	if inject != nil && inject(w, n, op) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch op {
	case "viewer":
		fmt.Fprintf(w, `{"data":{"viewer":{"id":%q}}}`, f.viewer)
	case "byIDs":
		var ids []string
		for _, v := range req.Variables["ids"].([]any) {
			ids = append(ids, v.(string))
		}
		var nodes []map[string]any
		for _, iss := range issues {
			if id, _ := iss["id"].(string); slices.Contains(ids, id) {
				nodes = append(nodes, nested.cut(iss))
			}
		}
		writePage(w, nodes, false, "")
	case "byStates":
		var states []string
		for _, v := range req.Variables["states"].([]any) {
			states = append(states, v.(string))
		}
		var match []map[string]any
		for _, iss := range issues {
			st, _ := iss["state"].(map[string]any)
			if name, _ := st["name"].(string); slices.Contains(states, name) {
				match = append(match, nested.cut(iss))
			}
		}
		start := 0
		if after, ok := req.Variables["after"].(string); ok {
			start, _ = strconv.Atoi(strings.TrimPrefix(after, "cursor-"))
		}
		first := int(req.Variables["first"].(float64))
		end := min(start+first, len(match))
		writePage(w, match[start:end], end < len(match), fmt.Sprintf("cursor-%d", end))
	default:
		http.Error(w, "unknown operation", http.StatusBadRequest)
	}
}

// nestedList is how a document asks for one of an issue's lists (labels,
// inverseRelations): the page size, and whether it selects pageInfo.
type nestedList struct {
	first    int
	pageInfo bool
}

type nestedListSet map[string]nestedList

// nestedLists reads, from the document itself, how it asks for the lists
// inside an issue, so that the fake answers as Linear would: the first
// `first` nodes, and pageInfo only when it is selected.
func nestedLists(t testing.TB, doc string) nestedListSet {
	q, err := parser.ParseQuery(&ast.Source{Input: doc})
	if err != nil {
		t.Errorf("parse document: %v", err)
		return nil
	}
	out := nestedListSet{}
	var walk func(ast.SelectionSet)
	walk = func(set ast.SelectionSet) {
		for _, sel := range set {
			field, ok := sel.(*ast.Field)
			if !ok {
				continue
			}
			if field.Name == "labels" || field.Name == "inverseRelations" {
				l := nestedList{}
				if arg := field.Arguments.ForName("first"); arg != nil {
					l.first, _ = strconv.Atoi(arg.Value.Raw)
				}
				for _, sub := range field.SelectionSet {
					if f, ok := sub.(*ast.Field); ok && f.Name == "pageInfo" {
						l.pageInfo = true
					}
				}
				out[field.Name] = l
			}
			walk(field.SelectionSet)
		}
	}
	for _, frag := range q.Fragments {
		walk(frag.SelectionSet)
	}
	for _, op := range q.Operations {
		walk(op.SelectionSet)
	}
	return out
}

// cut returns iss with its lists as the document asked for them.
func (n nestedListSet) cut(iss map[string]any) map[string]any {
	out := maps.Clone(iss)
	for name, l := range n {
		conn, ok := iss[name].(map[string]any)
		if !ok {
			continue
		}
		nodes, _ := conn["nodes"].([]any)
		c := map[string]any{"nodes": nodes}
		if l.first > 0 && len(nodes) > l.first {
			c["nodes"] = nodes[:l.first]
		}
		if l.pageInfo {
			c["pageInfo"] = map[string]any{"hasNextPage": len(nodes) > len(c["nodes"].([]any))}
		}
		out[name] = c
	}
	return out
}

func writePage(w http.ResponseWriter, nodes []map[string]any, next bool, cursor string) {
	if nodes == nil {
		nodes = []map[string]any{}
	}
	page := map[string]any{"data": map[string]any{"issues": map[string]any{
		"nodes":    nodes,
		"pageInfo": map[string]any{"hasNextPage": next, "endCursor": cursor},
	}}}
	_ = json.NewEncoder(w).Encode(page)
}

// linearIssue builds an issue node as Linear returns it.
func linearIssue(n int, state string) map[string]any {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)
	return map[string]any{
		"id":               fmt.Sprintf("uuid-%03d", n),
		"identifier":       fmt.Sprintf("SYM-%d", n),
		"title":            fmt.Sprintf("Issue %d", n),
		"description":      "Do the thing",
		"priority":         float64(n%5) * 1.0,
		"branchName":       fmt.Sprintf("sym-%d", n),
		"url":              fmt.Sprintf("https://linear.app/x/issue/SYM-%d", n),
		"createdAt":        created.Format(time.RFC3339Nano),
		"updatedAt":        created.Add(time.Hour).Format(time.RFC3339Nano),
		"state":            map[string]any{"name": state},
		"assignee":         map[string]any{"id": "user-me"},
		"labels":           map[string]any{"nodes": []any{}},
		"inverseRelations": map[string]any{"nodes": []any{}},
	}
}
