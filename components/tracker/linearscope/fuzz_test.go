package linearscope

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzCheck feeds outside input (the document and the variables' JSON, both
// from the agent) to the check: it must not panic, must answer nil or a
// Refusal, and must answer fast.
func FuzzCheck(f *testing.F) {
	if _, err := Schema(); err != nil {
		f.Fatal(err)
	}
	seeds := []struct{ doc, vars string }{
		{`{ viewer { id } }`, ``},
		{`mutation M($id: String!) { issueUpdate(id: $id, input: {stateId: "s"}) { success } }`, `{"id":"ABC-12"}`},
		{`mutation M($id: String!, $in: IssueUpdateInput!) { issueUpdate(id: $id, input: $in) { success } }`, `{"id":"ABC-12","in":{"parentId":"X-1"}}`},
		{`mutation { ...M } fragment M on Mutation { issueDelete(id: "ABC-12") { success } }`, ``},
		{`mutation { a: commentCreate(input: {issueId: "ABC-12", body: "x"}) { success } }`, `null`},
		{`mutation C($i: String) { commentCreate(input: {issueId: $i}) { success } }`, `{"i":null}`},
		{`mutation { attachmentLinkURL(issueId: "ABC-13", url: "u") { success } }`, `[]`},
		{`{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`, `{}`},
		{`subscription { issueUpdated { id } }`, ``},
		{`query A { viewer { id } } query B { viewer { id } }`, `{"a":[1,2,{"b":true}]}`},
		{laughs(8), ``},
		{deepQuery(MaxDepth + 1), ``},
		{`{ issue(id: """ABC-12""") { id } }`, ``},
	}
	for _, s := range seeds {
		f.Add(s.doc, s.vars)
	}
	f.Fuzz(func(t *testing.T, doc, varsJSON string) {
		var vars map[string]any
		if varsJSON != "" {
			d := json.NewDecoder(strings.NewReader(varsJSON))
			if d.Decode(&vars) != nil {
				vars = nil
			}
		}
		start := time.Now()
		err := Check(PolicyScoped, doc, vars, own)
		if d := time.Since(start); d > time.Second {
			t.Errorf("check took %v", d)
		}
		if err != nil {
			if _, ok := IsRefusal(err); !ok {
				t.Errorf("not a refusal: %v", err)
			}
		}
		_ = Check(PolicyAny, doc, vars, own)
	})
}
