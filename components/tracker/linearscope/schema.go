package linearscope

import (
	_ "embed"
	"fmt"
	"sync"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// schemaSDL is Linear's public schema (linear/linear, packages/sdk, MIT), the
// same file as ../testdata/linear-schema.graphql and ../../../../shared/linear;
// sha256 b00d24d8d252a306f5e2088267b1a17dd6e4442f8b793928410b8d4673a7081d.
// Embedded so the policy checks against the schema it was written for, with no
// file to find at run time.
//
//go:embed linear-schema.graphql
var schemaSDL string

// loadSchema parses the schema once per process (about a megabyte of SDL;
// tens of milliseconds) and only when a scoped check first needs it. The
// result is never modified after the first call.
var loadSchema = sync.OnceValues(loadSchemaUncached)

func loadSchemaUncached() (*ast.Schema, error) {
	s, err := gqlparser.LoadSchema(&ast.Source{Name: "linear-schema.graphql", Input: schemaSDL})
	if err != nil {
		return nil, fmt.Errorf("linearscope: load Linear's schema: %w", err)
	}
	return s, nil
}

// Schema returns Linear's schema as this package parsed it, so tests elsewhere
// (the tracker's fake Linear) can validate against the same one.
func Schema() (*ast.Schema, error) { return loadSchema() }
