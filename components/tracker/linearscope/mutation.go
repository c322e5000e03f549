package linearscope

import (
	"maps"
	"slices"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
)

// mutationRule is one allowed mutation: the arguments it may be given, where
// its target issue is, and, when it takes an input object, the fields that
// input may set. Everything not listed is refused: an allow-list keeps a new
// field in Linear's schema closed until someone reads it.
type mutationRule struct {
	args []string
	// target is the argument naming the issue: "id", "issueId", or
	// "input.issueId" for a field of the input object.
	target string
	// input lists the fields the "input" argument may set; nil when the
	// mutation takes no input object.
	input []string
}

// allowed returns the allow-list of PolicyScoped, keyed by the mutation's
// schema name. A function, not a package variable, so nothing can change it.
//
//   - issueUpdate: the fields that describe or move the issue within its team's
//     workflow. Refused: parentId (reaches another issue), teamId, projectId,
//     cycleId, projectMilestoneId (move it elsewhere), subscriberIds,
//     delegateId (involve others), trashed (deletion by another name),
//     release and sort-order fields, and the [Internal] ones.
//   - commentCreate: a markdown body on the issue. Refused: parentId (a
//     comment of any issue's thread), the project, initiative, post and
//     document targets, createAsUser/displayIconUrl, createdAt, bodyData,
//     createOnSyncedSlackThread (posts to Slack), subscriberIds.
//   - attachmentCreate and the code-host links (URL, GitHub PR and issue,
//     GitLab MR): link work to the issue. The customer-support and chat links
//     (Zendesk, Intercom, Front, Jira, Salesforce, Slack, Discord) are left
//     out: they start syncing with outside systems.
func allowed() map[string]mutationRule {
	// The attachmentLink* mutations may name the issue, the URL and a
	// title. Left out: createAsUser and displayIconUrl (posing as someone
	// else), id (choosing the attachment's id).
	linkArgs := []string{"issueId", "url", "title"}
	return map[string]mutationRule{
		"issueUpdate": {args: []string{"id", "input"}, target: "id", input: []string{
			"title", "description", "stateId", "priority", "estimate", "dueDate",
			"assigneeId", "labelIds", "addedLabelIds", "removedLabelIds",
		}},
		"commentCreate": {args: []string{"input"}, target: "input.issueId", input: []string{
			"issueId", "body", "doNotSubscribeToIssue",
		}},
		"attachmentCreate": {args: []string{"input"}, target: "input.issueId", input: []string{
			"issueId", "title", "subtitle", "url", "iconUrl", "metadata", "commentBody", "groupBySource",
		}},
		"attachmentLinkURL":         {args: linkArgs, target: "issueId"},
		"attachmentLinkGitHubPR":    {args: linkArgs, target: "issueId"},
		"attachmentLinkGitHubIssue": {args: linkArgs, target: "issueId"},
		"attachmentLinkGitLabMR":    {args: append(slices.Clip(linkArgs), "number", "projectPathWithNamespace"), target: "issueId"},
	}
}

// AllowedMutations lists the mutations PolicyScoped allows, sorted, for
// `symphony validate` and the docs.
func AllowedMutations() []string {
	return slices.Sorted(maps.Keys(allowed()))
}

// checkMutation applies the allow-list to every root field of the mutation,
// found by schema name through aliases, inline fragments and fragment spreads.
// A field under @skip or @include is checked all the same.
func checkMutation(doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any, own Issue) error {
	list := allowed()
	for _, f := range rootFields(doc, op.SelectionSet, map[string]bool{}, nil) {
		rule, ok := list[f.Name]
		if !ok {
			return refuse(RuleMutationNotAllowed, f.Name,
				"this policy allows only %s, each on this run's own issue", strings.Join(AllowedMutations(), ", "))
		}
		if err := checkField(f, rule, vars, own); err != nil {
			return err
		}
	}
	return nil
}

// rootFields collects the fields of a root selection set, descending into
// inline fragments and (once each) fragment spreads.
func rootFields(doc *ast.QueryDocument, set ast.SelectionSet, seen map[string]bool, out []*ast.Field) []*ast.Field {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			out = append(out, s)
		case *ast.InlineFragment:
			out = rootFields(doc, s.SelectionSet, seen, out)
		case *ast.FragmentSpread:
			if seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			if f := doc.Fragments.ForName(s.Name); f != nil {
				out = rootFields(doc, f.SelectionSet, seen, out)
			}
		}
	}
	return out
}

// checkField checks one allowed mutation: its arguments, its input fields,
// and that its target resolves to the run's own issue.
func checkField(f *ast.Field, rule mutationRule, vars map[string]any, own Issue) error {
	for _, a := range f.Arguments {
		if !slices.Contains(rule.args, a.Name) {
			return refuse(RuleArgumentNotAllowed, f.Name, "argument %q is not allowed; allowed: %s", a.Name, strings.Join(rule.args, ", "))
		}
	}
	var input map[string]any
	if rule.input != nil {
		in, ok := resolve(argument(f, "input"), vars)
		m, isMap := in.(map[string]any)
		if !ok || !isMap {
			return refuse(RuleTargetUnresolved, f.Name, "input must be an object given in the document or in variables")
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(rule.input, k) {
				return refuse(RuleInputFieldNotAllowed, f.Name, "input field %q is not allowed; allowed: %s", k, strings.Join(rule.input, ", "))
			}
		}
		input = m
	}
	var target any
	var ok bool
	if name, inInput := strings.CutPrefix(rule.target, "input."); inInput {
		target, ok = input[name]
	} else {
		target, ok = resolve(argument(f, rule.target), vars)
	}
	s, isString := target.(string)
	if !ok || !isString || s == "" {
		return refuse(RuleTargetUnresolved, f.Name,
			"%s must name this run's issue (%s) in the document or a given variable", rule.target, own.label())
	}
	if !own.owns(s) {
		return refuse(RuleTargetNotOwnIssue, f.Name, "%s is %q; this run may change only its own issue, %s", rule.target, s, own.label())
	}
	return nil
}

// label names the issue for a refusal's message.
func (i Issue) label() string {
	switch {
	case i.Identifier != "" && i.ID != "":
		return i.Identifier + " (id " + i.ID + ")"
	case i.Identifier != "":
		return i.Identifier
	}
	return i.ID
}

func argument(f *ast.Field, name string) *ast.Value {
	if a := f.Arguments.ForName(name); a != nil {
		return a.Value
	}
	return nil
}

// resolve turns a value of the document into Go values, reading variables
// from vars (already coerced by the validator, defaults applied). It reports
// false when the value or a variable it uses is absent. Lists and objects are
// resolved element by element; an object field whose variable is absent is
// kept with a nil value so the allow-list still sees its name.
func resolve(v *ast.Value, vars map[string]any) (any, bool) {
	if v == nil {
		return nil, false
	}
	switch v.Kind {
	case ast.Variable:
		x, ok := vars[v.Raw]
		return x, ok
	case ast.NullValue:
		return nil, true
	case ast.ListValue:
		out := make([]any, 0, len(v.Children))
		for _, c := range v.Children {
			x, _ := resolve(c.Value, vars)
			out = append(out, x)
		}
		return out, true
	case ast.ObjectValue:
		out := make(map[string]any, len(v.Children))
		for _, c := range v.Children {
			x, ok := resolve(c.Value, vars)
			if !ok {
				x = nil
			}
			out[c.Name] = x
		}
		return out, true
	}
	return v.Raw, true
}
