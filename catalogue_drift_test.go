package symphony_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// The catalogue (bus/subjects.go, rendered into subjects.md) names who
// produces and who consumes every subject, and who writes and reads every
// bucket. Those lists are checked here against the code, so they cannot
// drift: the test reads every non-test file, finds each call of a bus verb
// (Publish, Ask, Serve, Subscribe, Put, Watch…) that names a catalogue
// variable, attributes it to the component whose package holds the call, and
// compares both ways. Calls made inside a library package on a caller's
// behalf (the run log recording a run's events, reading a run's stored
// timeline) are attributed to the component that calls the library
// function.

// verbRole is what calling a bus verb on a subject or key makes the caller.
var verbRole = map[string]string{
	"Publish": "producer", "PublishDurable": "producer", "Ask": "producer",
	"Subscribe": "consumer", "Follow": "consumer", "Serve": "consumer", "ServeN": "consumer", "ServeBounded": "consumer", "History": "consumer",
	"Put": "producer", "Create": "producer", "Delete": "producer",
	"Update": "producer", "Purge": "producer",
	"Get": "consumer", "Watch": "consumer", "WatchSet": "consumer", "All": "consumer", "Values": "consumer",
}

// methodRole is what using a catalogue variable's method makes the caller:
// a subject is built to publish on, a filter to read with, a key of a
// family to write (reads of a family go through All, Values or WatchSet);
// a Spec is only looked at.
var methodRole = map[string]string{"Subject": "producer", "Filter": "consumer", "Key": "producer", "Spec": ""}

// libraries are the packages that act on behalf of their callers.
// The kernel (bus) is not one: it declares the streams and buckets but
// acts on a subject only when a component calls a verb.
var libraries = map[string]bool{"runlog": true}

// actorOf names the component a non-library file speaks for; "" for files
// that are neither (libraries, test doubles, developer programs).
func actorOf(file string) string {
	dir := path.Dir(file)
	switch {
	case dir == "components":
		return bus.CompSupervisor
	case strings.HasPrefix(dir, "components/"):
		return componentOf(dir)
	case dir == "ui" || strings.HasPrefix(dir, "ui/"):
		return bus.CompUI
	case dir == "mcpserver" || strings.HasPrefix(dir, "mcpserver/"):
		// A run's MCP server (`symphony mcp`), a child of the agent.
		return bus.CompMCP
	case file == "cmd/symphony/run.go":
		// `symphony run` publishes the supervisor's lifecycle events.
		return bus.CompSupervisor
	case strings.HasPrefix(dir, "cmd/"):
		return bus.CompCLI
	}
	return ""
}

// catalogueVar is one variable of the catalogue: a subject family or a key
// (family), with the subject pattern or bucket it stands for.
type catalogueVar struct {
	entry string // subject pattern or bucket name
}

// catalogueVars reads bus/subjects.go and bus/kv.go for the variables made
// by event[...], request[...], kvKey[...] and keySet[...].
func catalogueVars(t *testing.T, files map[string]*ast.File) map[string]catalogueVar {
	t.Helper()
	consts := map[string]string{}
	vars := map[string]catalogueVar{}
	for name, f := range files {
		if path.Dir(name) != "bus" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range g.Specs {
				vs, ok := s.(*ast.ValueSpec)
				if !ok || len(vs.Values) != len(vs.Names) {
					continue
				}
				for i, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && g.Tok == token.CONST {
						consts[vs.Names[i].Name], _ = strconv.Unquote(lit.Value)
					}
					if entry, ok := declaredEntry(v); ok {
						vars[vs.Names[i].Name] = catalogueVar{entry: entry}
					}
				}
			}
		}
	}
	for name, v := range vars {
		if c, ok := consts[v.entry]; ok {
			vars[name] = catalogueVar{entry: c}
		}
	}
	if len(vars) < 10 {
		t.Fatalf("found only %d catalogue variables in bus/: the parser of subjects.go is out of date", len(vars))
	}
	return vars
}

