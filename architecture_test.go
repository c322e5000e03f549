package symphony_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// testOrDev reports whether a module-relative package path is a test double
// (testkit/) or a developer program (devtools/): code that helps to build
// and test Symphony and is no part of it.
func testOrDev(rel string) bool {
	for _, dir := range []string{"testkit", "devtools"} {
		if rel == dir || strings.HasPrefix(rel, dir+"/") {
			return true
		}
	}
	return false
}

// TestLayerTestkitAndDevtoolsStayOutOfTheProduct keeps the test doubles
// and developer programs where their names put them. A non-test file
// outside testkit/ and devtools/ never imports them, so no package
// Symphony is built from depends on them; and internal/, the helpers
// Symphony is made of, imports them not even in its tests: it is the
// bottom layer, which the doubles may build on, never the reverse.
func TestLayerTestkitAndDevtoolsStayOutOfTheProduct(t *testing.T) {
	for path, f := range goFiles(t) {
		dir := filepath.Dir(path)
		if testOrDev(dir) {
			continue
		}
		inInternal := dir == "internal" || strings.HasPrefix(dir, "internal/")
		isTest := strings.HasSuffix(path, "_test.go")
		if isTest && !inInternal {
			continue
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			rel, ok := strings.CutPrefix(p, module+"/")
			if !ok || !testOrDev(rel) {
				continue
			}
			if inInternal {
				t.Errorf("%s imports %s: internal/ holds what Symphony is made of and depends on no test double or developer program", path, p)
			} else {
				t.Errorf("%s imports %s: only tests, testkit/ and devtools/ may use test doubles and developer programs", path, p)
			}
		}
	}
}

// TestLayerBinaryLinksNoTestkitOrDevtools: the symphony binary links no
// test double and no developer program. It asks `go list -deps`, the
// build's own answer (transitive imports, build constraints), for a normal
// build and for the profiling build (-tags symphony_profile).
func TestLayerBinaryLinksNoTestkitOrDevtools(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	for _, tags := range []string{"", "symphony_profile"} {
		cmd := exec.Command(gobin, "list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}", "./cmd/symphony")
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("go list -deps -tags %q ./cmd/symphony: %v\n%s", tags, err, stderr)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, module+"/cmd/symphony") {
			t.Fatalf("go list -deps -tags %q ./cmd/symphony does not list the command itself:\n%s", tags, out)
		}
		for _, p := range deps {
			if rel, ok := strings.CutPrefix(p, module+"/"); ok && testOrDev(rel) {
				t.Errorf("the symphony binary (tags %q) links %s: test doubles and developer programs stay out of it", tags, p)
			}
		}
	}
}

// TestLayering keeps the kernel at the bottom: bus/ imports nothing of
// the module but itself, and the run history (runlog/) sits right above
// it, importing only bus (with its sub-packages, bus/safeid) and
// internal/ packages. (Components and ui reach
// runlog only through its exported API; the compiler sees to that.)
// A run's MCP server (mcpserver/) is a child of the agent holding nothing
// but the run's tool credential: it builds on bus and internal/ only, and
// only the command that starts it (cmd/symphony) imports it.
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
				if rel != "bus" && !strings.HasPrefix(rel, "bus/") {
					t.Errorf("%s: bus/ imports %s; the kernel imports nothing of the project", path, p)
				}
			case dir == "runlog" || strings.HasPrefix(dir, "runlog/"):
				if rel != "bus" && !strings.HasPrefix(rel, "bus/") && rel != "runlog" && !strings.HasPrefix(rel, "runlog/") && !strings.HasPrefix(rel, "internal/") {
					t.Errorf("%s: runlog/ imports %s; run history builds on bus and internal/ only", path, p)
				}
			case dir == "mcpserver" || strings.HasPrefix(dir, "mcpserver/"):
				if rel != "bus" && !strings.HasPrefix(rel, "bus/") && rel != "mcpserver" && !strings.HasPrefix(rel, "mcpserver/") && !strings.HasPrefix(rel, "internal/") {
					t.Errorf("%s: mcpserver/ imports %s; the run's MCP server builds on bus and internal/ only", path, p)
				}
			}
			if (rel == "mcpserver" || strings.HasPrefix(rel, "mcpserver/")) && dir != "cmd/symphony" && dir != "mcpserver" && !strings.HasPrefix(dir, "mcpserver/") {
				t.Errorf("%s imports %s; only cmd/symphony starts the run's MCP server", path, p)
			}
		}
	}
}
