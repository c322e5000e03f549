// Package prompt renders the WORKFLOW.md prompt template with Liquid in
// strict mode: an unknown variable, an unknown filter or a file-system tag
// (include, render) is an error, never an empty string or a file read. The
// workflow component trial-renders every template at load time with
// SampleIssue, so a template that would fail is rejected before any run.
package prompt

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/osteele/liquid/filters"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"github.com/osteele/liquid/tags"

	"github.com/symphony-oss/symphony/bus"
)

// Error classes.
const (
	ClassParse  = "template_parse_error"
	ClassRender = "template_render_error"
)

// DefaultTemplate is used when the WORKFLOW.md body is empty.
const DefaultTemplate = `You are working on an issue from the tracker.

Issue {{ issue.identifier }}: {{ issue.title }}
{% if issue.description %}
{{ issue.description }}
{% endif %}`

// Error is a template failure with its class and the 1-based line in the
// workflow file (0 when unknown).
type Error struct {
	Class   string
	Line    int
	Message string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d: %s", e.Class, e.Line, e.Message)
	}
	return e.Class + ": " + e.Message
}

// Template is a parsed prompt template. Its engine configuration, and the
// render budget that configuration's filters and tags charge, are its own:
// renders of one template take turns.
type Template struct {
	root   render.Node
	cfg    *render.Config
	budget *budget
	mu     sync.Mutex
	source string
}

// newConfig returns a strict configuration without file-system tags whose
// work is charged to b (see budget.go). Configurations are built per
// template: they hold no shared state.
func newConfig(b *budget) *render.Config {
	cfg := render.NewConfig()
	std := filterSet{}
	filters.AddStandardFilters(std)
	for name, fn := range std {
		cfg.AddFilter(name, b.wrapFilter(name, fn))
	}
	tags.AddStandardTags(&cfg)
	cfg.StrictVariables = true
	// include and render read files; a prompt must never pull in a file
	// (it could be a secret-bearing one).
	cfg.UnregisterTag("include")
	cfg.UnregisterTag("render")
	cfg.AddTag(stepTag, func(string) (func(io.Writer, render.Context) error, error) {
		return func(io.Writer, render.Context) error { return b.step() }, nil
	})
	cfg.AddBlock(boundTag).Compiler(func(render.BlockNode) (func(io.Writer, render.Context) error, error) {
		return b.renderBounded, nil
	})
	return &cfg
}

// Parse parses source. firstLine is the 1-based line of the workflow file
// where source begins, so errors point into the file. An empty source
// parses DefaultTemplate.
func Parse(source string, firstLine int) (t *Template, err error) {
	// The Liquid library panics on some malformed input (found by fuzzing,
	// e.g. a combining mark inside {{ }}): that is a parse error too.
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, &Error{Class: ClassParse, Message: fmt.Sprint(p)}
		}
	}()
	if strings.TrimSpace(source) == "" {
		source, firstLine = DefaultTemplate, 0
	}
	b := &budget{}
	cfg := newConfig(b)
	root, perr := cfg.Compile(source, parser.SourceLoc{LineNo: firstLine})
	if perr != nil {
		return nil, &Error{Class: ClassParse, Line: perr.LineNumber(), Message: cleanMessage(perr)}
	}
	if err := instrument(cfg, root); err != nil {
		return nil, &Error{Class: ClassParse, Message: err.Error()}
	}
	return &Template{root: root, cfg: cfg, budget: b, source: source}, nil
}

// Source is the template text in use (DefaultTemplate for an empty body).
func (t *Template) Source() string { return t.source }

// Render renders the template for issue; attempt is nil on a first run.
// The render stops with a template_render_error when it exceeds its budget
// (MaxSteps, MaxWorkBytes, MaxPromptBytes, MaxRenderTime).
func (t *Template) Render(issue bus.Issue, attempt *int) (string, error) {
	return t.renderBindings(Bindings(issue, attempt))
}

func (t *Template) renderBindings(bindings map[string]any) (out string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			out, err = "", &Error{Class: ClassRender, Message: fmt.Sprint(p)}
		}
	}()
	t.budget.reset(time.Now())
	w := &boundedWriter{b: t.budget, max: MaxPromptBytes}
	if rerr := render.Render(t.root, w, bindings, *t.cfg); rerr != nil {
		if be := t.budget.exceeded; be != nil {
			// The budget's own message, whatever wrapped it on the way out.
			return "", &Error{Class: ClassRender, Line: rerr.LineNumber(), Message: be.Error()}
		}
		return "", &Error{Class: ClassRender, Line: rerr.LineNumber(), Message: cleanMessage(rerr)}
	}
	return w.buf.String(), nil
}

