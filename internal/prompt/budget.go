package prompt

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"github.com/osteele/liquid/values"
)

// The render budget. Every render of a prompt template — the trial renders
// when WORKFLOW.md is loaded or reloaded (and by symphony validate) and each
// prompt the agent runner renders — stops with a template_render_error as
// soon as it exceeds any of these. The Liquid library has no limits of its
// own: `{% for i in (1..100000000) %}{% endfor %}` ran for minutes, and a
// loop writing its body grew the output to gigabytes. An output bound alone
// would not stop an empty loop, and a timeout around the render alone would
// leave it spinning: the work itself is counted and stopped.
const (
	// MaxSteps bounds loop iterations (for and tablerow, nested loops
	// counting every inner iteration) plus filter calls.
	MaxSteps = 250_000
	// MaxPromptBytes bounds the rendered prompt.
	MaxPromptBytes = 4 << 20
	// MaxWorkBytes bounds the bytes a render produces in all: the prompt,
	// every capture, every filter's result, every list or string a
	// filter's argument is converted to (a range becomes a list of 16
	// bytes an element), and what slice, truncate, truncatewords and uniq
	// build from their input on the way.
	MaxWorkBytes = 32 << 20
	// MaxRenderTime is the wall-clock backstop, checked at every step and
	// every write.
	MaxRenderTime = 10 * time.Second
)

// Tags the template is instrumented with (see instrument). Neither writes
// anything, so whitespace control around them is unchanged.
const (
	stepTag  = "symphony_render_step"
	boundTag = "symphony_render_bound"
)

// budgetError is a render that exceeded its budget.
type budgetError struct{ msg string }

func (e *budgetError) Error() string { return e.msg }

// budget is one render's account. A template's configuration closes over
// its budget, and Template.Render resets it and serializes renders.
type budget struct {
	steps    int
	bytes    int
	limit    time.Duration // MaxRenderTime; shorter in tests
	deadline time.Time
	exceeded *budgetError
}

func (b *budget) reset(now time.Time) {
	limit := cmp.Or(b.limit, MaxRenderTime)
	*b = budget{limit: limit, deadline: now.Add(limit)}
}

func (b *budget) fail(format string, args ...any) error {
	if b.exceeded == nil {
		b.exceeded = &budgetError{msg: "render budget exceeded: " + fmt.Sprintf(format, args...)}
	}
	return b.exceeded
}

func (b *budget) check() error {
	if b.exceeded != nil {
		return b.exceeded
	}
	if time.Now().After(b.deadline) {
		return b.fail("rendering took longer than %s", b.limit)
	}
	return nil
}

// step counts one loop iteration or filter call.
func (b *budget) step() error {
	b.steps++
	if b.steps > MaxSteps {
		return b.fail("more than %d loop iterations and filter calls", MaxSteps)
	}
	return b.check()
}

// charge counts n bytes produced.
func (b *budget) charge(n int) error {
	b.bytes += n
	if n < 0 || b.bytes > MaxWorkBytes {
		return b.fail("more than %d bytes produced (prompt, captures, filter arguments and results)", MaxWorkBytes)
	}
	return b.check()
}

// boundedWriter is where a render's output and each capture's go.
type boundedWriter struct {
	b   *budget
	max int
	buf bytes.Buffer
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if err := w.b.charge(len(p)); err != nil {
		return 0, err
	}
	if w.buf.Len()+len(p) > w.max {
		return 0, w.b.fail("the prompt is larger than %d bytes", w.max)
	}
	return w.buf.Write(p)
}

// renderBounded renders a capture's body (which instrument moved into a
// boundTag block) into a bounded writer: the library's capture buffers its
// body where no writer of ours sees it.
func (b *budget) renderBounded(w io.Writer, ctx render.Context) error {
	bw := &boundedWriter{b: b, max: MaxWorkBytes}
	if err := ctx.RenderChildren(bw); err != nil {
		return err
	}
	_, err := w.Write(bw.buf.Bytes())
	return err
}

// filterSet collects the standard filters so that each can be wrapped.
type filterSet map[string]any

func (s filterSet) AddFilter(name string, fn any) { s[name] = fn }

var errorType = reflect.TypeFor[error]()

