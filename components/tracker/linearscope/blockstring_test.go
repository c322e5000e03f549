package linearscope

import "testing"

// TestBlockStringsAreRefused: gqlparser ends a block string at the last
// of a run of quotes, the specification (and Linear) at the first, so this
// document reads here as one issueUpdate of the run's own issue and at
// Linear as that plus an issueDelete and an issueUpdate of another issue.
// No document with """ is accepted.
func TestBlockStringsAreRefused(t *testing.T) {
	own := Issue{ID: "uuid-own", Identifier: "ABC-12"}
	smuggled := "mutation M($t: String!) {\n" +
		`  issueUpdate(id: "ABC-12", input: {title: $t, labelIds: ["""x"""" , " ]}) { success } evil: issueDelete(id: $t) { success } tail: issueUpdate(id: $t, input: {labelIds: [ # "` + "\n" +
		"  ]}) { success }\n}"
	plain := `mutation { issueUpdate(id: "ABC-12", input: {description: """long text"""}) { success } }`
	for name, doc := range map[string]string{"smuggled": smuggled, "plain": plain} {
		err := Check(PolicyScoped, doc, map[string]any{"t": "uuid-other"}, own)
		if r, ok := err.(*Refusal); !ok || r.Rule != RuleBlockString {
			t.Errorf("%s: %v, want a %s refusal", name, err, RuleBlockString)
		}
	}
}
