package tracker

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
)

// githubSchemaPath is GitHub's published GraphQL schema as npm's
// @octokit/graphql-schema ships it; `go tool task tools` installs it.
const githubSchemaPath = "../../.tools/octokit-graphql-schema/node_modules/@octokit/graphql-schema/schema.graphql"

// githubSchema loads GitHub's schema once per test binary.
var githubSchema = sync.OnceValues(func() (*ast.Schema, error) {
	raw, err := os.ReadFile(githubSchemaPath)
	if err != nil {
		return nil, fmt.Errorf("GitHub's GraphQL schema is missing (install it with `go tool task tools`): %w", err)
	}
	doc, perr := parser.ParseSchemas(validator.Prelude, &ast.Source{Name: "github-schema.graphql", Input: string(raw)})
	if perr != nil {
		return nil, perr
	}
	if err := dedupeFields(doc); err != nil {
		return nil, err
	}
	s, gerr := validator.ValidateSchemaDocument(doc)
	if gerr != nil {
		return nil, gerr
	}
	return s, nil
})

// dedupeFields drops the second definition of a field that GitHub's
// published schema defines twice with the same type (15.26.1 has one:
// EnterpriseOwnerInfo.repositoryDeployKeySetting), which gqlparser
// rightly refuses; two definitions of one field with different types are
// an error.
func dedupeFields(doc *ast.SchemaDocument) error {
	for _, def := range append(doc.Definitions, doc.Extensions...) {
		seen := map[string]*ast.FieldDefinition{}
		kept := def.Fields[:0]
		for _, f := range def.Fields {
			if prev, ok := seen[f.Name]; ok {
				if prev.Type.String() != f.Type.String() {
					return fmt.Errorf("GitHub's schema defines %s.%s twice with different types", def.Name, f.Name)
				}
				continue
			}
			seen[f.Name] = f
			kept = append(kept, f)
		}
		def.Fields = kept
	}
	return nil
}

// githubDocumentErrors checks a document and its variables against
// GitHub's schema.
func githubDocumentErrors(doc string, vars map[string]any) error {
	schema, err := githubSchema()
	if err != nil {
		return err
	}
	q, errs := gqlparser.LoadQuery(schema, doc)
	if len(errs) > 0 {
		return fmt.Errorf("document does not validate against GitHub's schema: %v", errs)
	}
	for _, op := range q.Operations {
		if _, err := validator.VariableValues(schema, op, vars); err != nil {
			return fmt.Errorf("variables %v do not validate for %s: %v", vars, op.Name, err)
		}
	}
	return nil
}

// TestGitHubDocumentsValidateAgainstGitHubSchema: every GraphQL document
// the GitHub adapter sends is valid against GitHub's published schema,
// with the variables it sends.
func TestGitHubDocumentsValidateAgainstGitHubSchema(t *testing.T) {
	vars := map[string]any{"owner": "acme", "number": 3, "first": 100, "after": nil, "statusField": "Status", "priorityField": "Priority"}
	if err := githubDocumentErrors(queryGitHubProjectItems, vars); err != nil {
		t.Fatalf("%v\n%s", err, queryGitHubProjectItems)
	}
	// The check sees a misspelt field.
	if err := githubDocumentErrors(`query { viewer { loginn } }`, map[string]any{}); err == nil {
		t.Fatal("a misspelt field validated")
	}
}
