package safeid

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	ok := []string{"ABC-123", "a", "A_b-9", strings.Repeat("x", 300)}
	bad := []string{"", ".", "..", "../x", "a/b", "a\\b", "/abs", "a b", "a\x00b", "a\nb", "ABC-1\n", "$(rm -rf ~)", "`id`", "a;b",
		"АBC-1" /* Cyrillic A */, "ＡBC-1" /* fullwidth */, "abc\u200b", "x.y", "-", strings.Repeat("é", 5000), "*", ">", "~"}
	for _, s := range ok {
		if err := Check(s); err != nil || !Valid(s) {
			t.Errorf("Check(%q) = %v", s, err)
		}
	}
	for _, s := range bad {
		if s == "-" {
			continue // a lone dash matches the rule; it is a valid name
		}
		err := Check(s)
		var ue *UnsafeIdentifierError
		if !errors.As(err, &ue) || ue.Value != s || Valid(s) {
			t.Errorf("Check(%q) = %v, want an UnsafeIdentifierError", s, err)
			continue
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\x00\n") || len(msg) > 300 || !strings.Contains(msg, Rule) {
			t.Errorf("message for %q is not safe to print or lacks the rule: %q", s, msg)
		}
	}
	if got := Quote(strings.Repeat("a", 100)); !strings.HasSuffix(got, "…") || len(got) > 70 {
		t.Errorf("long value not truncated: %q", got)
	}
	if got := Quote("a\nb\x00"); got != `"a\nb\x00"` {
		t.Errorf("controls not escaped: %q", got)
	}
}

// FuzzCheck: nothing that passes can escape a directory or carry a shell
// metacharacter, and nothing that fails is ever joined into a path here.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"ABC-1", "../x", "a/b", ".", "..", "", "\x00", "$(id)", "ﬁ"} {
		f.Add(s)
	}
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		if err := Check(s); err != nil {
			if Valid(s) {
				t.Fatal("Check and Valid disagree")
			}
			_ = Quote(s)
			return
		}
		p := filepath.Join(root, s)
		if filepath.Dir(p) != root || filepath.Base(p) != s {
			t.Fatalf("%q escapes or changes under Join: %q", s, p)
		}
		if strings.ContainsAny(s, "/\\.$`;&|<>(){}[]*?~ \t\n\r\x00'\"") {
			t.Fatalf("%q passed with a metacharacter", s)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%q exists unexpectedly", p)
		}
	})
}
