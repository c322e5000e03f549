package prompt

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/osteele/liquid"
)

// TestRenderBudget: templates whose work has no bound in the Liquid library
// stop with a template_render_error at the budget, at the line of the block
// that ran over, in bounded memory. The first ran for minutes and reached
// 1.5 GB before the budget; the others never finish or exhaust memory.
func TestRenderBudget(t *testing.T) {
	// rangeAlloc bounds what each range case allocates: the work budget
	// (32 MiB) and the garbage of reaching it.
	const rangeAlloc = 96 << 20
	x1000 := strings.Repeat("x", 1000)
	doubled := func(step string, n int) string {
		return "{% assign s = \"xx\" %}{% capture s %}xx{% endcapture %}\n" + strings.Repeat(step, n)
	}
	doubling := func(step string) string { return doubled(step, 60) }
	cases := map[string]string{
		"empty loop":           "intro\n{% for i in (1..100000000) %}{% endfor %}",
		"nested empty loops":   "{% for i in (1..100000) %}{% for j in (1..100000) %}{% endfor %}{% endfor %}",
		"loop with a body":     "{% for i in (1..100000000) %}{{ issue.title }}{% endfor %}",
		"loop with condition":  "{% for i in (1..100000000) %}{% if i == 0 %}x{% endif %}{% endfor %}",
		"tablerow":             "{% tablerow i in (1..100000000) %}{% endtablerow %}",
		"loop in a capture":    "{% capture c %}{% for i in (1..100000000) %}" + x1000 + "{% endfor %}{% endcapture %}",
		"capture doubling":     doubling("{% capture s %}{{ s }}{{ s }}{% endcapture %}"),
		"append doubling":      doubling("{% assign s = s | append: s %}"),
		"replace multiplying":  "{% assign s = \"" + x1000 + "\" | replace: \"\", \"" + x1000 + "\" %}{% assign s = s | replace: \"\", s %}",
		"join multiplying":     doubling("{% assign l = s | split: \"\" %}{% assign s = l | join: s %}"),
		"split of every byte":  doubling("{% assign s = s | append: s %}{% assign l = s | split: \"\" %}"),
		"huge prompt":          "{% for i in (1..10000) %}" + x1000 + "{% endfor %}",
		"loop of filter calls": "{% for i in (1..100000000) %}{% assign y = i | plus: 1 %}{% endfor %}",
	}
	// The library turns a range (or another list) into a list of the
	// filter's parameter type before the filter runs: each of these built
	// a list of 30 million or more elements (0.7 to 1.6 GB) before any
	// wrapper saw it. A bound from arithmetic or a variable is the same
	// range. These must stop in bounded memory (rangeAlloc).
	ranges := map[string]string{
		"range join":            `{{ (1..30000000) | join: "" }}`,
		"range reverse":         `{{ (1..30000000) | reverse }}`,
		"range sort":            `{{ (1..30000000) | sort | first }}`,
		"range sort_natural":    `{{ (1..30000000) | sort_natural | first }}`,
		"range first":           `{% assign r = (1..100000000) %}{{ r | first }}`,
		"range last":            `{% assign r = (1..100000000) %}{{ r | last }}`,
		"range map":             `{{ (1..30000000) | map: "x" | size }}`,
		"range where":           `{{ (1..30000000) | where: "x" | size }}`,
		"range uniq":            `{{ (1..30000000) | uniq | size }}`,
		"range compact":         `{{ (1..30000000) | compact | size }}`,
		"range concat":          `{{ (1..3) | concat: (1..30000000) | size }}`,
		"range sum":             `{{ (1..30000000) | sum }}`,
		"range slice":           `{{ (1..30000000) | slice: 1, 2 }}`,
		"range bound from math": `{% assign n = 30 | times: 1000000 | floor %}{% assign r = (1..n) %}{{ r | join }}`,
		"range in a loop":       `{% for i in (1..100000000) %}{{ (1..1000000) | first }}{% endfor %}`,
		// A string within the budget that a filter expands: into 4-byte
		// runes (slice) or 16-byte words (truncatewords).
		"truncatewords": doubled("{% assign s = s | append: ' ' | append: s %}", 20) + "{{ s | truncatewords: 1 }}",
		"string slice":  doubled("{% assign s = s | append: s %}", 22) + "{{ s | slice: 0, 1 }}",
	}
	for name, src := range ranges {
		cases[name] = src
	}
	for name, src := range cases {
		tpl, err := Parse(src, 10)
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		// Every case stops at the step or byte budget in well under a
		// second; the wall-clock backstop (TestRenderTimeBudget) is moved
		// out of reach so that a loaded machine (-race, shared cores)
		// cannot end one of the two renders on time instead.
		tpl.budget.limit = time.Minute
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err = tpl.Render(SampleIssue(), nil)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		var pe *Error
		if !errors.As(err, &pe) || pe.Class != ClassRender || !strings.Contains(pe.Message, "render budget exceeded") {
			t.Errorf("%s: err = %v, want a %s for the budget", name, err, ClassRender)
			continue
		}
		// tablerow writes its cells where a failed write panics, so the
		// error has no line there.
		if pe.Line < 10 && name != "tablerow" {
			t.Errorf("%s: line %d, want the template's", name, pe.Line)
		}
		t.Logf("%s: %d MB, %v: %v", name, (after.TotalAlloc-before.TotalAlloc)>>20, took, err)
		limit := uint64(512 << 20)
		if _, ok := ranges[name]; ok {
			limit = rangeAlloc
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > limit {
			t.Errorf("%s: allocated %d MB, want at most %d MB", name, n>>20, limit>>20)
		}
		// The budget is per render: the template renders the same way again.
		if _, err2 := tpl.Render(SampleIssue(), nil); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%s: second render: %v, first: %v", name, err2, err)
		}
	}
}

