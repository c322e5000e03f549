// Package yamlbound parses YAML from outside (WORKFLOW.md front matter, the
// files tracker's issue files) with work bounded by the size of the input.
//
// The YAML library (github.com/goccy/go-yaml) has no option for any of
// these bounds, and these inputs cost far more than their bytes:
//
//   - Errors on long lines. go-yaml's Error method quotes the lines around
//     the error's token and builds each line by appending one token at a
//     time to a copy of it: a one-line map of 1 MB with a duplicate key cost
//     80 s and 334 GB to report. Its errors are read through GetMessage and
//     GetToken instead (see wrap).
//   - Many tokens. Its lexer makes about 250 bytes of token for every `[`,
//     `,` or `x` of a line and hands over a whole line at once; its parser
//     and decoder add their nodes. The source is at most MaxBytes, and the
//     lexer's tokens are counted (MaxEntries, MaxTokens) before the parser
//     runs.
//   - Deep nesting. Its parser's work grows with the square of the depth (a
//     200 KB `[[[…]]]` of depth 100,000 allocates about 15 GB; `- - - …`
//     likewise). Depth is therefore measured on the lexer's tokens, which
//     cost time and memory in proportion to the bytes, before the parser
//     runs (stopping at the first token too deep), and again on the
//     parsed tree.
//   - Aliases. `a1: &a1 [*a0, *a0, …]` ten levels deep is a few hundred bytes
//     whose value, expanded, has 10⁹ leaves. The decoded value shares the
//     anchored lists, so decoding is cheap, but anything that walks the value
//     (an error message formatting it, a loop over it) pays for every leaf.
//     The parsed tree's size with every alias expanded is computed with each
//     anchor's size counted once, and a document whose aliases add more than
//     MaxAliasNodes nodes to it is refused.
//
// Values are quoted in error messages only through Describe, which is bounded
// whatever the value.
package yamlbound

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/scanner"
	"github.com/goccy/go-yaml/token"
)

// MaxDepth is the deepest nesting of lists and maps accepted. The
// configuration and issue files need a handful of levels.
const MaxDepth = 64

// MaxBytes is the longest YAML source accepted. go-yaml's lexer makes a
// token of about 250 bytes (the token, its position, its buffers) for every
// `[`, `,` or `x` of a line, and hands over a whole line's tokens at once, so
// a one-line `[[[…` or `[x,x,…]` of 1 MB made 240-780 MB of tokens before any
// other bound could look at them. 256 KiB keeps the worst line near 64 MB;
// front matter (a configuration, an issue's fields) needs a few KiB, and the
// Markdown after it (the prompt, the description) is not YAML and is
// not counted here.
const MaxBytes = 256 << 10

// MaxEntries is how many collection entries a source may hold, counted on
// the lexer's marks `:`, `?`, `-` and `,`: an entry of a block list or map
// makes one mark, one of a flow list one or two (`[a, b]`), one of a flow
// map two (`{k: v, …}`), so between 5,000 and 10,000 entries. An issue keeps
// at most 100 labels and 50 blockers and a configuration a few hundred
// values; 10,000 marks parse in tens of milliseconds, while the parser and
// decoder's nodes for a 1 MB list of 500,000 cost 780 MB.
const MaxEntries = 10000

// MaxTokens is how many lexer tokens (spaces not counted) a source may hold:
// the entries' keys and values, and also comments, anchors, tags and
// document markers, which MaxEntries does not count.
const MaxTokens = 50000

// MaxAliasNodes is how many nodes aliases may add to a document beyond those
// written in it: a few shared blocks of configuration fit, an alias bomb does
// not.
const MaxAliasNodes = 10000

// Error is a refused or malformed document; Line and Column are 1-based in
// the parsed text (0 when unknown).
type Error struct {
	Line, Column int
	Message      string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	return e.Message
}

// yamlError is implemented by go-yaml's positioned errors.
type yamlError interface {
	GetToken() *token.Token
	GetMessage() string
}

// wrap turns a go-yaml error into an *Error. Its Error method is never
// called on a positioned error: that method quotes the lines around the
// error's token, and its printer builds each line by appending one token
// at a time to a new copy of the line, so its cost grows with the square of
// the line's length (a one-line flow map of 120 KB with a duplicate key
// cost 1.7 s and 4.9 GB, of 1 MB 80 s and 334 GB, to format).
func wrap(err error) *Error {
	var ye yamlError
	if errors.As(err, &ye) {
		e := &Error{Message: oneLine(ye.GetMessage())}
		if tk := ye.GetToken(); tk != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
		return e
	}
	return &Error{Message: oneLine(err.Error())}
}

