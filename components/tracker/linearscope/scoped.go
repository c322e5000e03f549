package linearscope

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// maxReportedErrors bounds how many parse or validation errors a refusal
// lists: enough to fix a document, not a way to make the message huge.
const maxReportedErrors = 5

// checkScoped is PolicyScoped: bounds, parse, bounds on the tree, validation
// against Linear's schema, variables, then the operation's own rules.
func checkScoped(doc string, variables map[string]any, own Issue) error {
	if err := checkSizes(doc, variables); err != nil {
		return err
	}
	// gqlparser ends a block string at the last of a run of quotes where
	// the GraphQL specification (and Linear's server) ends it at the first,
	// so a document with """ can read as one thing here and another there.
	// Long text belongs in a variable.
	if strings.Contains(doc, `"""`) {
		return refuse(RuleBlockString, "", `block strings (""") are not accepted: pass long text in a variable`)
	}
	schema, err := loadSchema()
	if err != nil {
		return err
	}
	q, perr := parser.ParseQueryWithTokenLimit(&ast.Source{Name: "query", Input: doc}, MaxTokens)
	if perr != nil {
		return refuse(RuleParseError, "", "the document is not GraphQL: %s", describe(perr))
	}
	if len(q.Operations) != 1 {
		return refuse(RuleOperationCount, "", "the document holds %d operations; send exactly one (there is no operationName)", len(q.Operations))
	}
	if r := newBudget(q).document(q); r != nil {
		return r
	}
	if errs := validator.ValidateWithSources(schema, q, validationRules()...); len(errs) > 0 {
		return refuse(RuleSchemaInvalid, "", "the document does not validate against Linear's schema: %s", describe(errs))
	}
	op := q.Operations[0]
	vars, verr := validator.VariableValues(schema, op, variables)
	if verr != nil {
		return refuse(RuleVariablesInvalid, "", "%s", describe(verr))
	}
	switch op.Operation {
	case ast.Query:
		return nil
	case ast.Mutation:
		return checkMutation(q, op, vars, own)
	}
	return refuse(RuleSubscription, "", "subscriptions are not served by this tool; use a query")
}

// validationRules are GraphQL's validation rules but one: overlapping fields
// can be merged. That rule compares every pair of fields with the same
// response name, recursively, so its cost grows with the square of the
// selections (a quarter of a second for 2,000 aliased fields). The policy does
// not depend on it (every mutation field is checked whatever its alias, and
// two fields answering to one name are both checked), and Linear applies it
// itself: a document it would reject gets Linear's error, not a run.
//
// The list is built once: ValidateWithRules would sort its rule set on every
// call, a quarter of a typical check's time.
var validationRules = sync.OnceValue(func() []validator.Rule {
	r := rules.NewDefaultRules()
	r.RemoveRule(overlappingFieldsRule)
	var list []validator.Rule
	for name, f := range r.GetInner() {
		list = append(list, validator.Rule{Name: name, RuleFunc: f})
	}
	slices.SortFunc(list, func(a, b validator.Rule) int { return strings.Compare(a.Name, b.Name) })
	return list
})

const overlappingFieldsRule = "OverlappingFieldsCanBeMerged"

// describe renders parse and validation errors with their positions, at most
// maxReportedErrors of them.
func describe(err error) string {
	var list []*gqlerror.Error
	switch e := err.(type) {
	case gqlerror.SourceList:
		for _, x := range e {
			g := &gqlerror.Error{Message: x.Message}
			for _, l := range x.Locations {
				g.Locations = append(g.Locations, gqlerror.Location{Line: l.Line, Column: l.Column})
			}
			list = append(list, g)
		}
	case gqlerror.List:
		list = e
	case *gqlerror.Error:
		list = []*gqlerror.Error{e}
	default:
		return err.Error()
	}
	var b strings.Builder
	for i, e := range list {
		if i == maxReportedErrors {
			fmt.Fprintf(&b, "; and %d more", len(list)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Message)
		if len(e.Locations) > 0 {
			fmt.Fprintf(&b, " (line %d, column %d)", e.Locations[0].Line, e.Locations[0].Column)
		}
	}
	return b.String()
}
