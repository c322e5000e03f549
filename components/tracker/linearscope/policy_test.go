package linearscope

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var own = Issue{ID: "2c1e7c2a-3f4b-4c5d-8e9f-0a1b2c3d4e5f", Identifier: "ABC-12"}

const otherID = "99999999-3f4b-4c5d-8e9f-0a1b2c3d4e5f"

func TestCheckScoped(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		vars map[string]any
		rule string // "" when allowed
		// field, when set, is the Refusal's Field.
		field string
	}{
		{name: "query", doc: `query { issue(id: "OTHER-1") { id title state { name } } }`},
		{name: "anonymous query with fragment", doc: `{ viewer { ...U } } fragment U on User { id name }`},
		{name: "query with variables", doc: `query Q($id: String!) { issue(id: $id) { identifier } }`, vars: map[string]any{"id": "ABC-12"}},
		{name: "introspection", doc: `{ __schema { queryType { name } } }`},
		{name: "issueUpdate own by id",
			doc: `mutation { issueUpdate(id: "` + own.ID + `", input: {stateId: "s1"}) { success } }`},
		{name: "issueUpdate own by identifier",
			doc: `mutation { issueUpdate(id: "ABC-12", input: {stateId: "s1", title: "t"}) { success issue { id } } }`},
		{name: "issueUpdate own identifier lower case",
			doc: `mutation { issueUpdate(id: "abc-12", input: {stateId: "s1"}) { success } }`},
		{name: "issueUpdate own by variable",
			doc:  `mutation M($id: String!, $s: String) { issueUpdate(id: $id, input: {stateId: $s}) { success } }`,
			vars: map[string]any{"id": "ABC-12", "s": "done"}},
		{name: "issueUpdate input as variable",
			doc:  `mutation M($id: String!, $in: IssueUpdateInput!) { issueUpdate(id: $id, input: $in) { success } }`,
			vars: map[string]any{"id": own.ID, "in": map[string]any{"stateId": "s", "labelIds": []any{"l1"}}}},
		{name: "issueUpdate variable default",
			doc: `mutation M($id: String! = "ABC-12") { issueUpdate(id: $id, input: {priority: 2}) { success } }`},
		{name: "commentCreate own",
			doc: `mutation { commentCreate(input: {issueId: "ABC-12", body: "done"}) { success comment { id } } }`},
		{name: "commentCreate own by variable",
			doc:  `mutation C($i: String) { commentCreate(input: {issueId: $i, body: "done"}) { success } }`,
			vars: map[string]any{"i": own.ID}},
		{name: "attachmentCreate own",
			doc: `mutation { attachmentCreate(input: {issueId: "ABC-12", title: "PR", url: "https://x/pr/1"}) { success } }`},
		{name: "attachmentLinkURL own",
			doc: `mutation { attachmentLinkURL(issueId: "ABC-12", url: "https://x/pr/1", title: "PR") { success } }`},
		{name: "attachmentLinkGitHubPR own",
			doc: `mutation { attachmentLinkGitHubPR(issueId: "` + own.ID + `", url: "https://github.com/o/r/pull/1") { success } }`},
		{name: "issueUpdate own by escaped identifier",
			doc: `mutation { issueUpdate(id: "\u0041BC-12", input: {stateId: "s1"}) { success } }`},
		{name: "two allowed mutations on own issue",
			doc: `mutation { a: issueUpdate(id: "ABC-12", input: {stateId: "s"}) { success } b: commentCreate(input: {issueId: "ABC-12", body: "x"}) { success } }`},

		{name: "issueUpdate own by block string (block strings are refused)", rule: RuleBlockString,
			doc: `mutation { issueUpdate(id: """ABC-12""", input: {stateId: "s1"}) { success } }`},
		{name: "issueUpdate other issue", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc: `mutation { issueUpdate(id: "ABC-13", input: {stateId: "s1"}) { success } }`},
		{name: "issueUpdate other issue by escaped identifier", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc: `mutation { issueUpdate(id: "\u0041BC-13", input: {stateId: "s1"}) { success } }`},
		{name: "forbidden mutation after a comment", rule: RuleMutationNotAllowed, field: "issueDelete",
			doc: "mutation { # a comment\r issueDelete(id: \"ABC-12\") { success } }"},
		{name: "mutation __typename only", rule: RuleMutationNotAllowed, field: "__typename",
			doc: `mutation { __typename }`},
		{name: "issueUpdate other issue by uuid", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc: `mutation { issueUpdate(id: "` + otherID + `", input: {stateId: "s1"}) { success } }`},
		{name: "issueUpdate other issue by variable", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc:  `mutation M($id: String!) { issueUpdate(id: $id, input: {stateId: "s"}) { success } }`,
			vars: map[string]any{"id": "XYZ-1"}},
		{name: "issueUpdate missing variable", rule: RuleVariablesInvalid,
			doc: `mutation M($id: String!) { issueUpdate(id: $id, input: {stateId: "s"}) { success } }`},
		{name: "commentCreate missing issueId variable", rule: RuleTargetUnresolved, field: "commentCreate",
			doc: `mutation C($i: String) { commentCreate(input: {issueId: $i, body: "x"}) { success } }`},
		{name: "commentCreate null issueId variable", rule: RuleTargetUnresolved, field: "commentCreate",
			doc:  `mutation C($i: String) { commentCreate(input: {issueId: $i, body: "x"}) { success } }`,
			vars: map[string]any{"i": nil}},
		{name: "commentCreate without issueId", rule: RuleTargetUnresolved, field: "commentCreate",
			doc: `mutation { commentCreate(input: {body: "x"}) { success } }`},
		{name: "commentCreate empty issueId", rule: RuleTargetUnresolved, field: "commentCreate",
			doc: `mutation { commentCreate(input: {issueId: "", body: "x"}) { success } }`},
		{name: "commentCreate on a project", rule: RuleInputFieldNotAllowed, field: "commentCreate",
			doc: `mutation { commentCreate(input: {issueId: "ABC-12", projectId: "p", body: "x"}) { success } }`},
		{name: "commentCreate under another thread", rule: RuleInputFieldNotAllowed, field: "commentCreate",
			doc: `mutation { commentCreate(input: {issueId: "ABC-12", parentId: "c", body: "x"}) { success } }`},
		{name: "issueUpdate reparent", rule: RuleInputFieldNotAllowed, field: "issueUpdate",
			doc: `mutation { issueUpdate(id: "ABC-12", input: {parentId: "ABC-1"}) { success } }`},
		{name: "issueUpdate move team via variable input", rule: RuleInputFieldNotAllowed, field: "issueUpdate",
			doc:  `mutation M($in: IssueUpdateInput!) { issueUpdate(id: "ABC-12", input: $in) { success } }`,
			vars: map[string]any{"in": map[string]any{"teamId": "t2"}}},
		{name: "issueUpdate trash", rule: RuleInputFieldNotAllowed, field: "issueUpdate",
			doc: `mutation { issueUpdate(id: "ABC-12", input: {trashed: true}) { success } }`},
		{name: "attachmentLinkURL impersonation", rule: RuleArgumentNotAllowed, field: "attachmentLinkURL",
			doc: `mutation { attachmentLinkURL(issueId: "ABC-12", url: "https://x", createAsUser: "CEO") { success } }`},
		{name: "attachmentLinkURL other issue", rule: RuleTargetNotOwnIssue, field: "attachmentLinkURL",
			doc: `mutation { attachmentLinkURL(issueId: "ABC-13", url: "https://x") { success } }`},
		{name: "attachmentCreate other issue", rule: RuleTargetNotOwnIssue, field: "attachmentCreate",
			doc: `mutation { attachmentCreate(input: {issueId: "ABC-13", title: "t", url: "https://x"}) { success } }`},
		{name: "issueDelete", rule: RuleMutationNotAllowed, field: "issueDelete",
			doc: `mutation { issueDelete(id: "ABC-12") { success } }`},
		{name: "issueCreate", rule: RuleMutationNotAllowed, field: "issueCreate",
			doc: `mutation { issueCreate(input: {teamId: "t", title: "x"}) { success } }`},
		{name: "teamUpdate", rule: RuleMutationNotAllowed, field: "teamUpdate",
			doc: `mutation { teamUpdate(id: "t", input: {name: "x"}) { success } }`},
		{name: "attachmentLinkZendesk", rule: RuleMutationNotAllowed, field: "attachmentLinkZendesk",
			doc: `mutation { attachmentLinkZendesk(issueId: "ABC-12", ticketId: "1") { success } }`},
		{name: "aliased forbidden mutation", rule: RuleMutationNotAllowed, field: "issueDelete",
			doc: `mutation { issueUpdate: issueDelete(id: "ABC-12") { success } }`},
		{name: "aliased other-issue update", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc: `mutation { ok: issueUpdate(id: "ABC-12", input: {stateId: "s"}) { success } x: issueUpdate(id: "ABC-13", input: {stateId: "s"}) { success } }`},
		{name: "forbidden mutation in a fragment", rule: RuleMutationNotAllowed, field: "issueDelete",
			doc: `mutation { ...M } fragment M on Mutation { issueDelete(id: "ABC-12") { success } }`},
		{name: "forbidden mutation in nested fragments", rule: RuleMutationNotAllowed, field: "teamDelete",
			doc: `mutation { ... on Mutation { ...A } } fragment A on Mutation { ...B } fragment B on Mutation { teamDelete(id: "t") { success } }`},
		{name: "other issue in a fragment", rule: RuleTargetNotOwnIssue, field: "issueUpdate",
			doc: `mutation { ...M } fragment M on Mutation { issueUpdate(id: "ABC-13", input: {stateId: "s"}) { success } }`},
		{name: "forbidden mutation under skip", rule: RuleMutationNotAllowed, field: "issueDelete",
			doc: `mutation { issueDelete(id: "ABC-12") @skip(if: true) { success } }`},
		{name: "two operations", rule: RuleOperationCount,
			doc: `query A { viewer { id } } mutation B { issueDelete(id: "ABC-12") { success } }`},
		{name: "only a fragment", rule: RuleOperationCount,
			doc: `fragment U on User { id }`},
		{name: "subscription", rule: RuleSubscription,
			doc: `subscription { issueUpdated { id } }`},
		{name: "unknown field", rule: RuleSchemaInvalid,
			doc: `{ issue(id: "ABC-12") { nonsense } }`},
		{name: "wrong argument type", rule: RuleSchemaInvalid,
			doc: `mutation { issueUpdate(id: 12, input: {stateId: "s"}) { success } }`},
		{name: "wrong variable type", rule: RuleVariablesInvalid,
			doc:  `mutation M($id: String!) { issueUpdate(id: $id, input: {stateId: "s"}) { success } }`,
			vars: map[string]any{"id": map[string]any{"x": 1}}},
		{name: "syntax error", rule: RuleParseError, doc: `mutation { issueUpdate(`},
		{name: "empty", rule: RuleEmptyDocument, doc: " \n"},
		{name: "oversize document", rule: RuleDocumentTooLarge,
			doc: `{ viewer { id } }` + strings.Repeat(" ", MaxDocumentBytes)},
		{name: "oversize variables", rule: RuleVariablesTooLarge,
			doc:  `query Q($id: String!) { issue(id: $id) { id } }`,
			vars: map[string]any{"id": strings.Repeat("x", MaxVariablesBytes)}},
		{name: "deep nesting", rule: RuleTooDeep, doc: deepQuery(MaxDepth + 1)},
		{name: "too many selections", rule: RuleTooManySelections, doc: wideQuery(MaxSelections + 1)},
		{name: "fragment explosion", rule: RuleTooManySelections, doc: laughs(12)},
		{name: "spread cycle", rule: RuleTooManySelections,
			doc: `{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`},
		{name: "token flood", rule: RuleParseError, doc: "{" + strings.Repeat("a ", MaxTokens) + "}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(PolicyScoped, tt.doc, tt.vars, own)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r, ok := IsRefusal(err)
			if !ok {
				t.Fatalf("want a refusal under %s, got %v", tt.rule, err)
			}
			if r.Rule != tt.rule || (tt.field != "" && r.Field != tt.field) {
				t.Fatalf("want rule %s field %q, got %s %q: %v", tt.rule, tt.field, r.Rule, r.Field, err)
			}
			if !strings.Contains(err.Error(), tt.rule) {
				t.Errorf("message does not name the rule: %v", err)
			}
		})
	}
}