// wrapFilter returns fn with the same parameters, returning (result,
// error), except that a parameter of a concrete type (a list, a string, a
// number, a time) is taken as any: the library converts each argument to
// its parameter's type before the filter runs, and that conversion can be
// the costly part — a range (1..30000000) passed to join, reverse or sort
// became a 30-million-element list (0.5 GB or more) before the filter was
// called. The wrapper instead counts the call as a step, charges what the
// conversion would build before building it (convCost), converts each
// argument as the library would (values.MustConvert, with a nil argument
// the zero value), charges the transient work of the filters that expand
// their input internally (transient), refuses a call whose result would be
// too large (estimate: the replace family and join multiply their input,
// split can make a list of every byte), and charges every result.
func (b *budget) wrapFilter(name string, fn any) any {
	v := reflect.ValueOf(fn)
	t := v.Type()
	if t.Kind() != reflect.Func || t.NumOut() == 0 {
		return fn
	}
	orig := make([]reflect.Type, t.NumIn())
	ins := make([]reflect.Type, t.NumIn())
	for i := range ins {
		orig[i] = t.In(i)
		ins[i] = orig[i]
		// Default-value parameters are functions the library builds and
		// interface parameters it passes as they are; the variadic keyword
		// map of default is small. Everything else it would convert.
		if k := orig[i].Kind(); k != reflect.Func && k != reflect.Interface && !(t.IsVariadic() && i == len(ins)-1) {
			ins[i] = anyType
		}
	}
	wt := reflect.FuncOf(ins, []reflect.Type{t.Out(0), errorType}, t.IsVariadic())
	zero := reflect.Zero(t.Out(0))
	fail := func(err error) []reflect.Value {
		return []reflect.Value{zero, reflect.ValueOf(&err).Elem()}
	}
	return reflect.MakeFunc(wt, func(args []reflect.Value) []reflect.Value {
		if err := b.step(); err != nil {
			return fail(err)
		}
		raw := make([]any, len(args))
		cost := 0
		for i, a := range args {
			if a.Kind() == reflect.Interface && !a.IsNil() {
				raw[i] = a.Elem().Interface()
			}
			if ins[i] != orig[i] {
				cost = addSat(cost, convCost(raw[i], orig[i]))
			}
		}
		if cost > 0 {
			if err := b.charge(cost); err != nil {
				return fail(err)
			}
		}
		for i := range args {
			if ins[i] == orig[i] {
				continue
			}
			if raw[i] == nil {
				args[i] = reflect.Zero(orig[i])
			} else {
				args[i] = reflect.ValueOf(values.MustConvert(raw[i], orig[i]))
			}
		}
		if n := transient(name, args); n > 0 {
			if err := b.charge(n); err != nil {
				return fail(err)
			}
		}
		if n := estimate(name, args); n > MaxWorkBytes-b.bytes {
			return fail(b.fail("filter %s would produce about %d bytes", name, n))
		}
		var out []reflect.Value
		if t.IsVariadic() {
			out = v.CallSlice(args)
		} else {
			out = v.Call(args)
		}
		if len(out) > 1 && !out[1].IsNil() {
			return []reflect.Value{zero, out[1]}
		}
		if err := b.charge(size(out[0])); err != nil {
			return fail(err)
		}
		return []reflect.Value{out[0], reflect.Zero(errorType)}
	}).Interface()
}

var anyType = reflect.TypeFor[any]()

// addSat adds two costs, saturating above MaxWorkBytes so that a range's
// length times 16 cannot overflow into a small or negative number.
func addSat(a, b int) int {
	if a > MaxWorkBytes || b > MaxWorkBytes || a+b > MaxWorkBytes {
		return MaxWorkBytes + 1
	}
	return a + b
}

// items is the cost of n list elements of each bytes, saturating.
func items(n, each int) int {
	if n <= 0 {
		return 0
	}
	if n > (MaxWorkBytes+1)/each {
		return MaxWorkBytes + 1
	}
	return n * each
}

// convCost is what values.Convert(x, typ) builds, computed without building
// it: nothing when x already has a type convertible to typ; 16 bytes an
// element when a range, list or map becomes a new list; the printed size
// when a non-string becomes a string.
func convCost(x any, typ reflect.Type) int {
	if x == nil {
		return 0
	}
	rv := reflect.ValueOf(x)
	if typ.Kind() != reflect.String && rv.Type().ConvertibleTo(typ) {
		return 0
	}
	switch typ.Kind() {
	case reflect.Slice:
		return listCost(x)
	case reflect.String:
		return printedSize(rv, 0)
	}
	return 0
}

// listCost is the cost of turning x into a new list: a range's length or a
// list's or map's, 16 bytes an element.
func listCost(x any) int {
	if r, ok := x.(values.Range); ok {
		return items(r.Len(), 16)
	}
	switch rv := reflect.ValueOf(x); rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return items(rv.Len(), 16)
	}
	return 0
}

// printedSize is an upper estimate of the bytes of fmt.Sprint(v), stopping
// once it exceeds the work budget (so a large list is walked at most
// once, and no further than needed). depth stops a self-referencing value.
func printedSize(v reflect.Value, depth int) int {
	if v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 8
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return v.Len()
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return 4 * v.Len()
		}
		if depth > 32 {
			return MaxWorkBytes + 1
		}
		n := 2
		if v.Kind() == reflect.Map {
			for it := v.MapRange(); it.Next() && n <= MaxWorkBytes; {
				n = addSat(n, addSat(printedSize(it.Key(), depth+1), printedSize(it.Value(), depth+1)+2))
			}
			return n
		}
		for i := 0; i < v.Len() && n <= MaxWorkBytes; i++ {
			n = addSat(n, printedSize(v.Index(i), depth+1)+1)
		}
		return n
	}
	return 64
}

