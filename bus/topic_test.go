package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestSubjectBuilding(t *testing.T) {
	cases := []struct {
		tokens []string
		want   string
		err    bool
	}{
		{[]string{"r1", "started"}, "symphony.run.r1.started", false},
		{[]string{"r1"}, "", true},
		{[]string{"r1", "a", "b"}, "", true},
		{[]string{"r.1", "started"}, "", true},
		{[]string{"*", "started"}, "", true},
		{[]string{">", "started"}, "", true},
		{[]string{"", "started"}, "", true},
		{[]string{"a b", "started"}, "", true},
		{[]string{"../x", "started"}, "", true},
		{[]string{"ok", "new\nline"}, "", true},
	}
	for _, c := range cases {
		got, err := RunEvents.Subject(c.tokens...)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("Subject(%q) = %q, %v", c.tokens, got, err)
		}
		if err != nil && !errors.Is(err, ErrBadToken) {
			t.Errorf("Subject(%q) error %v does not wrap ErrBadToken", c.tokens, err)
		}
	}
	for _, c := range []struct {
		tokens []string
		want   string
	}{
		{nil, "symphony.run.*.*"},
		{[]string{"r1"}, "symphony.run.r1.*"},
		{[]string{"r1", "ended"}, "symphony.run.r1.ended"},
	} {
		got, err := RunEvents.Filter(c.tokens...)
		if err != nil || got != c.want {
			t.Errorf("Filter(%q) = %q, %v", c.tokens, got, err)
		}
	}
	_, err := RunEvents.Subject(strings.Repeat("x", 100)+".", "e")
	if err == nil || strings.Count(err.Error(), "x") > 80 {
		t.Errorf("long bad token should be truncated in the error: %v", err)
	}
}

func TestCatalogueIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Catalogue() {
		if seen[s.Pattern] {
			t.Errorf("%s declared twice", s.Pattern)
		}
		seen[s.Pattern] = true
		if !strings.HasPrefix(s.Pattern, Root+".") {
			t.Errorf("%s does not start with %s.", s.Pattern, Root)
		}
		if s.Producer == "" || len(s.Consumers) == 0 || s.Doc == "" || s.TypeName() == "" {
			t.Errorf("%s: producer, consumers, doc and payload are all required: %+v", s.Pattern, s)
		}
		// The stream a spec claims must be the one whose subjects capture it,
		// and a core subject must not be captured by any stream by accident.
		if got := streamFor(s.Pattern); got != s.Stream {
			t.Errorf("%s: declared stream %q, but captured by %q", s.Pattern, s.Stream, got)
		}
	}
}

func TestSubjectCovers(t *testing.T) {
	cases := []struct {
		filter, pattern string
		want            bool
	}{
		{"symphony.run.>", "symphony.run.{run_id}.{event}", true},
		{"symphony.run.>", "symphony.run", false},
		{"symphony.run.*", "symphony.run.{run_id}.{event}", false},
		{"symphony.run.*.*", "symphony.run.{run_id}.{event}", true},
		{"symphony.turn.>", "symphony.run.{run_id}.{event}", false},
	}
	for _, c := range cases {
		if got := subjectCovers(c.filter, c.pattern); got != c.want {
			t.Errorf("subjectCovers(%q, %q) = %v", c.filter, c.pattern, got)
		}
	}
}