func TestDepthAtTheBoundIsAllowed(t *testing.T) {
	if err := Check(PolicyScoped, deepQuery(MaxDepth), nil, own); err != nil {
		// Linear's schema must allow a query this deep for the test to
		// mean anything; deepQuery alternates issue → parent.
		t.Fatalf("depth %d refused: %v", MaxDepth, err)
	}
}

func TestPolicies(t *testing.T) {
	forbidden := `mutation { issueDelete(id: "ABC-13") { success } }`
	if err := Check(PolicyAny, forbidden, nil, own); err != nil {
		t.Errorf("any: %v", err)
	}
	if err := Check(PolicyAny, "not even graphql", nil, own); err != nil {
		t.Errorf("any does not parse: %v", err)
	}
	for _, c := range []struct {
		p    Policy
		doc  string
		rule string
	}{
		{PolicyAny, "", RuleEmptyDocument},
		{PolicyAny, strings.Repeat("{", MaxDocumentBytes+1), RuleDocumentTooLarge},
		{PolicyOff, `{ viewer { id } }`, RuleToolDisabled},
		{Policy("bogus"), `{ viewer { id } }`, RuleToolDisabled},
	} {
		r, ok := IsRefusal(Check(c.p, c.doc, nil, own))
		if !ok || r.Rule != c.rule {
			t.Errorf("%s %.20q: want %s, got %v", c.p, c.doc, c.rule, r)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"": PolicyScoped, "scoped": PolicyScoped, " any ": PolicyAny, "off": PolicyOff} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Scoped", "all", "none", "true"} {
		if _, err := ParsePolicy(in); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", in)
		}
	}
}