// TestBudgetLeavesOrdinaryTemplatesAlone: the instrumented template renders
// exactly as the plain Liquid engine does, whitespace control around loops
// and captures included, and a loop just inside the budget completes.
func TestBudgetLeavesOrdinaryTemplatesAlone(t *testing.T) {
	srcs := []string{
		"{%- for l in issue.labels -%}  [{{ l }}]  {%- endfor -%}  end",
		"a  {%- capture x -%}  b {{ issue.identifier }}  {%- endcapture -%}  c{{ x }}|{{ x | size }}",
		"a {% capture x %} b {% endcapture %} {{- x -}} c",
		"{% for i in (1..5) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ forloop.index }}/{{ forloop.length }}{% cycle 'a', 'b' %} {% endfor %}",
		"{% for i in issue.nothing_here %}x{% else %}empty{% endfor %}",
		"{% for l in issue.labels reversed limit: 1 offset: 0 %}{{ l }}{% endfor %}",
		"{% tablerow l in issue.labels cols: 1 %}{{ l }}{% endtablerow %}",
		"{% capture outer %}o{% capture inner %}i{{ issue.state }}{% endcapture %}{{ inner }}{% endcapture %}{{ outer }}{{ inner }}",
		"{{ issue.title | replace: 'widget', 'gadget' | upcase | split: ' ' | join: '-' }}",
		"{% assign n = 0 %}{% for i in (1..999) %}{% assign n = n | plus: i %}{% endfor %}{{ n }}",
		"{{ issue.labels | join }} {{ issue.labels | join: ', ' }} {{ 'a,b' | split: ',' | size }}",
		"{{ issue.url | default: 'none' }} {{ false | default: 'x', allow_false: true }} {{ issue.assignee_id | default: 'y' }}",
		"{{ issue.labels | sort | reverse | first }} {{ issue.blocked_by | map: 'identifier' | join: ',' }} {{ issue.blocked_by | where: 'state', 'Done' | size }}",
		"{{ issue.title | truncate: 10 }} {{ issue.title | slice: 2, 5 }} {{ issue.created_at | date: '%Y' }} {{ issue.priority | times: 3 | plus: 1 }}",
		"{{ (1..5) | join: ',' }} {{ (1..5) | reverse | join }} {{ (3..1) | size }} {{ (1..4) | slice: 1, 2 | join }} {{ (1..9) | sort | last }} {{ (1..3) | concat: issue.labels | join: '/' }} {{ (1..3) | sum }} {{ (1..3) | first }}",
		"{% assign n = 3 | floor %}{% for i in (1..n) reversed limit: 2 %}{{ i }}{% cycle 'x', 'y' %}{% endfor %} {{ issue.labels | append: '!' }} {{ issue.blocked_by | uniq | map: 'state' | compact | join }} {{ issue.title | truncatewords: 3 }} {{ issue.title | slice: -4 }}",
		"{{ 5 | append: 'x' }} {{ 'a b' | split: ' ' | where: 'x' | size }} {{ issue.created_at | date: '%Y' }} {{ '2026-01-02' | date: '%m' }} {{ nil | join }} {{ issue.labels | sort_natural | first }} {{ 7 | modulo: 4 }} {{ 2.5 | ceil }} {{ -3 | abs }} {{ '3' | plus: 4 }}",
	}
	strict := func() *liquid.Engine {
		e := liquid.NewEngine()
		e.StrictVariables()
		return e
	}()
	for _, src := range srcs {
		b := Bindings(SampleIssue(), nil)
		b["issue"].(map[string]any)["nothing_here"] = []any{}
		want, werr := strict.ParseAndRenderString(src, b)
		tpl, err := Parse(src, 1)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got, gerr := tpl.renderBindings(b)
		if werr != nil || gerr != nil || got != want {
			t.Errorf("%q:\n got %q (%v)\nwant %q (%v)", src, got, gerr, want, werr)
		}
	}
	tpl, err := Parse("{% for i in (1..100000) %}{% endfor %}{% for i in (1..100) %}{% for j in (1..1400) %}{% endfor %}{% endfor %}ok", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tpl.Render(SampleIssue(), nil); err != nil || got != "ok" {
		t.Errorf("240,100 iterations: %q, %v", got, err)
	}
}

// TestRenderTimeBudget: a render that stays within the step and byte
// budgets but runs past its time stops at the next step.
func TestRenderTimeBudget(t *testing.T) {
	tpl, err := Parse("{% for i in (1..200000) %}{% endfor %}", 3)
	if err != nil {
		t.Fatal(err)
	}
	tpl.budget.limit = time.Nanosecond
	_, err = tpl.Render(SampleIssue(), nil)
	var pe *Error
	if !errors.As(err, &pe) || pe.Class != ClassRender || !strings.Contains(pe.Message, "rendering took longer than 1ns") || pe.Line != 3 {
		t.Errorf("err = %v", err)
	}
}

// TestLazyRangesStayLazy: a range is two integers until a filter converts
// it, so the uses that never convert it — a variable holding it, size,
// printing it, contains, a loop with reversed, limit and offset, tablerow
// with limit, cycle — finish at once in little memory however large the
// range is, and the same uses of a list the budget allowed do not charge
// it again.
func TestLazyRangesStayLazy(t *testing.T) {
	src := `{% assign r = (1..100000000) %}{{ r | size }}|{% if r contains 5 %}c{% endif %}|` +
		`{% for i in r reversed limit: 3 offset: 99999990 %}{{ i }}{% cycle 'a', 'b' %}{% endfor %}|` +
		`{% tablerow i in r limit: 2 %}{{ i }}{% endtablerow %}|{{ r | default: 'd' }}|` +
		`{% assign l = (1..1000000) | slice: 0, 1000000 %}{% for i in (1..1000) %}{{ l | first }}{{ l | last }}{{ l.size }}{% endfor %}`
	tpl, err := Parse(src, 1)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := tpl.Render(SampleIssue(), nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("allocated %d MB", n>>20)
	} else {
		t.Logf("allocated %d MB", n>>20)
	}
	plain := liquid.NewEngine()
	plain.StrictVariables()
	want, err := plain.ParseAndRenderString(src, Bindings(SampleIssue(), nil))
	if err != nil || got != want || !strings.HasSuffix(got, "110000001000000") {
		t.Errorf("got %.200q…\nwant %.200q… (%v)", got, want, err)
	}
}
