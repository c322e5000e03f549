package linearscope

import "testing"

// BenchmarkCheck is the check of a typical call: an issueUpdate of the run's
// own issue moving its state, target and input in variables.
func BenchmarkCheck(b *testing.B) {
	const doc = `mutation MoveIssue($id: String!, $stateId: String!) {
  issueUpdate(id: $id, input: {stateId: $stateId}) {
    success
    issue { id identifier state { name } }
  }
}`
	vars := map[string]any{"id": own.Identifier, "stateId": "5e0d3f52-0c4a-4f43-9a4e-b3a1a7bd3e11"}
	if err := Check(PolicyScoped, doc, vars, own); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(PolicyScoped, doc, vars, own); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckQuery is a typical read: the issue with its comments.
func BenchmarkCheckQuery(b *testing.B) {
	const doc = `query Issue($id: String!) {
  issue(id: $id) {
    id identifier title description
    state { name type }
    comments(first: 20) { nodes { id body user { name } } pageInfo { hasNextPage endCursor } }
  }
}`
	vars := map[string]any{"id": own.Identifier}
	if err := Check(PolicyScoped, doc, vars, own); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(PolicyScoped, doc, vars, own); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSchemaLoad is the one-time cost the first scoped check pays.
func BenchmarkSchemaLoad(b *testing.B) {
	for b.Loop() {
		if _, err := loadSchemaUncached(); err != nil {
			b.Fatal(err)
		}
	}
}