func TestVariablesOfOtherTypesAreRefused(t *testing.T) {
	err := Check(PolicyScoped, `{ viewer { id } }`, map[string]any{"x": struct{}{}}, own)
	if r, ok := IsRefusal(err); !ok || r.Rule != RuleVariablesInvalid {
		t.Fatalf("got %v", err)
	}
	deep := any("x")
	for range maxVariableNesting + 2 {
		deep = []any{deep}
	}
	err = Check(PolicyScoped, `{ viewer { id } }`, map[string]any{"x": deep}, own)
	if r, ok := IsRefusal(err); !ok || r.Rule != RuleVariablesInvalid {
		t.Fatalf("got %v", err)
	}
}

func TestAnEmptyOwnIssueMatchesNothing(t *testing.T) {
	err := Check(PolicyScoped, `mutation { commentCreate(input: {issueId: "", body: "x"}) { success } }`, nil, Issue{})
	if r, ok := IsRefusal(err); !ok || r.Rule != RuleTargetUnresolved {
		t.Fatalf("got %v", err)
	}
	err = Check(PolicyScoped, `mutation { issueUpdate(id: "ABC-12", input: {title: "x"}) { success } }`, nil, Issue{ID: "ABC-12"})
	if err != nil {
		t.Fatalf("an own issue given by id alone: %v", err)
	}
}