// maxMessage is the longest message kept from go-yaml: some of its
// messages quote the source (a block scalar's header, all of a long line).
const maxMessage = 200

// oneLine folds runs of white space, line breaks included, into one space
// and cuts the message to maxMessage bytes on a character boundary.
func oneLine(s string) string {
	s, cut := cutUTF8(s, 4*maxMessage) // Fields then works on a bounded string
	s = strings.Join(strings.Fields(s), " ")
	if s, more := cutUTF8(s, maxMessage); cut || more {
		return s + "…"
	}
	return s
}

// cutUTF8 cuts s to at most n bytes on a character boundary; cut says
// whether anything was cut.
func cutUTF8(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n], true
}

// Parse parses src after checking its nesting depth on the lexer's tokens,
// then checks the tree's depth and its size with aliases expanded. Errors
// are *Error.
func Parse(src []byte) (*ast.File, error) {
	if len(src) > MaxBytes {
		return nil, &Error{Message: fmt.Sprintf("YAML of %d bytes, more than the %d (256 KiB) accepted", len(src), MaxBytes)}
	}
	if err := scanDepth(string(src)); err != nil {
		return nil, err
	}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, wrap(err)
	}
	for _, doc := range file.Docs {
		if err := checkTree(doc.Body); err != nil {
			return nil, err
		}
	}
	return file, nil
}

// Decode parses src (see Parse) and decodes its first document into a plain
// value: map[string]any, []any, string, numbers, bool or nil. An empty
// document is nil. docs is the number of documents in src.
func Decode(src []byte) (v any, file *ast.File, docs int, err error) {
	file, err = Parse(src)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, file, len(file.Docs), nil
	}
	if err := yaml.NodeToValue(file.Docs[0].Body, &v); err != nil {
		return nil, nil, 0, wrap(err)
	}
	return v, file, len(file.Docs), nil
}

func tooDeep(tk *token.Token) *Error {
	return &Error{Line: tk.Position.Line, Column: tk.Position.Column,
		Message: fmt.Sprintf("nested more than %d lists or maps deep", MaxDepth)}
}

// openBlock is a block collection the token scan is inside.
type openBlock struct {
	column int
	seq    bool
}