// declaredEntry recognises event[T](Spec{Pattern: "…"}), request[…](Spec{…}),
// kvKey[T](Bucket, …) and keySet[T](Bucket, …); it returns the pattern or the
// bucket's constant name.
func declaredEntry(v ast.Expr) (string, bool) {
	call, ok := v.(*ast.CallExpr)
	if !ok {
		return "", false
	}
	var fn ast.Expr
	switch x := call.Fun.(type) {
	case *ast.IndexExpr:
		fn = x.X
	case *ast.IndexListExpr:
		fn = x.X
	default:
		return "", false
	}
	id, ok := fn.(*ast.Ident)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	switch id.Name {
	case "event", "request":
		lit, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			return "", false
		}
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if k, _ := kv.Key.(*ast.Ident); ok && k != nil && k.Name == "Pattern" {
				if b, ok := kv.Value.(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(b.Value)
					return s, true
				}
			}
		}
	case "kvKey", "keySet":
		if b, ok := call.Args[0].(*ast.Ident); ok {
			return b.Name, true
		}
	}
	return "", false
}

// roleUse is one use of a catalogue variable: the variable and the role.
type roleUse struct{ name, role string }

// usesIn finds the catalogue variables a function body uses, with their
// roles. pkgName is the package of the file ("bus" spells the variables and
// verbs unqualified); busAlias is the name the file imports bus under.
func usesIn(body ast.Node, pkgName, busAlias string, vars map[string]catalogueVar) (uses []roleUse, unclassified []ast.Expr) {
	varOf := func(e ast.Expr) (string, bool) {
		switch x := e.(type) {
		case *ast.Ident:
			if pkgName == "bus" {
				_, ok := vars[x.Name]
				return x.Name, ok
			}
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && busAlias != "" && id.Name == busAlias {
				_, ok := vars[x.Sel.Name]
				return x.Sel.Name, ok
			}
		}
		return "", false
	}
	verbOf := func(call *ast.CallExpr) string {
		fn := call.Fun
		if ix, ok := fn.(*ast.IndexExpr); ok {
			fn = ix.X
		}
		if ix, ok := fn.(*ast.IndexListExpr); ok {
			fn = ix.X
		}
		switch x := fn.(type) {
		case *ast.Ident:
			if pkgName == "bus" {
				return x.Name
			}
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && busAlias != "" && id.Name == busAlias {
				return x.Sel.Name
			}
		}
		return ""
	}
	seen := map[ast.Expr]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
			if role, ok := methodRole[sel.Sel.Name]; ok {
				if name, ok := varOf(sel.X); ok {
					if role != "" {
						uses = append(uses, roleUse{name, role})
					}
					seen[sel.X] = true
				}
			}
		}
		role, ok := verbRole[verbOf(call)]
		if !ok {
			return true
		}
		for _, a := range call.Args {
			if name, ok := varOf(a); ok {
				uses = append(uses, roleUse{name, role})
				seen[a] = true
			}
		}
		return true
	})
	// A variable used otherwise (passed to a helper, its Filter taken) is
	// a read inside a library (the run log reads stored runs), and must
	// be made explicit elsewhere.
	ast.Inspect(body, func(n ast.Node) bool {
		e, ok := n.(ast.Expr)
		if !ok || seen[e] {
			return !seen[e]
		}
		if name, ok := varOf(e); ok {
			if libraries[pkgName] {
				uses = append(uses, roleUse{name, "consumer"})
			} else {
				unclassified = append(unclassified, e)
			}
			return false
		}
		return true
	})
	return uses, unclassified
}

// importName is the name file f imports the package at module path rel
// under ("" when it does not import it).
func importName(f *ast.File, rel string) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != module+"/"+rel {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return path.Base(rel)
	}
	return ""
}

