package bus

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated part of ../subjects.md")

// TestSubjectsMDInStep checks that subjects.md carries exactly the catalogue
// declared in this package: every subject, stream and bucket, and nothing
// else. `go test ./bus -run SubjectsMD -update` (or `go tool task generate`)
// rewrites it.
func TestSubjectsMDInStep(t *testing.T) {
	path := filepath.Join("..", "subjects.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	begin := strings.Index(doc, CatalogueBegin)
	end := strings.Index(doc, CatalogueEnd)
	if begin < 0 || end < begin {
		t.Fatalf("subjects.md lacks the generated catalogue markers")
	}
	current := doc[begin+len(CatalogueBegin) : end]
	want := "\n" + CatalogueMarkdown() + "\n"
	if current == want {
		return
	}
	if *update {
		doc = doc[:begin+len(CatalogueBegin)] + want + doc[end:]
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("subjects.md is out of step with bus/ (run `go tool task generate`).\nwant:\n%s\ngot:\n%s", want, current)
}

// TestEveryDeclarationIsCatalogued parses this package and checks that each
// subject declared with event[...] or request[...] outside tests is listed
// by Catalogue, so subjects.md cannot miss one.
func TestEveryDeclarationIsCatalogued(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.IndexExpr:
				if id, ok := fn.X.(*ast.Ident); ok {
					name = id.Name
				}
			case *ast.IndexListExpr:
				if id, ok := fn.X.(*ast.Ident); ok {
					name = id.Name
				}
			}
			if name != "event" && name != "request" {
				return true
			}
			ast.Inspect(call, func(n ast.Node) bool {
				kv, ok := n.(*ast.KeyValueExpr)
				if ok {
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Pattern" {
						if lit, ok := kv.Value.(*ast.BasicLit); ok {
							patterns = append(patterns, strings.Trim(lit.Value, "\"`"))
						}
					}
				}
				return true
			})
			return true
		})
	}
	listed := map[string]bool{}
	for _, s := range Catalogue() {
		listed[s.Pattern] = true
	}
	if len(patterns) == 0 {
		t.Fatal("found no declarations: the scan is broken")
	}
	for _, p := range patterns {
		if !listed[p] {
			t.Errorf("%s is declared but missing from Catalogue()", p)
		}
	}
	if len(patterns) != len(listed) {
		t.Errorf("%d declarations, %d catalogued", len(patterns), len(listed))
	}
}