func TestAllowedMutationsExistInTheSchema(t *testing.T) {
	s, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	for name, rule := range allowed() {
		f := s.Mutation.Fields.ForName(name)
		if f == nil {
			t.Errorf("%s is not a mutation of Linear's schema", name)
			continue
		}
		for _, a := range rule.args {
			if f.Arguments.ForName(a) == nil {
				t.Errorf("%s has no argument %s", name, a)
			}
		}
		if rule.input == nil {
			continue
		}
		in := s.Types[f.Arguments.ForName("input").Type.Name()]
		for _, k := range rule.input {
			if in.Fields.ForName(k) == nil {
				t.Errorf("%s input %s has no field %s", name, in.Name, k)
			}
		}
	}
}

// TestHostileDocumentsAreCheap checks the work bound: each document is refused
// (or allowed) quickly however it is built.
func TestHostileDocumentsAreCheap(t *testing.T) {
	if _, err := Schema(); err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{
		"wide at the bound":  wideQuery(MaxSelections - 10),
		"same field aliased": sameFieldAliased(MaxSelections - 10),
		"laughs":             laughs(20),
		"deep":               deepQuery(900),
		"many variables":     manyVariables(3000),
		"many arguments":     "{ issue(" + strings.Repeat(`id: "x", `, 3000) + `) { id } }`,
	} {
		start := time.Now()
		err := Check(PolicyScoped, doc, nil, own)
		d := time.Since(start)
		t.Logf("%s: %v (%v)", name, d, err)
		if d > 2*time.Second {
			t.Errorf("%s: %v (%v)", name, d, err)
		}
		var r *Refusal
		if err != nil && !errors.As(err, &r) {
			t.Errorf("%s: not a refusal: %v", name, err)
		}
	}
}

