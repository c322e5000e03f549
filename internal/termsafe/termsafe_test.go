package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile holds what an issue author can put in a title: ESC sequences
// (CSI clear screen, OSC window title ended by BEL, OSC 52 clipboard
// write ended by ST), a carriage return that hides what came before, the
// 8-bit CSI U+009B and NEL U+0085, DEL, a lone 0x9B byte and other
// invalid UTF-8.
var hostile = []string{
	"\x1b[2J\x1b[H",
	"\x1b]0;pwned\x07",
	"\x1b]52;c;ZWNobyBoaQ==\x1b\\",
	"fine\rFORGED",
	"\u009b31mred\u0085next",
	"del\x7f",
	"lone \x9b byte \xff\xfe",
	"cut \xe2\x82",
	"\x00\x01\x08\x0c\x1f",
}

// unsafeByte reports the first raw control byte in s (C0 other than the
// allowed layout, DEL, or the lead and second byte of a UTF-8 C1) and
// whether s is valid UTF-8.
func unsafeByte(s string, allowLayout bool) (int, bool) {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return i, true
		case (r == '\n' || r == '\t') && allowLayout:
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return i, true
		}
	}
	return -1, false
}

func TestEscapesControlsKeepsLayout(t *testing.T) {
	for _, in := range hostile {
		for _, f := range []struct {
			name   string
			fn     func(string) string
			layout bool
		}{{"String", String, true}, {"Line", Line, false}} {
			out := f.fn(in + "\ttab\nline")
			if i, bad := unsafeByte(out, f.layout); bad {
				t.Errorf("%s(%q) = %q: raw control at byte %d", f.name, in, out, i)
			}
			if f.fn(out) != out {
				t.Errorf("%s is not stable: %q → %q", f.name, out, f.fn(out))
			}
		}
	}
	for in, want := range map[string]string{
		"\x1b]0;x\x07":   `\u001b]0;x\u0007`,
		"a\u009bb":       `a\u009bb`,
		"\x9b\xff":       "\uFFFD\uFFFD",
		"a\rb\x7f":       `a\rb\u007f`,
		"tab\there\nnl":  "tab\there\nnl",
		"héllo 世界 ✓":     "héllo 世界 ✓",
		"\u00a0\u0100ok": "\u00a0\u0100ok",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Line("a\tb\nc"); got != `a\tb\nc` {
		t.Errorf("Line must escape tab and newline: %q", got)
	}
}

// TestJSONStaysValid: JSON with raw C1 and DEL in its strings (what
// encoding/json and slog's JSON handler emit) is still valid and decodes
// to the same value after the Writer.
func TestJSONStaysValid(t *testing.T) {
	v := map[string]string{"title": "a\u009b[2Jb\u0085c\x7fd\x1b]0;x\x07"}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := NewWriter(&out).Write(raw); err != nil {
		t.Fatal(err)
	}
	if _, bad := unsafeByte(out.String(), true); bad {
		t.Fatalf("raw control left: %q", out.String())
	}
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["title"] != v["title"] {
		t.Fatalf("JSON changed: %q → %v %q", raw, err, back["title"])
	}
}

// TestWriterJoinsSplitCharacters: a character split across Writes is
// written whole, not as two replacement characters.
func TestWriterJoinsSplitCharacters(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	in := []byte("x世\u009b✓y")
	for i := range in {
		if n, err := w.Write(in[i : i+1]); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != `x世\u009b✓y` {
		t.Errorf("got %q", got)
	}
	out.Reset()
	_, _ = w.Write([]byte("end\xe4\xb8"))
	if out.String() != "end" {
		t.Errorf("an incomplete character must wait: %q", out.String())
	}
	_ = w.Flush()
	if out.String() != "end\uFFFD\uFFFD" {
		t.Errorf("Flush must write what waited, replaced: %q", out.String())
	}
}

// FuzzEscape: whatever the input, the output holds no raw control byte
// and is valid UTF-8; escaping is stable; the Writer, fed the input in
// two pieces, writes what String returns; text without controls and in
// valid UTF-8 is unchanged.
func FuzzEscape(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, 1)
	}
	f.Add("plain ascii\twith\nlayout", 3)
	f.Add("世界\u009b", 4)
	f.Fuzz(func(t *testing.T, s string, split int) {
		out := String(s)
		if i, bad := unsafeByte(out, true); bad || !utf8.ValidString(out) {
			t.Fatalf("String(%q) = %q: control at %d", s, out, i)
		}
		line := Line(s)
		if i, bad := unsafeByte(line, false); bad || !utf8.ValidString(line) {
			t.Fatalf("Line(%q) = %q: control at %d", s, line, i)
		}
		if String(out) != out || Line(line) != line {
			t.Fatal("escaping is not stable")
		}
		if _, bad := unsafeByte(s, true); !bad && utf8.ValidString(s) && out != s {
			t.Fatalf("clean text changed: %q → %q", s, out)
		}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		k := 0
		if len(s) > 0 {
			k = (split%len(s) + len(s)) % len(s)
		}
		_, _ = w.Write([]byte(s[:k]))
		_, _ = w.Write([]byte(s[k:]))
		_ = w.Flush()
		if buf.String() != out {
			t.Fatalf("Writer in two pieces at %d: %q, String: %q", k, buf.String(), out)
		}
	})
}

func BenchmarkWriterLogLine(b *testing.B) {
	line := []byte(`time=2026-12-07T17:31:50.787Z level=INFO msg="hook finished" component=workspace issue_id=abc issue_identifier=ABC-1 hook=before_run duration=12ms` + "\n")
	w := NewWriter(discard{})
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_, _ = w.Write(line)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