// libraryUses computes, for every function and method of the library
// packages, the catalogue uses it makes directly or through other functions
// of its package (by name: a fixed point over the package's calls).
func libraryUses(files map[string]*ast.File, vars map[string]catalogueVar) map[string]map[string][]roleUse {
	direct := map[string]map[string][]roleUse{} // pkg → func → uses
	calls := map[string]map[string][]string{}   // pkg → func → called names
	for name, f := range files {
		pkg := path.Dir(name)
		if !libraries[pkg] || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if direct[pkg] == nil {
			direct[pkg], calls[pkg] = map[string][]roleUse{}, map[string][]string{}
		}
		alias := importName(f, "bus")
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			uses, _ := usesIn(fd.Body, pkg, alias, vars)
			direct[pkg][fd.Name.Name] = append(direct[pkg][fd.Name.Name], uses...)
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.Ident:
					calls[pkg][fd.Name.Name] = append(calls[pkg][fd.Name.Name], x.Name)
				case *ast.SelectorExpr:
					calls[pkg][fd.Name.Name] = append(calls[pkg][fd.Name.Name], x.Sel.Name)
				}
				return true
			})
		}
	}
	for pkg, fns := range direct {
		for changed := true; changed; {
			changed = false
			for fn, names := range calls[pkg] {
				have := map[roleUse]bool{}
				for _, u := range fns[fn] {
					have[u] = true
				}
				for _, callee := range names {
					if callee == fn {
						continue
					}
					for _, u := range fns[callee] {
						if !have[u] {
							have[u] = true
							fns[fn] = append(fns[fn], u)
							changed = true
						}
					}
				}
			}
		}
	}
	return direct
}

// derivedRoles returns entry → role → actor → one place in the code.
func derivedRoles(t *testing.T, files map[string]*ast.File, vars map[string]catalogueVar) map[string]map[string]map[string]string {
	t.Helper()
	lib := libraryUses(files, vars)
	out := map[string]map[string]map[string]string{}
	add := func(u roleUse, actor, where string) {
		entry := vars[u.name].entry
		if out[entry] == nil {
			out[entry] = map[string]map[string]string{}
		}
		if out[entry][u.role] == nil {
			out[entry][u.role] = map[string]string{}
		}
		if _, ok := out[entry][u.role][actor]; !ok {
			out[entry][u.role][actor] = where
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f := files[name]
		actor := actorOf(name)
		if actor == "" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		uses, unclassified := usesIn(f, f.Name.Name, importName(f, "bus"), vars)
		for _, u := range uses {
			add(u, actor, name)
		}
		for _, e := range unclassified {
			t.Errorf("%s: a catalogue variable (%s) is used outside a bus verb call: the catalogue test cannot tell its role; call the verb with it directly", name, exprString(e))
		}
		// What the file's calls into a library do on its behalf.
		for pkg := range libraries {
			alias := importName(f, pkg)
			if alias == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == alias {
					for _, u := range lib[pkg][sel.Sel.Name] {
						add(u, actor, name+" (through "+pkg+"."+sel.Sel.Name+")")
					}
					return true
				}
				// A method of a library value (a run log writer).
				if isLibraryMethod(files, pkg, sel.Sel.Name) {
					for _, u := range lib[pkg][sel.Sel.Name] {
						add(u, actor, name+" (through a "+pkg+" method "+sel.Sel.Name+")")
					}
				}
				return true
			})
		}
	}
	return out
}

// isLibraryMethod reports whether pkg declares an exported method named
// name (the calls of a value's methods cannot be told apart by name alone;
// this keeps the match to the library's own exported methods).
func isLibraryMethod(files map[string]*ast.File, pkg, name string) bool {
	if !ast.IsExported(name) {
		return false
	}
	for fname, f := range files {
		if path.Dir(fname) != pkg || strings.HasSuffix(fname, "_test.go") {
			continue
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil && fd.Name.Name == name {
				return true
			}
		}
	}
	return false
}

