package prompt

import (
	"errors"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

func renderSrc(t *testing.T, src string, issue bus.Issue, attempt *int) (string, error) {
	t.Helper()
	tpl, err := Parse(src, 5)
	if err != nil {
		return "", err
	}
	return tpl.Render(issue, attempt)
}

func TestStrictTemplates(t *testing.T) {
	two := 2
	minimal := bus.Issue{ID: "1", Identifier: "A-1", Title: "t", State: "Todo"}
	cases := []struct {
		name    string
		src     string
		issue   bus.Issue
		attempt *int
		want    string // rendered output, or the error substring when class is set
		class   string
		line    int
	}{
		{name: "fields", src: "{{ issue.identifier }} {{ issue.title }} p{{ issue.priority }}", issue: SampleIssue(), want: "SYM-123 Sample issue: make the widget configurable p2"},
		{name: "unknown variable", src: "ok\n{{ issue.nope }}", issue: minimal, class: ClassRender, want: "undefined variable", line: 6},
		{name: "unknown top-level variable", src: "{{ secrets }}", issue: minimal, class: ClassRender, want: "undefined variable"},
		{name: "unknown filter", src: "{{ issue.title | shout }}", issue: minimal, class: ClassRender, want: `undefined filter "shout"`, line: 5},
		{name: "include disabled", src: "a\n\n{% include '/etc/passwd' %}", issue: minimal, class: ClassParse, want: `undefined tag "include"`, line: 7},
		{name: "render disabled", src: "{% render 'secrets.env' %}", issue: minimal, class: ClassParse, want: `undefined tag "render"`},
		{name: "unterminated block", src: "x\n{% if issue.url %}", issue: minimal, class: ClassParse, want: `unterminated "if"`, line: 6},
		{name: "native_ref", src: "{{ issue.native_ref.file }}", issue: bus.Issue{ID: "1", Identifier: "A-1", Title: "t", State: "Todo", NativeRef: map[string]string{"file": "A-1.md"}}, want: "A-1.md"},
		{name: "native_ref null", src: "{% if issue.native_ref %}set{% else %}null{% endif %}", issue: minimal, want: "null"},
		{name: "labels loop", src: "{% for l in issue.labels %}[{{ l }}]{% endfor %}", issue: SampleIssue(), want: "[backend][good first issue]"},
		{name: "nested blocker loop", src: "{% for b in issue.blocked_by %}{{ b.identifier }}={{ b.state }}{% for l in issue.labels %}/{{ l }}{% endfor %};{% endfor %}", issue: SampleIssue(), want: "SYM-100=Done/backend/good first issue;"},
		{name: "null optional keys exist", src: "{{ issue.url }}|{{ issue.description }}|{{ issue.priority }}|{{ issue.branch_name }}|{{ issue.created_at }}|{% if issue.url %}u{% else %}no-url{% endif %}", issue: minimal, want: "|||||no-url"},
		{name: "empty lists iterate", src: "{% for l in issue.labels %}x{% endfor %}{{ issue.labels.size }}", issue: minimal, want: "0"},
		{name: "attempt nil on first run", src: "{% if attempt %}retry {{ attempt }}{% else %}first{% endif %}", issue: minimal, want: "first"},
		{name: "attempt on retry", src: "{% if attempt %}retry {{ attempt }}{% else %}first{% endif %}", issue: minimal, attempt: &two, want: "retry 2"},
		{name: "timestamps", src: "{{ issue.created_at }}", issue: SampleIssue(), want: "2026-01-02T09:30:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := renderSrc(t, c.src, c.issue, c.attempt)
			if c.class == "" {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a %s", err, c.class)
			}
			if pe.Class != c.class || !strings.Contains(pe.Message, c.want) {
				t.Errorf("err = %+v, want class %s containing %q", pe, c.class, c.want)
			}
			if c.line != 0 && pe.Line != c.line {
				t.Errorf("line = %d, want %d (%v)", pe.Line, c.line, pe)
			}
		})
	}
}

// TestIssueTextIsNeverTemplate: Liquid in an issue's fields is data.
func TestIssueTextIsNeverTemplate(t *testing.T) {
	evil := "{{ attempt }} {% include 'x' %} {{ issue.id | nope }}"
	issue := bus.Issue{ID: "1", Identifier: "A-1", Title: evil, Description: &evil, Labels: []string{"{{ l }}"}, State: "Todo"}
	got, err := renderSrc(t, "{{ issue.title }}|{{ issue.description }}|{{ issue.labels[0] }}", issue, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := evil + "|" + evil + "|{{ l }}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEmptyBodyUsesDefault(t *testing.T) {
	tpl, err := Parse("  \n\n ", 3)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.Render(SampleIssue(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SYM-123", "make the widget configurable", "hard-coded"} {
		if !strings.Contains(out, want) {
			t.Errorf("default prompt lacks %q:\n%s", want, out)
		}
	}
	// A minimal issue (no description) also renders.
	if _, err := tpl.Render(bus.Issue{ID: "1", Identifier: "A-1", Title: "t"}, nil); err != nil {
		t.Error(err)
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{{ issue.title }}", "{% for b in issue.blocked_by %}{{ b.id }}{% endfor %}", "{% if", "{{ x | y }}", "{% include 'a' %}", "{% raw %}{{{% endraw %}",
		"{% for i in (1..100000000) %}{% endfor %}", "{% for i in (1..99999) %}{% for j in (1..99999) %}{% endfor %}{% endfor %}",
		"{% capture s %}ab{% endcapture %}{% capture s %}{{s}}{{s}}{% endcapture %}{% capture s %}{{s}}{{s}}{% endcapture %}{{ s | split: '' | join: s }}",
		"{% tablerow i in (1..9999999) %}{% cycle 'a', 'b' %}{% endtablerow %}", "{{ 'abc' | replace: '', 'xyz' | append: 'q' }}",
		"{{ (1..30000000) | join: '' }}", "{% assign r = (1..100000000) %}{{ r | reverse | first }}", "{{ (1..30000000) | sort | size }}",
		"{% assign n = 30 | times: 1000000 | floor %}{{ (1..n) | uniq | size }}", "{{ (1..9) | slice: 2, 3 | join }}{{ (-9..9) | sort_natural | last }}",
		"{% for i in (1..9) %}{{ (1..1000000) | first }}{% endfor %}", "{{ issue.title | truncatewords: 2 }}{{ issue.title | slice: 1 }}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 4096 {
			return
		}
		tpl, err := Parse(src, 1)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Class != ClassParse {
				t.Fatalf("unclassed parse error %v", err)
			}
			return
		}
		if _, err := tpl.Render(SampleIssue(), nil); err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Class != ClassRender {
				t.Fatalf("unclassed render error %v", err)
			}
		}
	})
}
