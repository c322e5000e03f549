// Package apischema checks JSON API answers against the JSON Schemas in
// testdata/api-schema/: the response shapes of the reference
// specification's API (SPEC §13.7.2) — GET /api/v1/state, GET
// /api/v1/<issue_identifier>, POST /api/v1/refresh and the error envelope
// — written for this project from the specification's shapes. A script
// written against the reference reads these fields; the schemas hold
// Symphony to them, and further fields are allowed (the specification
// lets an implementation add fields).
package apischema

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The schemas, by the name a test uses.
const (
	State   = "state"
	Issue   = "issue"
	Refresh = "refresh"
	Error   = "error"
)

// base is the schemas' $id prefix: nothing is fetched from it, every
// schema is added from its file.
const base = "https://symphony.test/api-schema/"

// Set is the compiled schemas.
type Set struct {
	schemas map[string]*jsonschema.Schema
}

// Dir is testdata/api-schema in this module, found from this file's path
// so a test of any package can load it.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "api-schema")
}

// Load compiles every schema, formats asserted (a date-time must be one).
func Load() (*Set, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range []string{"defs", State, Issue, Refresh, Error} {
		raw, err := os.ReadFile(filepath.Join(Dir(), name+".schema.json"))
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decode schema %s: %w", name, err)
		}
		if err := c.AddResource(base+name+".schema.json", doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", name, err)
		}
	}
	s := &Set{schemas: map[string]*jsonschema.Schema{}}
	for _, name := range []string{State, Issue, Refresh, Error} {
		sch, err := c.Compile(base + name + ".schema.json")
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		s.schemas[name] = sch
	}
	return s, nil
}

// Check validates body, a JSON answer, against the named schema; the
// error lists every violation with its place in the answer.
func (s *Set) Check(name string, body []byte) error {
	sch, ok := s.schemas[name]
	if !ok {
		return fmt.Errorf("no schema %q", name)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("answer does not match %s.schema.json: %w", name, err)
	}
	return nil
}
