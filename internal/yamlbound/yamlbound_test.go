package yamlbound

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// aliasBomb is the 600-byte file: ten levels of ten aliases each,
// 10¹⁰ leaves expanded.
func aliasBomb(field string) string {
	var b strings.Builder
	b.WriteString("title: t\nstate: Todo\na0: &a0 [x,x,x,x,x,x,x,x,x,x]\n")
	for i := 1; i <= 10; i++ {
		b.WriteString("a" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString("*a" + strconv.Itoa(i-1))
		}
		b.WriteString("]\n")
	}
	b.WriteString(field + ": *a10\n")
	return b.String()
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func deepInputs(n int) map[string]string {
	// Block maps need the square of their depth in bytes: 700 levels are
	// 250 KB, under MaxBytes.
	var blockMap strings.Builder
	for i := range min(n, 700) {
		blockMap.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	return map[string]string{
		"flow sequences": "a: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n",
		"flow maps":      "a: " + strings.Repeat("{a: ", n) + strings.Repeat("}", n) + "\n",
		"block entries":  "a:\n" + strings.Repeat("- ", n) + "x\n",
		"block maps":     blockMap.String(),
		"mixed":          "a:\n" + strings.Repeat("- [", n) + strings.Repeat("]", n) + "\n",
	}
}

// TestDeepNestingRefusedCheaply: a 100,000-deep `[[[…]]]` (200 KB) made the
// parser allocate about 15 GB (2.2 GB seen through WORKFLOW.md); nesting
// deeper than MaxDepth is refused from the lexer's tokens, in memory
// proportional to the input (the bound here is 2 KB per input byte; the old
// parser needed 75 KB per byte at this depth and grows with the depth).
// 50,000 levels keep every style under MaxBytes.
func TestDeepNestingRefusedCheaply(t *testing.T) {
	for name, src := range deepInputs(50000) {
		var err error
		n := allocated(func() { _, err = Parse([]byte(src)) })
		var ye *Error
		if !errors.As(err, &ye) || !strings.Contains(ye.Message, "nested more than") || ye.Line == 0 {
			t.Errorf("%s: err = %v, want a positioned nesting error", name, err)
		}
		if limit := uint64(2048 * len(src)); n > limit {
			t.Errorf("%s: refusing %d bytes allocated %d bytes, want at most %d", name, len(src), n, limit)
		}
	}
}

// TestNestingUpToTheLimitParses: documents nested MaxDepth/2 deep in every
// style parse; a real configuration is a few levels deep.
func TestNestingUpToTheLimitParses(t *testing.T) {
	for name, src := range deepInputs(MaxDepth / 2) {
		if _, err := Parse([]byte(src)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, src := range deepInputs(MaxDepth + 1) {
		if _, err := Parse([]byte(src)); err == nil {
			t.Errorf("%s: depth %d accepted", name, MaxDepth+1)
		}
	}
}

// TestAliasBombRefused: the alias bomb is refused, with a bounded
// message, in memory proportional to its 600 bytes.
func TestAliasBombRefused(t *testing.T) {
	src := aliasBomb("labels")
	var err error
	n := allocated(func() { _, _, _, err = Decode([]byte(src)) })
	if err == nil || !strings.Contains(err.Error(), "aliases expand") {
		t.Fatalf("err = %v, want the alias expansion refused", err)
	}
	if n > 4<<20 {
		t.Errorf("refusing a %d-byte bomb allocated %d bytes", len(src), n)
	}
}

// TestModestAliasesDecode: an anchor reused a few times (shared blocks of
// configuration) decodes as before.
func TestModestAliasesDecode(t *testing.T) {
	src := "base: &b {x: 1, y: [a, b]}\none: *b\ntwo: {<<: *b, z: 2}\nlist: &l [1, 2, 3]\nmore: [*l, *l]\n"
	v, _, docs, err := Decode([]byte(src))
	if err != nil || docs != 1 {
		t.Fatalf("Decode: %v (%d docs)", err, docs)
	}
	m := v.(map[string]any)
	if m["one"].(map[string]any)["x"] != uint64(1) || m["two"].(map[string]any)["z"] != uint64(2) || len(m["more"].([]any)) != 2 {
		t.Fatalf("decoded %v", v)
	}
}

// TestDescribeIsBounded: Describe never walks a value, whatever its size.
func TestDescribeIsBounded(t *testing.T) {
	huge := make([]any, 10)
	for i := range huge {
		huge[i] = huge // a list that contains itself: %v would never end
	}
	for _, v := range []any{huge, strings.Repeat("é", 1000), map[string]any{"a": huge}, nil, uint64(7), 1.5, true, struct{}{}} {
		if s := Describe(v); len(s) > 60 {
			t.Errorf("Describe gave %d bytes: %q", len(s), s)
		}
	}
	if s := Describe(strings.Repeat("é", 1000)); !strings.HasSuffix(s, `…"`) || strings.Contains(s, "\\x") {
		t.Errorf("cut inside a character: %s", s)
	}
}

// realDepth is the parsed tree's depth, counted like checkTree but without
// its bound (inputs here are small).
func realDepth(n ast.Node) int {
	deepest := 0
	var walk func(ast.Node, int)
	walk = func(n ast.Node, d int) {
		if n == nil {
			return
		}
		deepest = max(deepest, d)
		switch x := n.(type) {
		case *ast.MappingNode:
			for _, v := range x.Values {
				walk(v, d+1)
			}
		case *ast.MappingValueNode:
			walk(x.Key, d)
			walk(x.Value, d)
		case *ast.MappingKeyNode:
			walk(x.Value, d)
		case *ast.SequenceNode:
			for _, v := range x.Values {
				walk(v, d+1)
			}
		case *ast.SequenceEntryNode:
			walk(x.Value, d)
		case *ast.TagNode:
			walk(x.Value, d)
		case *ast.AnchorNode:
			walk(x.Value, d)
		}
	}
	walk(n, 0)
	return deepest
}

// FuzzParse: whatever the input, the token scan never lets a document much
// deeper than MaxDepth reach the parser (its cost grows with the square of
// the depth), an accepted document is at most MaxDepth deep, and its value
// with aliases expanded is bounded.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a: 1\n", "a:\n- b:\n  - c: [1, {d: e}]\n", "? a\n: b\n", "- - - x\n",
		aliasBomb("labels"), aliasBomb("priority"), "a: &a [*a]\n", "a: &a {b: *a}\n",
		"base: &b {x: 1}\ntwo: {<<: *b, z: 2}\n", "a: *undefined\n", "--- [[[1]]]\n--- {a: [b]}\n",
		"a: " + strings.Repeat("[", MaxDepth+1) + "\n", "a:\n" + strings.Repeat("- ", MaxDepth) + "x\n",
		"a: |\n  - - - - \n  [[[[\n", "a: '[[[[[['\n", "# [[[[[[\n",
		"a: {" + strings.Repeat("k: v, ", 100) + "k: v}\n", "a: [" + strings.Repeat("x,", 500) + "x]\n",
		strings.Repeat("k: v\n", 50), "? k\n: v\n? k\n: v\n", "{k: v, k: v}\n", strings.Repeat("#\n", 200),
		"a: [" + strings.Repeat("!!str &x y, ", 50) + "*x]\n", strings.Repeat("---\n...\n", 100),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		if scanDepth(string(data)) == nil {
			if file, err := parser.ParseBytes(data, 0); err == nil {
				for _, doc := range file.Docs {
					if d := realDepth(doc.Body); d > 2*MaxDepth+2 {
						t.Fatalf("token scan passed a document %d deep", d)
					}
				}
			}
		}
		file, err := Parse(data)
		if err != nil {
			var ye *Error
			if !errors.As(err, &ye) || ye.Message == "" {
				t.Fatalf("unpositioned or empty error %v", err)
			}
			if len(ye.Message) > 400 || strings.Contains(ye.Message, "\n") {
				t.Fatalf("error message of %d bytes or on several lines (quoting the source?): %.500q", len(ye.Message), ye.Message)
			}
			return
		}
		for _, doc := range file.Docs {
			if d := realDepth(doc.Body); d > MaxDepth {
				t.Fatalf("accepted a document %d deep", d)
			}
			tr := &tree{anchors: map[string]int{}}
			expanded, err := tr.walk(doc.Body, 0)
			if err != nil || expanded-tr.written > MaxAliasNodes {
				t.Fatalf("accepted a document whose aliases add %d nodes (%v)", expanded-tr.written, err)
			}
		}
		if v, _, _, err := Decode(data); err == nil {
			_ = Describe(v)
		}
	})
}

// TestLongLinesAndManyEntriesRefusedCheaply: a one-line flow map with a
// duplicate key cost 1.7 s and 4.9 GB at 120 KB and 80 s and 334 GB at
// 1 MB (go-yaml's Error method quotes the lines around the error, building
// each line a token at a time, so its cost grows with the square of the
// line's length); a 1 MB `[x,x,…]` allocated 782 MB and was accepted, and a
// 1 MB `[[[…` allocated 242 MB before it was refused. Each is now refused
// with a short positioned message after at most a few tens of MB: the
// error is never formatted by go-yaml, the source is at most MaxBytes, and
// the token scan stops at MaxEntries entries and MaxTokens tokens.
func TestLongLinesAndManyEntriesRefusedCheaply(t *testing.T) {
	// A duplicate key at the end of a line of 240 KB: under MaxBytes and
	// MaxEntries, so the parser runs and reports it.
	var dupEnd strings.Builder
	dupEnd.WriteString("a: {")
	for i := 0; dupEnd.Len() < 240<<10; i++ {
		dupEnd.WriteString("key" + strconv.Itoa(i) + ": " + strings.Repeat("v", 40) + ", ")
	}
	dupEnd.WriteString("key0: v}\n")
	const mb = 1 << 20
	cases := []struct{ name, src, want string }{
		{"duplicate key at the end of a long line", dupEnd.String(), `mapping key "key0" already defined`},
		{"duplicate keys, 24 KB", "a: {" + strings.Repeat("k: v, ", 4000) + "k: v}\n", "already defined"},
		{"duplicate keys, 1 MB", "a: {" + strings.Repeat("k: v, ", mb/6) + "k: v}\n", "more than the 262144"},
		{"duplicate keys, 250 KB", "a: {" + strings.Repeat("k: v, ", 250000/6) + "k: v}\n", "more than 10000 list entries and map keys"},
		{"flat sequence, 1 MB", "a: [" + strings.Repeat("x,", mb/2) + "x]\n", "more than the 262144"},
		{"flat sequence, 250 KB", "a: [" + strings.Repeat("x,", 125000) + "x]\n", "more than 10000 list entries and map keys"},
		{"open brackets, 1 MB", "a: " + strings.Repeat("[", mb) + "\n", "more than the 262144"},
		{"open brackets, 250 KB", "a: " + strings.Repeat("[", 250000) + "\n", "nested more than"},
		{"comments", strings.Repeat("#\n", MaxTokens+1), "more than 50000 YAML tokens"},
	}
	for _, c := range cases {
		var err error
		start := time.Now()
		n := allocated(func() { _, _, _, err = Decode([]byte(c.src)) })
		took := time.Since(start)
		var ye *Error
		if !errors.As(err, &ye) || !strings.Contains(ye.Message, c.want) || len(ye.Message) > 200 {
			t.Errorf("%s: err = %.300v, want a short one containing %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(c.want, "entries") && ye.Line != 1 {
			t.Errorf("%s: error at line %d, want 1", c.name, ye.Line)
		}
		// The worst of these takes about 80 ms and 65 MB; the bounds are
		// generous (a loaded machine, the race detector) yet far below the
		// seconds and GB before.
		if n > 150<<20 || took > 20*time.Second {
			t.Errorf("%s: %d bytes refused after %d MB and %v", c.name, len(c.src), n>>20, took)
		}
	}
}

// TestEntryAndSizeBoundsAreExact: MaxEntries entries and MaxBytes bytes
// are accepted, one more is refused, with the line of the entry too many.
func TestEntryAndSizeBoundsAreExact(t *testing.T) {
	list := strings.Repeat("- x\n", MaxEntries)
	if _, err := Parse([]byte(list)); err != nil {
		t.Fatalf("%d entries: %v", MaxEntries, err)
	}
	_, err := Parse([]byte(list + "- x\n"))
	var ye *Error
	if !errors.As(err, &ye) || ye.Line != MaxEntries+1 || !strings.Contains(ye.Message, "list entries and map keys") {
		t.Fatalf("%d entries: %v", MaxEntries+1, err)
	}
	long := "a: " + strings.Repeat("x", MaxBytes-4) + "\n"
	if _, err := Parse([]byte(long)); err != nil {
		t.Fatalf("%d bytes: %v", len(long), err)
	}
	if _, err := Parse([]byte(long + "\n")); err == nil || !strings.Contains(err.Error(), "256 KiB") {
		t.Fatalf("%d bytes: %v", len(long)+1, err)
	}
}

// TestGoYAMLMessagesAreCut: some of go-yaml's messages quote the source
// (a block scalar's header, found by FuzzParse: "invalid header option"
// followed by the rest of the line); the message kept is one line of at
// most 200 bytes, cut on a character boundary.
func TestGoYAMLMessagesAreCut(t *testing.T) {
	_, err := Parse([]byte("a: |0" + strings.Repeat("é,", 2000) + "\n"))
	var ye *Error
	if !errors.As(err, &ye) || !utf8.ValidString(ye.Message) || len(ye.Message) > 200+len("…") || strings.Contains(ye.Message, "\n") {
		t.Fatalf("err = %.400q", err)
	}
}
