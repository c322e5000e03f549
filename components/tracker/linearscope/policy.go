package linearscope

import (
	"errors"
	"fmt"
	"strings"
)

// Policy is how far the linear_graphql tool may reach. WORKFLOW.md chooses it
// (tracker.tools.linear_graphql, spelt as bus.LinearGraphQL*); the adapter is
// rebuilt with it on reload, and fixing it per run at dispatch is a later
// step.
type Policy string

const (
	// PolicyScoped (the default) allows queries, and mutations from an
	// allow-list that target only the run's own issue.
	PolicyScoped Policy = "scoped"
	// PolicyAny is the reference implementation's behaviour: any non-empty
	// document within the size bounds goes to Linear unchecked.
	PolicyAny Policy = "any"
	// PolicyOff disables the tool: every call is refused.
	PolicyOff Policy = "off"
)

// ParsePolicy reads a policy as WORKFLOW.md spells it; empty means the
// default, PolicyScoped.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.TrimSpace(s)); p {
	case "":
		return PolicyScoped, nil
	case PolicyScoped, PolicyAny, PolicyOff:
		return p, nil
	}
	return "", fmt.Errorf("linear_graphql policy %q: want %s, %s or %s", s, PolicyScoped, PolicyAny, PolicyOff)
}

// Issue is the run's own issue: Linear's UUID and the human identifier
// (ABC-123). Linear accepts either wherever a mutation names an issue, so a
// target matches if it is either one.
type Issue struct {
	ID         string
	Identifier string
}

// owns reports whether target names the issue. The identifier is compared
// without case (Linear's team keys are upper case; a lower-case spelling can
// only name the same issue); the UUID exactly. An empty target names nothing.
func (i Issue) owns(target string) bool {
	if target == "" {
		return false
	}
	return target == i.ID || (i.Identifier != "" && strings.EqualFold(target, i.Identifier))
}

// Bounds on what a check reads. A document within them is checked in well
// under a millisecond to a few milliseconds; see BenchmarkCheck.
const (
	// MaxDocumentBytes bounds the GraphQL document.
	MaxDocumentBytes = 64 << 10
	// MaxVariablesBytes bounds the variables, counted as their JSON encoding
	// (escapes aside).
	MaxVariablesBytes = 64 << 10
	// MaxTokens bounds the lexer's tokens, so parsing stops early on a
	// document made of punctuation.
	MaxTokens = 16_000
	// MaxDepth bounds the nesting of fields in any operation or fragment.
	MaxDepth = 16
	// MaxSelections bounds the selections (fields, spreads, inline
	// fragments) visited with fragment spreads expanded, which is the work
	// the validator and Linear would do.
	MaxSelections = 2_000
	// maxVariableNesting bounds the nesting of variable values.
	maxVariableNesting = 32
)

// Rules a refusal can name. The names are stable: they appear in run events
// and in the failure result the agent reads.
const (
	RuleToolDisabled         = "tool_disabled"
	RuleEmptyDocument        = "empty_document"
	RuleDocumentTooLarge     = "document_too_large"
	RuleVariablesTooLarge    = "variables_too_large"
	RuleVariablesInvalid     = "variables_invalid"
	RuleParseError           = "parse_error"
	RuleBlockString          = "block_string"
	RuleSchemaInvalid        = "schema_validation"
	RuleTooDeep              = "too_deep"
	RuleTooManySelections    = "too_many_selections"
	RuleOperationCount       = "one_operation"
	RuleSubscription         = "subscription_not_allowed"
	RuleMutationNotAllowed   = "mutation_not_allowed"
	RuleArgumentNotAllowed   = "argument_not_allowed"
	RuleInputFieldNotAllowed = "input_field_not_allowed"
	RuleTargetUnresolved     = "target_unresolved"
	RuleTargetNotOwnIssue    = "target_not_own_issue"
)

// Refusal is why a document may not run. Rule names the rule broken, Field the
// mutation field (by its schema name, whatever its alias) when there is one,
// Detail the specifics. Its message is written for the agent: what was
// refused, and what is allowed instead.
type Refusal struct {
	Rule   string
	Field  string
	Detail string
}

func (r *Refusal) Error() string {
	var b strings.Builder
	b.WriteString("linear_graphql refused (")
	b.WriteString(r.Rule)
	b.WriteString(")")
	if r.Field != "" {
		b.WriteString(" on ")
		b.WriteString(r.Field)
	}
	if r.Detail != "" {
		b.WriteString(": ")
		b.WriteString(r.Detail)
	}
	return b.String()
}

func refuse(rule, field, format string, args ...any) *Refusal {
	return &Refusal{Rule: rule, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// IsRefusal reports whether err is (or wraps) a Refusal, and returns it.
func IsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// Check decides whether doc, with variables, may run for the run whose issue
// is own, under policy p. It returns nil when it may, a *Refusal when the
// policy forbids it, and another error only when the embedded schema cannot
// be loaded (a build defect). An unknown policy is refused as PolicyOff: the
// check fails closed.
func Check(p Policy, doc string, variables map[string]any, own Issue) error {
	switch p {
	case PolicyAny:
		return checkSizes(doc, variables)
	case PolicyScoped:
		return checkScoped(doc, variables, own)
	case PolicyOff:
		return refuse(RuleToolDisabled, "", "the workflow turned the linear_graphql tool off (tracker.tools.linear_graphql: off)")
	}
	return refuse(RuleToolDisabled, "", "unknown policy %q", string(p))
}

// checkSizes is what every enabled policy checks first.
func checkSizes(doc string, variables map[string]any) error {
	if strings.TrimSpace(doc) == "" {
		return refuse(RuleEmptyDocument, "", "query must be a non-empty GraphQL document")
	}
	if len(doc) > MaxDocumentBytes {
		return refuse(RuleDocumentTooLarge, "", "the document is %d bytes; at most %d", len(doc), MaxDocumentBytes)
	}
	return checkVariablesSize(variables)
}
