package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/tracker/linearscope"
)

// linear_graphql is the reference's Linear tool (openai/symphony SPEC.md
// §10.5): one GraphQL operation, sent host-side with the adapter's key and
// HTTP client, so its timeout, redirect refusal and rate-limit state are
// the poller's. GraphQL errors are a failure result that keeps the
// response; a transport failure is a failure result with its class.

// linearGraphQLSchema is the reference's input schema.
var linearGraphQLSchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["query"],"properties":{` +
	`"query":{"type":"string","minLength":1,"description":"One GraphQL query or mutation document (exactly one operation)."},` +
	`"variables":{"type":"object","additionalProperties":true,"description":"GraphQL variables for the operation."}}}`)

// scopeCheck decides whether linear_graphql may send doc with vars for a
// run whose own issue is own. nil allows; an error refuses, says why, and
// names the rule (a *linearscope.Refusal, or an error with a Rule() string
// method). The adapter's default is scoped: linearscope's policy against
// Linear's schema (queries; an allowed list of mutations, only on the run's
// own issue).
type scopeCheck func(doc string, vars map[string]any, own bus.IssueRef) error

// scopeOf is the scope of policy p: linearscope's check of the document,
// the variables and the run's own issue.
func scopeOf(p linearscope.Policy) scopeCheck {
	return func(doc string, vars map[string]any, own bus.IssueRef) error {
		return linearscope.Check(p, doc, vars, linearscope.Issue{ID: own.ID, Identifier: own.Identifier})
	}
}

// ruleOf names the rule a scope refusal broke ("scope" when it names none).
func ruleOf(err error) string {
	var ref *linearscope.Refusal
	if errors.As(err, &ref) && ref.Rule != "" {
		return ref.Rule
	}
	var r interface{ Rule() string }
	if errors.As(err, &r) {
		return r.Rule()
	}
	return "scope"
}

// tools implements adapter.
func (l *linear) tools() []tool {
	return []tool{{
		spec: bus.ToolSpec{Name: "linear_graphql", Mutates: l.policy != linearscope.PolicyOff, InputSchema: linearGraphQLSchema,
			Description: "Execute one Linear GraphQL query or mutation with Symphony's Linear credential (you never need the key). " +
				`Input: {"query": string, "variables"?: object}. The response (data and errors) comes back as JSON; GraphQL errors make the call fail but keep the response. ` +
				policyHint(l.policy)},
		call: l.graphqlTool,
	}}
}

// policyHint tells the agent what the policy in force lets it do.
func policyHint(p linearscope.Policy) string {
	switch p {
	case linearscope.PolicyOff:
		return "The operator has turned this tool off: every call is refused (rule tool_disabled)."
	case linearscope.PolicyAny:
		return "The operator allows any query or mutation."
	default:
		return "Queries are allowed; mutations only from an allowed list (issueUpdate, commentCreate, attachment links) and only on your own issue. A refused call names the rule that refused it."
	}
}

// graphqlTool is linear_graphql.
func (l *linear) graphqlTool(ctx context.Context, run toolRun, args json.RawMessage) bus.ToolResult {
	var query string
	var varsRaw json.RawMessage
	if err := decodeArgs(args, argField{"query", true, &query}, argField{"variables", false, &varsRaw}); err != nil {
		return failed(bus.ToolBadArguments, err.Error())
	}
	vars := map[string]any{}
	if len(varsRaw) > 0 {
		var te *json.UnmarshalTypeError
		if err := json.Unmarshal(varsRaw, &vars); errors.As(err, &te) {
			return failed(bus.ToolBadArguments, fmt.Sprintf(`field "variables": want an object, got a JSON %s`, te.Value))
		} else if err != nil {
			return failed(bus.ToolBadArguments, `field "variables": `+err.Error())
		}
	} else {
		varsRaw = json.RawMessage("{}")
	}
	if strings.TrimSpace(query) == "" {
		return failed(bus.ToolBadArguments, `field "query" is empty`)
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, linearscope.MaxTokens)
	if err != nil {
		return failed(bus.ToolBadArguments, "query is not a GraphQL document: "+err.Error())
	}
	if len(doc.Operations) != 1 {
		return failed(bus.ToolBadArguments, fmt.Sprintf("query must hold exactly one operation, it has %d (fragments are fine)", len(doc.Operations)))
	}
	scope := l.scope
	if scope == nil {
		scope = scopeOf(linearscope.PolicyScoped)
	}
	if err := scope(query, vars, run.issue); err != nil {
		return refused(ruleOf(err), scrub(err.Error(), l.apiKey))
	}
	// What is sent is what was checked: the document printed back from
	// the tree the parser made of it (so no difference between this parser
	// and Linear's can make the two read it differently), and the
	// variables re-encoded from the values the scope checked.
	var printed bytes.Buffer
	formatter.NewFormatter(&printed).FormatQueryDocument(doc)
	body, err := json.Marshal(struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}{printed.String(), vars})
	if err != nil {
		return failed(bus.ToolBadArguments, "encode the request: "+err.Error())
	}
	raw, h, err := l.post(ctx, body)
	res := l.graphqlResult(raw, h, err)
	res.RateLimit = rateLimitOf(h, res.RateLimit, l.apiKey)
	return res
}

// graphqlResult reads post's outcome as a tool result, with the key
// removed from everything it says.
func (l *linear) graphqlResult(raw []byte, h http.Header, err error) bus.ToolResult {
	if err != nil {
		class, retry := classOf(err)
		res := failed(class, l.redact(err).Error())
		if class == bus.TrackerRateLimited {
			res.RateLimit = &bus.ToolRateLimit{Limited: true, RetryAfterMS: retry.Milliseconds()}
		}
		return res
	}
	raw = scrubJSON(raw, l.apiKey)
	var env gqlResponse
	if err := json.Unmarshal(raw, &env); err != nil {
		return failed(bus.TrackerMalformed, "Linear's response is not JSON: "+snippet(raw, l.apiKey))
	}
	if len(env.Errors) == 0 {
		return bus.ToolResult{OK: true, Output: raw}
	}
	msgs := make([]string, 0, len(env.Errors))
	for _, e := range env.Errors {
		if strings.EqualFold(e.Extensions.Code, "RATELIMITED") || strings.EqualFold(e.Extensions.Type, "ratelimited") {
			class, retry := classOf(l.rateLimited(h, "RATELIMITED"))
			return bus.ToolResult{Class: class, Output: raw, Error: "Linear rate limit (RATELIMITED); the tracker waits before asking again",
				RateLimit: &bus.ToolRateLimit{Limited: true, RetryAfterMS: retry.Milliseconds()}}
		}
		msgs = append(msgs, e.Message)
	}
	return bus.ToolResult{Class: bus.TrackerGraphQLError, Output: raw, Error: scrub(snippetText("Linear returned errors: "+strings.Join(msgs, "; "), 2000), l.apiKey)}
}

// snippetText cuts s to n bytes (valid UTF-8).
func snippetText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// rateLimitOf adds the provider's rate-limit headers to rl (nil when there
// are none and rl is nil), secret scrubbed from each value (a hostile or
// broken server may echo the request's Authorization).
func rateLimitOf(h http.Header, rl *bus.ToolRateLimit, secret string) *bus.ToolRateLimit {
	keys := make([]string, 0, 8)
	for k := range h {
		if strings.HasPrefix(k, "X-Ratelimit-") || k == "X-Complexity" || k == "Retry-After" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return rl
	}
	if rl == nil {
		rl = &bus.ToolRateLimit{}
	}
	slices.Sort(keys)
	rl.Headers = map[string]string{}
	for _, k := range keys[:min(len(keys), 16)] {
		rl.Headers[k] = snippetText(scrub(h.Get(k), secret), 100)
	}
	return rl
}