// deepQuery selects issue → parent → … → id, the id at the given depth.
func deepQuery(depth int) string {
	var b strings.Builder
	b.WriteString(`{ issue(id: "ABC-12") `)
	for range depth - 2 {
		b.WriteString("{ parent ")
	}
	b.WriteString("{ id ")
	b.WriteString(strings.Repeat("} ", depth))
	return b.String()
}

func wideQuery(n int) string {
	var b strings.Builder
	b.WriteString("{ viewer { ")
	for i := range n - 1 {
		b.WriteString("f")
		b.WriteString(strings.Repeat("x", i%3))
		b.WriteString(": id ")
	}
	b.WriteString("} }")
	return b.String()
}

func sameFieldAliased(n int) string {
	var b strings.Builder
	b.WriteString(`{ `)
	for i := range n / 2 {
		_ = i
		b.WriteString(`a: issue(id: "x") { id } `)
	}
	b.WriteString("}")
	return b.String()
}

// laughs is a fragment "billion laughs": each level spreads the one below
// twice, so the expanded document has 2^levels fields.
func laughs(levels int) string {
	var b strings.Builder
	b.WriteString("{ viewer { ...L0 } }\n")
	for i := range levels {
		b.WriteString("fragment L")
		b.WriteString(itoa(i))
		b.WriteString(" on User { ...L")
		b.WriteString(itoa(i + 1))
		b.WriteString(" ...L")
		b.WriteString(itoa(i + 1))
		b.WriteString(" }\n")
	}
	b.WriteString("fragment L" + itoa(levels) + " on User { id }\n")
	return b.String()
}

func manyVariables(n int) string {
	var b strings.Builder
	b.WriteString("query Q(")
	for i := range n {
		b.WriteString("$v" + itoa(i) + ": String ")
	}
	b.WriteString(") { viewer { id } }")
	return b.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}

// TestRefusalMessagesAreBounded: a document with thousands of errors gets a
// message that names the first few, with positions, and counts the rest.
func TestRefusalMessagesAreBounded(t *testing.T) {
	err := Check(PolicyScoped, manyVariables(3000), nil, own)
	msg := err.Error()
	if !strings.Contains(msg, "line 1, column 9") || !strings.Contains(msg, "and 2995 more") || len(msg) > 1000 {
		t.Fatalf("%d bytes: %.300s", len(msg), msg)
	}
}