// transient is the memory a filter builds from its (converted) input
// beyond its result, charged before it runs: slice and truncate turn a
// string into runes, slice turns a range or other list into a new list,
// truncatewords splits into words, uniq keeps a set of the elements.
func transient(name string, args []reflect.Value) int {
	if len(args) == 0 {
		return 0
	}
	in := args[0]
	if in.Kind() == reflect.Interface && !in.IsNil() {
		in = in.Elem()
	}
	if !in.IsValid() {
		return 0
	}
	switch name {
	case "slice":
		if in.Kind() == reflect.String {
			return items(in.Len(), 4)
		}
		if in.Kind() == reflect.Slice && in.Type().Elem().Kind() == reflect.Uint8 {
			return items(in.Len(), 5)
		}
		return convCost(in.Interface(), anySliceType)
	case "truncate":
		if in.Kind() == reflect.String {
			return items(in.Len(), 4)
		}
	case "truncatewords":
		if in.Kind() == reflect.String {
			return items(fields(in.String()), 16)
		}
	case "uniq":
		if in.Kind() == reflect.Slice {
			return items(in.Len(), 32)
		}
	}
	return 0
}

var anySliceType = reflect.TypeFor[[]any]()

// fields counts the words strings.Fields would return, without building
// them.
func fields(s string) int {
	n, inWord := 0, false
	for _, r := range s {
		space := unicode.IsSpace(r)
		if !space && !inWord {
			n++
		}
		inWord = !space
	}
	return n
}

// size is what a filter's result costs: a string's bytes, 16 bytes for each
// element of a list or map.
func size(v reflect.Value) int {
	if v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return v.Len()
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		return 16 * v.Len()
	}
	return 0
}

// str is the string argument i; an optional argument arrives as a function
// from its default to its value.
func str(args []reflect.Value, i int, def string) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	v := args[i]
	if v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	if f, ok := v.Interface().(func(string) string); ok && f != nil {
		return f(def), true
	}
	if v.Kind() != reflect.String {
		return "", false
	}
	return v.String(), true
}

// estimate is an upper bound on the bytes of the filters whose result can be
// much larger than their arguments; 0 for the others (their result is
// charged after the call).
func estimate(name string, args []reflect.Value) int {
	switch name {
	case "replace", "replace_first", "replace_last":
		s, ok1 := str(args, 0, "")
		old, ok2 := str(args, 1, "")
		repl, _ := str(args, 2, "")
		if !ok1 || !ok2 || len(repl) <= len(old) {
			return 0
		}
		n := 1
		if name == "replace" {
			n = strings.Count(s, old)
		}
		return len(s) + n*(len(repl)-len(old))
	case "join":
		if len(args) == 0 {
			return 0
		}
		list := args[0]
		if list.Kind() == reflect.Interface && !list.IsNil() {
			list = list.Elem()
		}
		if list.Kind() != reflect.Slice && list.Kind() != reflect.Array {
			return 0
		}
		sep, ok := str(args, 1, " ")
		if !ok {
			sep = " "
		}
		total := list.Len() * len(sep)
		for i := range list.Len() {
			total += size(list.Index(i)) + 16
		}
		return total
	case "split":
		s, _ := str(args, 0, "")
		sep, _ := str(args, 1, "")
		if sep == "" {
			return 16 * (len(s) + 1)
		}
		return 16 * (strings.Count(s, sep) + 1)
	}
	return 0
}

// instrument makes the work of a compiled template countable: every for and
// tablerow body begins with a step tag (so an iteration is counted even when
// the body is empty), and every capture's body renders through a bounded
// writer. Both are compiled with cfg, at the block's own line.
func instrument(cfg *render.Config, n render.Node) error {
	switch x := n.(type) {
	case *render.SeqNode:
		for _, c := range x.Children {
			if err := instrument(cfg, c); err != nil {
				return err
			}
		}
	case *render.BlockNode:
		for _, c := range x.Body {
			if err := instrument(cfg, c); err != nil {
				return err
			}
		}
		for _, c := range x.Clauses {
			if err := instrument(cfg, c); err != nil {
				return err
			}
		}
		switch x.Name {
		case "for", "tablerow":
			step, err := compileOne(cfg, "{% "+stepTag+" %}", x.SourceLoc)
			if err != nil {
				return err
			}
			x.Body = append([]render.Node{step}, x.Body...)
		case "capture":
			node, err := compileOne(cfg, "{% "+boundTag+" %}{% end"+boundTag+" %}", x.SourceLoc)
			if err != nil {
				return err
			}
			bound, ok := node.(*render.BlockNode)
			if !ok {
				return fmt.Errorf("instrumenting capture: got %T", node)
			}
			bound.Body = x.Body
			x.Body = []render.Node{bound}
		}
	}
	return nil
}

// compileOne compiles a one-node template and returns that node.
func compileOne(cfg *render.Config, src string, loc parser.SourceLoc) (render.Node, error) {
	root, err := cfg.Compile(src, loc)
	if err != nil {
		return nil, err
	}
	if seq, ok := root.(*render.SeqNode); ok && len(seq.Children) == 1 {
		return seq.Children[0], nil
	}
	return nil, fmt.Errorf("instrumenting the template: %q compiled to %T", src, root)
}