// locPrefix matches the "Liquid error (line N): " prefix the library adds;
// Error carries the line itself.
var locPrefix = regexp.MustCompile(`^Liquid error( \(line \d+\))?: `)

func cleanMessage(err interface{ Error() string }) string {
	return locPrefix.ReplaceAllString(err.Error(), "")
}

// Bindings is what a template sees: issue (every normalized field, present
// even when null) and attempt (nil on a first run).
func Bindings(issue bus.Issue, attempt *int) map[string]any {
	labels := make([]any, 0, len(issue.Labels))
	for _, l := range issue.Labels {
		labels = append(labels, l)
	}
	blockers := make([]any, 0, len(issue.BlockedBy))
	for _, b := range issue.BlockedBy {
		blockers = append(blockers, map[string]any{
			"id":         strOrNil(b.ID),
			"identifier": strOrNil(b.Identifier),
			"state":      strOrNil(b.State),
		})
	}
	var priority any
	if issue.Priority != nil {
		priority = *issue.Priority
	}
	var att any
	if attempt != nil {
		att = *attempt
	}
	return map[string]any{
		"issue": map[string]any{
			"id":           issue.ID,
			"identifier":   issue.Identifier,
			"title":        issue.Title,
			"description":  strOrNil(issue.Description),
			"priority":     priority,
			"state":        issue.State,
			"branch_name":  strOrNil(issue.BranchName),
			"url":          strOrNil(issue.URL),
			"assignee_id":  strOrNil(issue.AssigneeID),
			"labels":       labels,
			"blocked_by":   blockers,
			"dispatchable": issue.Dispatchable,
			"created_at":   timeOrNil(issue.CreatedAt),
			"updated_at":   timeOrNil(issue.UpdatedAt),
			"native_ref":   nativeRef(issue.NativeRef),
		},
		"attempt": att,
	}
}

// nativeRef is the issue's native_ref for the template: a map, or nil.
func nativeRef(ref map[string]string) any {
	if ref == nil {
		return nil
	}
	m := make(map[string]any, len(ref))
	for k, v := range ref {
		m[k] = v
	}
	return m
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// SampleIssueFor is SampleIssue with the native_ref the given tracker
// kind's adapter gives (the files tracker: the issue's file name; GitHub:
// owner, repo, number and node_id; Linear: none, null), so a trial render catches a template that reads a
// native_ref field its tracker never sets.
func SampleIssueFor(trackerKind string) bus.Issue {
	iss := SampleIssue()
	switch trackerKind {
	case bus.TrackerFiles:
		iss.NativeRef = map[string]string{"file": iss.Identifier + ".md"}
	case bus.TrackerGitHub:
		iss.NativeRef = map[string]string{"owner": "acme", "repo": "app", "number": "123", "node_id": "I_kwDOsample123"}
	}
	return iss
}

// SampleIssue is the issue templates are trial-rendered with at load time
// and shown by `symphony validate`. Every optional field is set, and it has
// a label and a blocker, so loops and conditionals are exercised.
// native_ref is left null: see SampleIssueFor.
func SampleIssue() bus.Issue {
	str := func(s string) *string { return &s }
	prio := 2
	created := time.Date(2026, 1, 2, 9, 30, 0, 0, time.UTC)
	updated := created.Add(26 * time.Hour)
	return bus.Issue{
		ID:           "sample-issue-id",
		Identifier:   "SYM-123",
		Title:        "Sample issue: make the widget configurable",
		Description:  str("The widget's colour is hard-coded. Read it from the config instead."),
		Priority:     &prio,
		State:        "Todo",
		BranchName:   str("sym-123-configurable-widget"),
		URL:          str("https://tracker.example/SYM-123"),
		AssigneeID:   str("sample-user-id"),
		Labels:       []string{"backend", "good first issue"},
		BlockedBy:    []bus.Blocker{{ID: str("sample-blocker-id"), Identifier: str("SYM-100"), State: str("Done")}},
		Dispatchable: true,
		CreatedAt:    &created,
		UpdatedAt:    &updated,
	}
}
