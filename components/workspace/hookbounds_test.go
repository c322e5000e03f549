package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// TestHookRunsWithAHugeIssue: a 900 KB title and 60,000 labels made every
// hook fail with "argument list too long" (one environment string over
// Linux's 128 KiB), attempt after attempt. The hook runs; it sees the
// title and the labels cut within their bounds with a marker, on a
// character and a label boundary; it reads the whole issue from
// $SYMPHONY_ISSUE_JSON, a 0600 file outside the workspace that is gone
// once the hook has ended.
func TestHookRunsWithAHugeIssue(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	iss := issue("BIG-1")
	iss.Title = strings.Repeat("é", 450<<10) // 900 KiB of two-byte characters
	for i := range 60000 {
		iss.Labels = append(iss.Labels, fmt.Sprintf("label-%05d", i))
	}
	cfg := cfgWith(root, bus.HooksConfig{BeforeRun: `printf '%s' "$ISSUE_TITLE" > title
printf '%s' "$ISSUE_LABELS" > labels
cp "$SYMPHONY_ISSUE_JSON" issue.json
stat -c %a "$SYMPHONY_ISSUE_JSON" > mode
printf '%s' "$SYMPHONY_ISSUE_JSON" > path`})
	var m Manager
	run := plainRunner(cfg, testEnviron(t))
	r, err := m.Prepare(t.Context(), cfg, iss, run)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Hook(t.Context(), cfg, bus.HookBeforeRun, iss, run); err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(r.Path, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	title := read("title")
	head, marker, ok := strings.Cut(title, "…[cut: ")
	if len(title) > MaxHookVar || !ok || !utf8.ValidString(title) || !strings.HasPrefix(iss.Title, head) ||
		!strings.HasSuffix(marker, " more bytes; the full issue is in $SYMPHONY_ISSUE_JSON]") {
		t.Errorf("ISSUE_TITLE: %d bytes, ends %q", len(title), title[max(0, len(title)-80):])
	}
	if want := fmt.Sprintf("%d more bytes", len(iss.Title)-len(head)); !strings.Contains(marker, want) {
		t.Errorf("the marker %q does not say %q", marker, want)
	}
	labels := strings.Split(read("labels"), ",")
	last := labels[len(labels)-1]
	kept := labels[:len(labels)-1]
	if n := len(read("labels")); n > MaxHookLabels || len(kept) < 2000 ||
		last != fmt.Sprintf("…[cut: %d more labels; the full issue is in $SYMPHONY_ISSUE_JSON]", 60000-len(kept)) {
		t.Errorf("ISSUE_LABELS: %d bytes, %d labels kept, then %q", n, len(kept), last)
	}
	for i, l := range kept {
		if l != iss.Labels[i] {
			t.Fatalf("label %d is %q, want %q (whole labels, in order)", i, l, iss.Labels[i])
		}
	}
	var full bus.Issue
	if err := json.Unmarshal([]byte(read("issue.json")), &full); err != nil || full.Title != iss.Title || len(full.Labels) != 60000 || full.Identifier != "BIG-1" {
		t.Errorf("$SYMPHONY_ISSUE_JSON does not hold the whole issue: %v, title %d bytes, %d labels", err, len(full.Title), len(full.Labels))
	}
	if mode := strings.TrimSpace(read("mode")); mode != "600" {
		t.Errorf("issue file mode %s, want 600", mode)
	}
	path := read("path")
	if strings.HasPrefix(path, root) {
		t.Errorf("the issue file %s is inside the workspace root %s", path, root)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the issue file %s is still there after the hook: %v", path, err)
	}
}

// TestHookTooBigToStartSaysWhy: when exec still refuses the hook (here
// Symphony's own environment holds a 200 KB variable), the error says
// E2BIG, what was too large, and what to shorten.
func TestHookTooBigToStartSaysWhy(t *testing.T) {
	dir := t.TempDir()
	parent := testEnviron(t, "HUGE_OPERATOR_VAR="+strings.Repeat("x", 200<<10))
	_, _, err := runHook(t.Context(), "before_run", "true", dir, parent, secretDrop(bus.ConfigSnapshot{}, parent), issue("E2B-1"), testTimeout)
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("want a HookError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"hook before_run", "E2BIG", "HUGE_OPERATOR_VAR", "argument list too long", "shorten the script or Symphony's own environment"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q: %s", want, msg)
		}
	}
}

// TestCutValueBounds: values at the bound are kept whole; one byte more is
// cut with the marker, within the bound, on a character boundary.
func TestCutValueBounds(t *testing.T) {
	exact := strings.Repeat("a", MaxHookVar)
	if cutValue(exact, MaxHookVar) != exact {
		t.Error("a value of exactly the bound was cut")
	}
	for _, s := range []string{exact + "b", strings.Repeat("€", MaxHookVar), strings.Repeat("x", 1<<20)} {
		got := cutValue(s, MaxHookVar)
		if len(got) > MaxHookVar || !utf8.ValidString(got) || !strings.Contains(got, "…[cut: ") {
			t.Errorf("cut of %d bytes: %d bytes, valid %v", len(s), len(got), utf8.ValidString(got))
		}
	}
	if got := cutLabels([]string{"a", "b"}, 3); got != "a,b" {
		t.Errorf("labels that fit: %q", got)
	}
	if got := cutLabels([]string{strings.Repeat("x", 100)}, 80); got != cutMarker(1, "labels") {
		t.Errorf("one label too long: %q", got)
	}
}

// FuzzHookVariables: whatever the issue, every variable is within its
// bound, a prefix of the value it comes from (up to the marker), and
// valid UTF-8 when the value was.
func FuzzHookVariables(f *testing.F) {
	f.Add("title", "a,b,c", 10)
	f.Add(strings.Repeat("世", 600), strings.Repeat("label,", 700), 64)
	f.Add("x\x00y", "\x00", 1)
	f.Fuzz(func(t *testing.T, title, labels string, repeat int) {
		repeat = min(max(repeat, 1), 64)
		iss := issue("FZ-1")
		iss.Title = strings.Repeat(title, repeat)
		iss.Labels = strings.Split(strings.Repeat(labels, repeat), ",")
		env := hookEnv(nil, nil, iss, "/ws/FZ-1", "/tmp/issue.json")
		size := 0
		for _, kv := range env {
			name, v, _ := strings.Cut(kv, "=")
			size += len(kv)
			limit := MaxHookVar
			if name == "ISSUE_LABELS" {
				limit = MaxHookLabels
			}
			if len(v) > limit {
				t.Fatalf("%s: %d bytes", name, len(v))
			}
			if strings.Contains(v, "\x00") {
				t.Fatalf("%s holds NUL", name)
			}
		}
		if size > 5*MaxHookVar+MaxHookLabels+200 {
			t.Fatalf("environment of %d bytes", size)
		}
		got := cutValue(strings.ReplaceAll(iss.Title, "\x00", ""), MaxHookVar)
		head, _, _ := strings.Cut(got, "…[cut: ")
		if !strings.HasPrefix(strings.ReplaceAll(iss.Title, "\x00", ""), head) {
			t.Fatal("the cut title is not a prefix of the title")
		}
		if utf8.ValidString(iss.Title) && !utf8.ValidString(got) {
			t.Fatal("cut inside a character")
		}
	})
}
