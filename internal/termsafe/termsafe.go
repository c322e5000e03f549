// Package termsafe makes outside text safe to show on an operator's
// terminal. Issue titles, agent output, tool input, hook output and the
// errors that quote them are written by others; a control character in
// them (ESC starting a CSI or OSC sequence, BEL, the 8-bit CSI U+009B)
// would let that text clear the screen, retitle the window, write the
// clipboard (OSC 52) or forge earlier lines. Every CLI output passes
// through here.
//
// The rule, one for all output, text and JSON alike:
//
//   - C0 controls (U+0000–U+001F) other than tab and newline, DEL (U+007F)
//     and C1 controls (U+0080–U+009F) are written as JSON-style escapes:
//     \b \f \r for those that have one, else \u00XX (ESC is \u001b). These
//     escapes are printable ASCII, and inside a JSON string they mean the
//     same character, so JSON output stays valid and means what it did.
//   - A byte that is not part of valid UTF-8 becomes U+FFFD, as JSON
//     encoders and UTF-8 terminals show it (a lone 0x9B byte is the 8-bit
//     CSI on a terminal that is not in UTF-8 mode).
//   - Tab and newline are kept by String and Writer (they are the layout
//     of tables and multi-line text) and escaped as \t and \n by Line, for
//     a field that must stay on its line.
//
// The result of each function is unchanged by a second pass.
package termsafe

import (
	"io"
	"sync"
	"unicode/utf8"
)

// String returns s with control characters escaped and invalid UTF-8
// replaced; tab and newline are kept.
func String(s string) string { return escape(s, false) }

// Line is String for a one-line field: tab and newline are escaped too.
func Line(s string) string { return escape(s, true) }

func escape(s string, oneLine bool) string {
	i := firstUnsafe(s, oneLine)
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	return string(appendEscaped(b, s[i:], oneLine))
}

// safe reports whether the ASCII byte c is written as it is.
func safe(c byte, oneLine bool) bool {
	if c >= 0x20 && c < 0x7f {
		return true
	}
	return !oneLine && (c == '\t' || c == '\n')
}

// firstUnsafe is the index of the first byte of s that needs attention
// (a control, a non-ASCII byte), or len(s).
func firstUnsafe[T string | []byte](s T, oneLine bool) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !safe(c, oneLine) {
			return i
		}
	}
	return len(s)
}

const hex = "0123456789abcdef"

// appendEscaped appends s to b, escaped.
func appendEscaped(b []byte, s string, oneLine bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if safe(c, oneLine) {
				b = append(b, c)
				continue
			}
			b = appendControl(b, rune(c))
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, "\uFFFD"...)
		case r >= 0x80 && r <= 0x9f:
			b = appendControl(b, r)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

func appendControl(b []byte, r rune) []byte {
	switch r {
	case '\b':
		return append(b, `\b`...)
	case '\f':
		return append(b, `\f`...)
	case '\n':
		return append(b, `\n`...)
	case '\r':
		return append(b, `\r`...)
	case '\t':
		return append(b, `\t`...)
	}
	return append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
}

// Writer escapes everything written through it (as String: tab and
// newline kept) before it reaches the destination. It is safe for
// concurrent use; each Write reaches the destination as one Write. A
// character split across two Writes is put together: up to three bytes
// of an incomplete UTF-8 sequence at the end of a Write wait for the
// next one, and Flush writes them (as U+FFFD) when no more is coming.
type Writer struct {
	mu    sync.Mutex
	dst   io.Writer
	carry []byte // an incomplete UTF-8 sequence from the last Write
	buf   []byte
}

// NewWriter returns a Writer to dst.
func NewWriter(dst io.Writer) *Writer { return &Writer{dst: dst} }

// Write escapes p and writes it. It reports len(p) when the destination
// took the escaped bytes, and the destination's error otherwise.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(w.carry) > 0 {
		p = append(w.carry, p...)
		w.carry = nil
	}
	// Hold back the start of a character the next Write completes.
	if k := incompleteTail(p); k > 0 {
		w.carry = append([]byte(nil), p[len(p)-k:]...)
		p = p[:len(p)-k]
	}
	if len(p) == 0 {
		return n, nil
	}
	if firstUnsafe(p, false) == len(p) {
		if _, err := w.dst.Write(p); err != nil {
			return 0, err
		}
		return n, nil
	}
	w.buf = appendEscaped(w.buf[:0], string(p), false)
	if _, err := w.dst.Write(w.buf); err != nil {
		return 0, err
	}
	if cap(w.buf) > 64<<10 {
		w.buf = nil // do not keep one huge write's buffer
	}
	return n, nil
}

// Flush writes a held incomplete character, escaped as invalid.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.carry) == 0 {
		return nil
	}
	b := appendEscaped(nil, string(w.carry), false)
	w.carry = nil
	_, err := w.dst.Write(b)
	return err
}

// incompleteTail is how many bytes at the end of p begin a UTF-8
// character that is not complete yet (0 when p ends on a boundary or
// with bytes that can never become valid).
func incompleteTail(p []byte) int {
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		c := p[len(p)-k]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(p[len(p)-k:]) {
				return 0
			}
			return k
		}
	}
	return 0
}
