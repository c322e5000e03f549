// Package frontmatter splits a Markdown document into its YAML front matter
// (between a first line of --- and the next line of ---) and its body. Both
// WORKFLOW.md and the files tracker's issues use this format.
package frontmatter

import (
	"bytes"
	"errors"
)

// ErrUnclosed is returned when the opening --- has no closing ---.
var ErrUnclosed = errors.New("front matter opened with --- on line 1 is never closed (add a --- line after it)")

// Split returns the front matter and the body of data. bodyLine is the
// 1-based line where the body begins. A document that does not start with
// --- has no front matter: all of it is body. A UTF-8 byte order mark is
// ignored.
func Split(data []byte) (front, body []byte, bodyLine int, err error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	first, rest, found := bytes.Cut(data, []byte("\n"))
	if !isFence(first) {
		return nil, data, 1, nil
	}
	if !found {
		return nil, nil, 0, ErrUnclosed
	}
	line := 2
	for off := 0; off <= len(rest); line++ {
		end := bytes.IndexByte(rest[off:], '\n')
		ln, next := rest[off:], len(rest)+1
		if end >= 0 {
			ln, next = rest[off:off+end], off+end+1
		}
		if isFence(ln) {
			if next > len(rest) {
				return rest[:off], nil, line + 1, nil
			}
			return rest[:off], rest[next:], line + 1, nil
		}
		off = next
	}
	return nil, nil, 0, ErrUnclosed
}

func isFence(line []byte) bool {
	return string(bytes.TrimRight(line, " \t\r")) == "---"
}