func exprString(e ast.Expr) string {
	if s, ok := e.(*ast.SelectorExpr); ok {
		if id, ok := s.X.(*ast.Ident); ok {
			return id.Name + "." + s.Sel.Name
		}
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return fmt.Sprintf("%T", e)
}

// componentName matches a component's name in the catalogue's free text.
var componentName = regexp.MustCompile(`[a-z]+`)

// declaredNames are the component names a catalogue field lists.
func declaredNames(fields ...string) []string {
	known := map[string]bool{}
	for _, c := range []string{bus.CompSupervisor, bus.CompWorkflow, bus.CompTracker, bus.CompScheduler, bus.CompWorkspace, bus.CompAgentRunner, bus.CompPruner, bus.CompUI, bus.CompCLI, bus.CompMCP, bus.CompNotifier} {
		known[c] = true
	}
	set := map[string]bool{}
	for _, f := range fields {
		for _, w := range componentName.FindAllString(f, -1) {
			if known[w] {
				set[w] = true
			}
		}
	}
	names := slices.Sorted(maps.Keys(set))
	return names
}

// catalogueDrift compares the catalogue with the roles derived from files
// and returns one line per difference.
func catalogueDrift(t *testing.T, files map[string]*ast.File) []string {
	t.Helper()
	vars := catalogueVars(t, files)
	derived := derivedRoles(t, files, vars)
	type declared struct{ producers, consumers []string }
	want := map[string]declared{}
	for _, s := range bus.Catalogue() {
		want[s.Pattern] = declared{declaredNames(s.Producer), declaredNames(s.Consumers...)}
	}
	for _, b := range bus.Buckets() {
		want[b.Name] = declared{declaredNames(b.Writer), declaredNames(b.Readers...)}
		// A bucket's writer reads its own state back (at a restart):
		// the catalogue lists it as the writer only.
		for actor := range derived[b.Name]["producer"] {
			delete(derived[b.Name]["consumer"], actor)
		}
	}
	var drift []string
	for _, entry := range slices.Sorted(maps.Keys(want)) {
		w := want[entry]
		for _, role := range []string{"producer", "consumer"} {
			names := w.producers
			if role == "consumer" {
				names = w.consumers
			}
			got := derived[entry][role]
			for _, actor := range slices.Sorted(maps.Keys(got)) {
				if !slices.Contains(names, actor) {
					drift = append(drift, fmt.Sprintf("%s: %s is a %s in the code (%s) but not in the catalogue (bus/subjects.go, subjects.md)", entry, actor, role, got[actor]))
				}
			}
			for _, actor := range names {
				if _, ok := got[actor]; !ok {
					drift = append(drift, fmt.Sprintf("%s: the catalogue lists %s as a %s, but no code of %s is one", entry, actor, role, actor))
				}
			}
		}
	}
	for _, e := range slices.Sorted(maps.Keys(derived)) {
		if _, ok := want[e]; !ok {
			drift = append(drift, e+" is used in the code but not in the catalogue")
		}
	}
	return drift
}

// TestCatalogueMatchesTheCode: every producer and consumer the code has is
// in the catalogue, and every one the catalogue names is in the code.
func TestCatalogueMatchesTheCode(t *testing.T) {
	for _, d := range catalogueDrift(t, goFiles(t)) {
		t.Error(d)
	}
}

// TestCatalogueDriftIsCaught: a subscription the catalogue does not list,
// and a listed consumer whose code is gone, are both reported.
func TestCatalogueDriftIsCaught(t *testing.T) {
	files := goFiles(t)
	extra, err := parser.ParseFile(token.NewFileSet(), "drift.go", `package scheduler

import "github.com/symphony-oss/symphony/bus"

func drift(b *bus.Bus) { _, _ = bus.Subscribe(nil, b, bus.WorkflowErrors) }
`, 0)
	if err != nil {
		t.Fatal(err)
	}
	files["components/scheduler/zz_drift.go"] = extra
	// The pruner's prune responder disappears.
	for name, f := range files {
		if strings.HasPrefix(name, "components/pruner/") && !strings.HasSuffix(name, "_test.go") {
			files[name] = &ast.File{Name: f.Name}
		}
	}
	drift := strings.Join(catalogueDrift(t, files), "\n")
	for _, want := range []string{
		bus.WorkflowErrors.Spec().Pattern + ": scheduler is a consumer in the code (components/scheduler/zz_drift.go)",
		bus.PruneRuns.Spec().Pattern + ": the catalogue lists pruner as a consumer, but no code of pruner is one",
	} {
		if !strings.Contains(drift, want) {
			t.Errorf("drift not reported: %q\nreported:\n%s", want, drift)
		}
	}
}
