package symphony_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/symphony-oss/symphony"

// goFiles returns every .go file of the module, tests included, keyed by
// its slash-separated path.
func goFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(path)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	return files
}

// componentOf returns the component a package path belongs to
// ("components/<name>/..."), or "" for anything else.
func componentOf(pkgPath string) string {
	rest, ok := strings.CutPrefix(pkgPath, "components/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// TestComponentsDoNotImportEachOther enforces the microkernel: a component
// talks to another only through the bus.
func TestComponentsDoNotImportEachOther(t *testing.T) {
	for path, f := range goFiles(t) {
		own := componentOf(filepath.Dir(path))
		if own == "" {
			continue
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, ok := strings.CutPrefix(p, module+"/")
			if !ok {
				continue
			}
			if other := componentOf(rel); other != "" && other != own {
				t.Errorf("%s (component %s) imports component %s (%s): talk through bus/ instead", path, own, other, p)
			}
			if strings.HasPrefix(rel, "cmd/") || rel == "ui" || strings.HasPrefix(rel, "ui/") {
				t.Errorf("%s (component %s) imports %s", path, own, p)
			}
		}
	}
}

// subjectLiteral matches a string that spells a Symphony subject.
var subjectLiteral = regexp.MustCompile(`(^|[^A-Za-z0-9_./-])symphony\.`)

// TestSubjectsSpelledOnlyInBus: no string literal outside bus/ spells a
// subject; everyone else uses the typed builders.
func TestSubjectsSpelledOnlyInBus(t *testing.T) {
	for path, f := range goFiles(t) {
		if strings.HasPrefix(path, "bus/") || path == "architecture_test.go" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				s = lit.Value
			}
			if subjectLiteral.MatchString(s) {
				t.Errorf("%s: subject literal %s outside bus/ (use the bus topic builders)", path, lit.Value)
			}
			return true
		})
	}
}

func TestSubjectLiteralPattern(t *testing.T) {
	for s, want := range map[string]bool{
		"symphony.run.x":                 true,
		"symphony.>":                     true,
		"sub 'symphony.>'":               true,
		"github.com/symphony-oss/x":      false,
		".symphony":                      false,
		"/tmp/.symphony/lock":            false,
		"symphony: data in":              false,
		"symphony_config":                false,
		"go tool nats sub symphony.turn": true,
		"symphony.":                      true,
		"symphony.%s.x":                  true,
		"symphony.{run}":                 true,
		"run symphony. now":              true,
	} {
		if got := subjectLiteral.MatchString(s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

// TestLayout checks the top level the design card names is there.
func TestLayout(t *testing.T) {
	for _, p := range []string{"bus", "components", "ui", "cmd/symphony", "subjects.md", "testdata", "go.mod", "go.sum", "Taskfile.yml", "NOTICE", "LICENSE", "README.md", ".ci/run"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
}

// TestLayering keeps the kernel at the bottom: bus/ imports nothing of
// the module but itself, and the run history (runlog/) sits right above
// it, importing only bus and internal/ packages. (Components and ui reach
// runlog only through its exported API; the compiler sees to that.)
// Test files count too: a test that needs a higher package belongs there.
func TestLayering(t *testing.T) {
	for path, f := range goFiles(t) {
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, ok := strings.CutPrefix(p, module+"/")
			if !ok {
				continue
			}
			switch {
			case dir == "bus" || strings.HasPrefix(dir, "bus/"):
				if rel == "internal/safeid" {
					continue // TODO(lead): safeid
				}
				if rel != "bus" && !strings.HasPrefix(rel, "bus/") {
					t.Errorf("%s: bus/ imports %s; the kernel imports nothing of the project", path, p)
				}
			case dir == "runlog" || strings.HasPrefix(dir, "runlog/"):
				if rel != "bus" && rel != "runlog" && !strings.HasPrefix(rel, "runlog/") && !strings.HasPrefix(rel, "internal/") {
					t.Errorf("%s: runlog/ imports %s; run history builds on bus and internal/ only", path, p)
				}
			}
		}
	}
}