// scanDepth runs the scanner (the lexer's own loop) chunk by chunk and stops
// at the first token nested too deep or past MaxEntries or MaxTokens, so a
// deep or long document is refused after its first chunk too many rather
// than after all its tokens are built and parsed.
func scanDepth(src string) *Error {
	var s scanner.Scanner
	s.Init(src)
	var d depth
	for {
		tks, err := s.Scan()
		for _, tk := range tks {
			if e := d.token(tk); e != nil {
				return e
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// depth bounds the nesting depth before the parser sees the document.
// Flow collections ([ ] { }) are counted exactly. Block collections are
// tracked by indentation: a `-` opens a sequence at its column and a `:` or
// `?` a mapping at its key's column, unless one is already open there, and a
// line's first token closes every collection indented deeper (and a sequence
// at its own column unless it is a `-`). The count is an upper bound on the
// real depth within a factor of two, which is all the parser's cost needs.
//
// It also counts the tokens and the collection entries of the whole source
// (all its documents together).
type depth struct {
	flow    int
	blocks  []openBlock
	line    int
	prev    *token.Token
	tokens  int
	entries int
}

func (d *depth) token(tk *token.Token) *Error {
	if tk.Type == token.SpaceType {
		return nil
	}
	if d.tokens++; d.tokens > MaxTokens {
		return &Error{Line: tk.Position.Line, Column: tk.Position.Column,
			Message: fmt.Sprintf("more than %d YAML tokens (values, keys, punctuation, comments)", MaxTokens)}
	}
	switch tk.Type {
	case token.SequenceEntryType, token.MappingKeyType, token.MappingValueType, token.CollectEntryType:
		if d.entries++; d.entries > MaxEntries {
			return &Error{Line: tk.Position.Line, Column: tk.Position.Column,
				Message: fmt.Sprintf("more than %d list entries and map keys (counting each `:`, `?`, `-` and `,`)", MaxEntries)}
		}
	}
	switch tk.Type {
	case token.CommentType:
		return nil
	case token.DocumentHeaderType, token.DocumentEndType:
		d.flow, d.blocks, d.prev = 0, d.blocks[:0], nil
		d.line = tk.Position.Line
		return nil
	}
	if d.flow == 0 && tk.Position.Line != d.line {
		col := tk.Position.Column
		for len(d.blocks) > 0 {
			top := d.blocks[len(d.blocks)-1]
			if top.column > col || (top.column == col && top.seq && tk.Type != token.SequenceEntryType) {
				d.blocks = d.blocks[:len(d.blocks)-1]
				continue
			}
			break
		}
	}
	d.line = tk.Position.Line
	switch tk.Type {
	case token.SequenceStartType, token.MappingStartType:
		d.flow++
	case token.SequenceEndType, token.MappingEndType:
		if d.flow > 0 {
			d.flow--
		}
	case token.SequenceEntryType:
		if d.flow == 0 {
			d.blocks = open(d.blocks, tk.Position.Column, true)
		}
	case token.MappingKeyType:
		if d.flow == 0 {
			d.blocks = open(d.blocks, tk.Position.Column, false)
		}
	case token.MappingValueType:
		if d.flow == 0 {
			col := tk.Position.Column
			if d.prev != nil {
				col = d.prev.Position.Column
			}
			d.blocks = open(d.blocks, col, false)
		}
	}
	if d.flow+len(d.blocks) > MaxDepth {
		return tooDeep(tk)
	}
	d.prev = tk
	return nil
}

func open(blocks []openBlock, column int, seq bool) []openBlock {
	if n := len(blocks); n > 0 && blocks[n-1].column == column && blocks[n-1].seq == seq {
		return blocks
	}
	return append(blocks, openBlock{column: column, seq: seq})
}

// tree measures a parsed document: its depth and its node count, written
// and with aliases expanded.
type tree struct {
	anchors map[string]int // expanded size of each anchored value
	written int
}

// checkTree refuses a tree deeper than MaxDepth or whose aliases add more
// than MaxAliasNodes nodes. Its walk visits each written node once.
func checkTree(n ast.Node) error {
	t := &tree{anchors: map[string]int{}}
	expanded, err := t.walk(n, 0)
	if err != nil {
		return err
	}
	if expanded-t.written > MaxAliasNodes {
		return &Error{Message: fmt.Sprintf("aliases expand the document by more than %d values (an alias bomb?)", MaxAliasNodes)}
	}
	return nil
}

// limit caps sizes so that sums cannot overflow.
const limit = 1 << 40

func sat(a, b int) int { return min(a+b, limit) }

// walk returns n's size with aliases expanded.
func (t *tree) walk(n ast.Node, depth int) (int, error) {
	if n == nil {
		return 0, nil
	}
	if depth > MaxDepth {
		tk := n.GetToken()
		if tk == nil {
			return 0, &Error{Message: fmt.Sprintf("nested more than %d lists or maps deep", MaxDepth)}
		}
		return 0, tooDeep(tk)
	}
	t.written++
	size := 1
	add := func(c ast.Node, d int) error {
		s, err := t.walk(c, d)
		size = sat(size, s)
		return err
	}
	var err error
	switch x := n.(type) {
	case *ast.DocumentNode:
		err = add(x.Body, depth)
	case *ast.MappingNode:
		for _, v := range x.Values {
			if err = add(v, depth+1); err != nil {
				break
			}
		}
	case *ast.MappingValueNode:
		if err = add(x.Key, depth); err == nil {
			err = add(x.Value, depth)
		}
	case *ast.MappingKeyNode:
		err = add(x.Value, depth)
	case *ast.SequenceNode:
		for _, v := range x.Values {
			if err = add(v, depth+1); err != nil {
				break
			}
		}
	case *ast.SequenceEntryNode:
		err = add(x.Value, depth)
	case *ast.TagNode:
		err = add(x.Value, depth)
	case *ast.AnchorNode:
		var s int
		s, err = t.walk(x.Value, depth)
		size = sat(size, s)
		if x.Name != nil {
			t.anchors[x.Name.GetToken().Value] = s
		}
	case *ast.AliasNode:
		if x.Value != nil && x.Value.GetToken() != nil {
			size = sat(size, t.anchors[x.Value.GetToken().Value])
		}
	}
	return size, err
}

// describeLimit is the longest quoted string in a message.
const describeLimit = 40

// Describe names a decoded YAML value for an error message in bounded time
// and length: strings are quoted up to 40 bytes, lists and maps are named
// with their length, never walked.
func Describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if cut, more := cutUTF8(x, describeLimit); more {
			x = cut + "…"
		}
		return strconv.Quote(x)
	case []any:
		return fmt.Sprintf("a list of %d", len(x))
	case map[string]any:
		return fmt.Sprintf("a map of %d keys", len(x))
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprintf("a value of type %T", v)
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
