package tracker

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/yamlbound"
)

func writeIssue(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newTestFiles(t *testing.T, dir, assignee string, logs *logBuf) *files {
	t.Helper()
	f, err := newFiles(bus.TrackerConfig{Kind: bus.TrackerFiles, Provider: bus.TrackerProvider{Path: dir, Assignee: assignee}, TerminalStates: []string{"Done", "Cancelled"}},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFilesAdapter(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "DEMO-1.md", `---
id: id-1
title: Full issue
state: Todo
priority: 1
labels: [Backend, " backend", UI]
assignee: alice
branch_name: demo-1
url: https://example.test/DEMO-1
created_at: 2026-01-02T03:04:05Z
updated_at: "2026-01-03T00:00:00Z"
blocked_by: [DEMO-3]
---
The description.

With two paragraphs.
`)
	writeIssue(t, dir, "DEMO-2.md", "---\ntitle: Partial issue\nstate: In Progress\n---\n")
	writeIssue(t, dir, "DEMO-3.md", "---\ntitle: Blocker\nstate: Done\n---\nbody\n")
	writeIssue(t, dir, "DEMO-4.md", "---\ntitle: Blocked by an open one\nstate: Todo\nblocked_by:\n  - {identifier: EXT-9, state: In Review}\n---\n")
	writeIssue(t, dir, "BAD-1.md", "---\nstate: Todo\n---\nno title\n")
	writeIssue(t, dir, "BAD-2.md", "---\ntitle: [unclosed\nstate: Todo\n---\n")
	writeIssue(t, dir, "BAD-3.md", "---\ntitle: x\nstate: Todo\npriority: high\n---\n")
	writeIssue(t, dir, "BAD-4.md", "no front matter\n")
	writeIssue(t, dir, "notes.txt", "ignored")
	logs := &logBuf{}
	f := newTestFiles(t, dir, "", logs)

	got, dropped, err := f.Candidates(t.Context(), []string{"todo", "In Progress"})
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 4 {
		t.Errorf("dropped %d, want 4", dropped)
	}
	for _, bad := range []string{"BAD-1.md", "BAD-2.md", "BAD-3.md", "BAD-4.md"} {
		if !strings.Contains(logs.String(), bad) {
			t.Errorf("skipping %s was not logged with the file name:\n%s", bad, logs)
		}
	}
	if !strings.Contains(logs.String(), "title is required") || !strings.Contains(logs.String(), "priority must be a number") {
		t.Errorf("reasons missing from the log:\n%s", logs)
	}
	by := map[string]bus.Issue{}
	for _, iss := range got {
		by[iss.Identifier] = iss
	}
	if len(got) != 3 || by["DEMO-3"].ID != "" {
		t.Fatalf("candidates %v", got)
	}
	d1 := by["DEMO-1"]
	if d1.ID != "id-1" || *d1.Priority != 1 || strings.Join(d1.Labels, ",") != "backend,ui" || *d1.AssigneeID != "alice" ||
		*d1.Description != "The description.\n\nWith two paragraphs." || d1.CreatedAt.Format("2006-01-02T15:04:05Z07:00") != "2026-01-02T03:04:05Z" || d1.UpdatedAt == nil {
		t.Errorf("DEMO-1: %+v", d1)
	}
	if d1.NativeRef["file"] != "DEMO-1.md" || len(d1.NativeRef) != 1 {
		t.Errorf("DEMO-1 native_ref %v, want its file name", d1.NativeRef)
	}
	if len(d1.BlockedBy) != 1 || *d1.BlockedBy[0].ID != "DEMO-3" || *d1.BlockedBy[0].State != "Done" || !d1.Dispatchable {
		t.Errorf("DEMO-1 blocker resolved from DEMO-3.md: %+v dispatchable=%v", d1.BlockedBy, d1.Dispatchable)
	}
	d2 := by["DEMO-2"]
	if d2.ID != "DEMO-2" || d2.Priority != nil || d2.Description != nil || len(d2.Labels) != 0 || d2.CreatedAt != nil || !d2.Dispatchable {
		t.Errorf("DEMO-2 defaults: %+v", d2)
	}
	if by["DEMO-4"].Dispatchable {
		t.Error("Todo blocked by an open issue must not be dispatchable")
	}

	// Assignee filter.
	fa := newTestFiles(t, dir, "alice", &logBuf{})
	got, _, _ = fa.Candidates(t.Context(), []string{"Todo", "In Progress"})
	for _, iss := range got {
		if iss.Dispatchable != (iss.Identifier == "DEMO-1") {
			t.Errorf("assignee filter: %s dispatchable=%v", iss.Identifier, iss.Dispatchable)
		}
	}

	// Terminal and refresh.
	term, _, err := f.Terminal(t.Context(), []string{"Done"})
	if err != nil || len(term) != 1 || term[0].Identifier != "DEMO-3" {
		t.Errorf("terminal: %v %v", term, err)
	}
	ref, err := f.Refresh(t.Context(), []string{"id-1", "DEMO-2", "id-1"})
	if err != nil || len(ref) != 2 {
		t.Errorf("refresh: %v %v", ref, err)
	}
	// While malformed files exist, a requested issue that is not found may
	// be one of them: an error, not "gone".
	if _, err := f.Refresh(t.Context(), []string{"id-1", "BAD-1"}); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("refresh with malformed files: %v", err)
	}

	for _, bad := range []string{"BAD-1.md", "BAD-2.md", "BAD-3.md", "BAD-4.md"} {
		os.Remove(filepath.Join(dir, bad))
	}
	if ref, err := f.Refresh(t.Context(), []string{"id-1", "gone"}); err != nil || len(ref) != 1 {
		t.Errorf("a really missing issue is absent: %v %v", ref, err)
	}
	// An edit between two polls is seen on the next poll.
	writeIssue(t, dir, "DEMO-2.md", "---\ntitle: Partial issue\nstate: Done\n---\n")
	got, _, _ = f.Candidates(t.Context(), []string{"Todo", "In Progress"})
	for _, iss := range got {
		if iss.Identifier == "DEMO-2" {
			t.Error("DEMO-2 moved to Done but is still a candidate")
		}
	}
	ref, _ = f.Refresh(t.Context(), []string{"DEMO-2"})
	if len(ref) != 1 || ref[0].State != "Done" {
		t.Errorf("refresh after the edit: %+v", ref)
	}

	// A missing directory is a request error, not a crash.
	gone := newTestFiles(t, filepath.Join(dir, "nope"), "", &logBuf{})
	if _, _, err := gone.Candidates(t.Context(), []string{"Todo"}); err == nil {
		t.Error("missing directory accepted")
	}
}

func TestDemoIssuesParse(t *testing.T) {
	f := newTestFiles(t, "../../testdata/demo/issues", "", &logBuf{})
	got, dropped, err := f.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil || dropped != 0 || len(got) < 3 {
		t.Errorf("demo issues: %d, dropped %d, %v", len(got), dropped, err)
	}
}

func FuzzParseIssueFile(f *testing.F) {
	for _, s := range []string{"---\ntitle: t\nstate: Todo\n---\nbody", "---\nblocked_by: [{state: x}]\n---\n", "---\ncreated_at: 2026-01-01\n---\n", "", "---\n---\n",
		bombIssue("labels"), bombIssue("priority"), bombIssue("blocked_by"), "---\ntitle: &t [*t]\nstate: Todo\n---\n",
		"---\ntitle: t\nstate: Todo\nlabels: " + strings.Repeat("[", 200) + "\n---\n", "---\ntitle: t\nstate: Todo\nlabels:\n" + strings.Repeat("- ", 200) + "x\n---\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxIssueFileBytes {
			return
		}
		fi, err := parseIssue("STEM-1", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if fi.issue.ID == "" || fi.issue.Identifier == "" || fi.issue.Title == "" || fi.issue.State == "" || fi.issue.Labels == nil {
			t.Fatalf("incomplete issue accepted: %+v", fi.issue)
		}
	})
}

// TestFilesRacyWindowFollowsTimeGranularity: a change time with a
// fraction of a second (a file system with fine times) is trusted after a
// tenth of a second; one in whole seconds only after two.
func TestFilesRacyWindowFollowsTimeGranularity(t *testing.T) {
	f := newTestFiles(t, t.TempDir(), "", &logBuf{})
	whole := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	if got := f.window(whole); got != racyWindow {
		t.Errorf("whole-second time: window %v, want %v", got, racyWindow)
	}
	if got := f.window(whole.Add(4 * time.Millisecond)); got != racyWindowFine {
		t.Errorf("fine time: window %v, want %v", got, racyWindowFine)
	}
	// A file this file system just wrote, once the fine window passed:
	// kept when its times are fine (Linux's usual file systems), read
	// again when they are whole seconds (then 2 s have not passed).
	writeIssue(t, f.dir, "R-1.md", "---\ntitle: r\nstate: Todo\n---\n")
	st, err := os.Stat(filepath.Join(f.dir, "R-1.md"))
	if err != nil {
		t.Fatal(err)
	}
	fine := st.ModTime().Nanosecond() != 0
	after := time.Now().Add(racyWindowFine + 10*time.Millisecond)
	for time.Now().Before(after) {
		time.Sleep(time.Until(after))
	}
	if _, err := f.Refresh(t.Context(), []string{"R-1"}); err != nil {
		t.Fatal(err)
	}
	before := f.parses
	if _, err := f.Refresh(t.Context(), []string{"R-1"}); err != nil {
		t.Fatal(err)
	}
	if kept := f.parses == before; kept != fine {
		t.Errorf("file with fine times %v, changed %v ago: kept %v", fine, time.Since(st.ModTime()), kept)
	}
}

// TestFilesKeepsParsesOfUnchangedFiles: a file whose last change is old
// enough is parsed once and then answered from its kept parse; any change
// to it (same size, times set back, replaced by a rename) is read again,
// and so is, at every read, a file changed too recently to trust its times.
func TestFilesKeepsParsesOfUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	f := newTestFiles(t, dir, "", &logBuf{})
	state := func(id string) string {
		t.Helper()
		got, err := f.Refresh(t.Context(), []string{id})
		if err != nil || len(got) != 1 {
			t.Fatalf("refresh %s: %v %v", id, got, err)
		}
		return got[0].State
	}
	path := filepath.Join(dir, "K-1.md")
	writeIssue(t, dir, "K-1.md", "---\ntitle: kept\nstate: Todo\n---\n")
	writeIssue(t, dir, "K-2.md", "---\ntitle: other\nstate: Todo\n---\n")

	// Just written: too recent to keep, so read at every load (the
	// windows widened, so that a slow machine cannot make them old).
	f.racy, f.racyFine = time.Hour, time.Hour
	state("K-1")
	state("K-1")
	if f.parses != 4 || len(f.parsed) != 0 {
		t.Fatalf("%d parses, %d kept after two loads of fresh files; want 4 and 0", f.parses, len(f.parsed))
	}
	// The same size, written within the same instant: seen.
	writeIssue(t, dir, "K-1.md", "---\ntitle: kept\nstate: Done\n---\n")
	if got := state("K-1"); got != "Done" {
		t.Fatalf("state %q after a same-size rewrite, want Done", got)
	}

	// Old enough (the window shrunk instead of waiting): kept.
	f.racy, f.racyFine = 0, 0
	state("K-1")
	before := f.parses
	if got := state("K-1"); got != "Done" || f.parses != before {
		t.Fatalf("state %q with %d more parses; want Done from the kept parse", got, f.parses-before)
	}
	// Rewritten with the same size and its modification time set back:
	// the change time still moves (once the kernel's coarse clock, a few
	// milliseconds, has ticked: with the window at 0 nothing else guards).
	time.Sleep(50 * time.Millisecond)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeIssue(t, dir, "K-1.md", "---\ntitle: kept\nstate: Todo\n---\n")
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got := state("K-1"); got != "Todo" {
		t.Fatalf("state %q after a rewrite with the times set back, want Todo", got)
	}
	// Replaced by a rename.
	tmp := filepath.Join(dir, ".K-1.tmp")
	if err := os.WriteFile(tmp, []byte("---\ntitle: kept\nstate: Done\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := state("K-1"); got != "Done" {
		t.Fatalf("state %q after a rename over the file, want Done", got)
	}
	// A removed file's parse is dropped.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Refresh(t.Context(), []string{"K-1"}); err != nil || len(got) != 0 {
		t.Fatalf("refresh of a removed issue: %v %v", got, err)
	}
	if _, kept := f.parsed[path]; kept || len(f.parsed) != 1 {
		t.Errorf("kept parses %v after the file was removed", f.parsed)
	}
}

// TestFilesDropsClashingIssues: files that share an id or an identifier
// (two claims, two agents in one workspace) are all dropped, counted and
// logged naming every file; the others still list, and a refresh of the
// clashing id fails instead of answering two issues or "gone".
func TestFilesDropsClashingIssues(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "ABC-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	writeIssue(t, dir, "ABC-2.md", "---\nidentifier: ABC-1\nid: id-2\ntitle: same identifier\nstate: Todo\n---\n")
	writeIssue(t, dir, "ABC-3.md", "---\nid: ABC-1\ntitle: same id\nstate: Todo\n---\n")
	writeIssue(t, dir, "ABC-4.md", "---\nid: shared\ntitle: four\nstate: Todo\n---\n")
	writeIssue(t, dir, "ABC-5.md", "---\nid: shared\ntitle: five\nstate: In Progress\n---\n")
	writeIssue(t, dir, "abc-1.md", "---\ntitle: other case, other workspace\nstate: Todo\n---\n")
	writeIssue(t, dir, "OK-1.md", "---\ntitle: fine\nstate: Todo\nblocked_by: [ABC-1]\n---\n")
	logs := &logBuf{}
	f := newTestFiles(t, dir, "", logs)

	got, dropped, err := f.Candidates(t.Context(), []string{"Todo", "In Progress"})
	if err != nil {
		t.Fatal(err)
	}
	var idents []string
	for _, iss := range got {
		idents = append(idents, iss.Identifier)
	}
	if strings.Join(idents, ",") != "OK-1,abc-1" || dropped != 5 {
		t.Fatalf("listed %v, dropped %d; want OK-1,abc-1 and 5 dropped", idents, dropped)
	}
	if got[0].Dispatchable {
		t.Error("OK-1 is blocked by ABC-1, whose files clash: its state is unknown, so it must count as open")
	}
	lines := strings.Split(logs.String(), "\n")
	for _, want := range [][]string{
		{`identifier \"ABC-1\"`, "ABC-1.md", "ABC-2.md"},
		{`id \"ABC-1\"`, "ABC-1.md", "ABC-3.md"},
		{`id \"shared\"`, "ABC-4.md", "ABC-5.md"},
	} {
		found := false
		for _, line := range lines {
			if strings.Contains(line, want[0]) && strings.Contains(line, want[1]) && strings.Contains(line, want[2]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no log line gives the reason %s naming %s and %s:\n%s", want[0], want[1], want[2], logs)
		}
	}
	for _, id := range []string{"ABC-1", "shared"} {
		if ref, err := f.Refresh(t.Context(), []string{id}); err == nil || !strings.Contains(err.Error(), "share an id or identifier") {
			t.Errorf("refresh %s answered %d issues (%v), want an error saying files clash", id, len(ref), err)
		}
	}

	// Once the clash is resolved, the remaining file is used again.
	for _, name := range []string{"ABC-2.md", "ABC-3.md"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if ref, err := f.Refresh(t.Context(), []string{"ABC-1"}); err != nil || len(ref) != 1 || ref[0].Title != "one" {
		t.Errorf("refresh ABC-1 after the clash was resolved: %+v %v", ref, err)
	}
}

// bombIssue is the issue's 600-byte issue file: field is an alias whose
// value, expanded, has 10¹⁰ leaves.
func bombIssue(field string) string {
	var b strings.Builder
	b.WriteString("---\ntitle: t\nstate: Todo\na0: &a0 [x,x,x,x,x,x,x,x,x,x]\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, "%s: *a10\n---\nbody\n", field)
	return b.String()
}

// TestAliasBombIssueIsRefusedCheaply: an alias bomb in any field made the
// error message (%v of the value) walk 10¹⁰ leaves: the tracker spun at
// 100 % CPU and grew until killed. The file is now refused in memory
// proportional to its bytes, with a short message, whatever the field.
func TestAliasBombIssueIsRefusedCheaply(t *testing.T) {
	for _, field := range []string{"labels", "priority", "blocked_by", "created_at", "updated_at", "assignee", "url", "id"} {
		src := bombIssue(field)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := parseIssue("BOMB-1", []byte(src))
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%s: bomb accepted", field)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%s: refusing %d bytes allocated %d bytes", field, len(src), n)
		}
		if len(err.Error()) > 300 || !strings.Contains(err.Error(), "alias") {
			t.Errorf("%s: message %q (%d bytes), want a short one naming the aliases", field, err, len(err.Error()))
		}
	}
}

// TestBadValuesAreQuotedBriefly: a value of the wrong type is named in the
// error by a bounded description, never printed whole.
func TestBadValuesAreQuotedBriefly(t *testing.T) {
	long := "[" + strings.Repeat("[x, y, z], ", 5000) + "]"
	for _, field := range []string{"priority", "created_at"} {
		_, err := parseIssue("BAD-1", []byte("---\ntitle: t\nstate: Todo\n"+field+": "+long+"\n---\n"))
		if err == nil || len(err.Error()) > 200 {
			t.Errorf("%s: %v", field, err)
		}
	}
	_, err := parseIssue("BAD-1", []byte("---\ntitle: t\nstate: Todo\nlabels: ["+strings.Repeat("x", 100000)+", [a]]\ncreated_at: "+strings.Repeat("y", 100000)+"\n---\n"))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("long label or time: %.300v", err)
	}
}

// TestDeeplyNestedIssueIsRefused: a 100,000-deep list is refused from the
// tokens, before the parser (whose work grows with the square of the depth).
func TestDeeplyNestedIssueIsRefused(t *testing.T) {
	src := "---\ntitle: t\nstate: Todo\nlabels: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n---\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := parseIssue("DEEP-1", []byte(src))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("err = %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(2048*len(src)) {
		t.Errorf("refusing %d bytes allocated %d bytes", len(src), n)
	}
}

// TestHostileOneLineIssuesAreRefusedCheaply: issue files just under the
// 1 MiB limit whose front matter is one line of duplicate keys (80 s and
// 334 GB before), of `x,` (782 MB, accepted) or of `[` (242 MB) are
// refused with a short message after a few MB, and a long description
// after a short front matter is still accepted: the body is not YAML.
func TestHostileOneLineIssuesAreRefusedCheaply(t *testing.T) {
	const n = MaxIssueFileBytes - 100
	head := "---\ntitle: t\nstate: Todo\nlabels: "
	for name, src := range map[string]string{
		"duplicate keys":       head + "{" + strings.Repeat("k: v, ", n/6) + "k: v}\n---\n",
		"flat list":            head + "[" + strings.Repeat("x,", n/2) + "x]\n---\n",
		"open brackets":        head + strings.Repeat("[", n) + "\n---\n",
		"long list of 256 KiB": head + "[" + strings.Repeat("x,", (yamlbound.MaxBytes-len(head))/2-10) + "x]\n---\n",
	} {
		var err error
		n := allocated(func() { _, err = parseIssue("BIG-1", []byte(src)) })
		if err == nil || len(err.Error()) > 200 {
			t.Errorf("%s: err = %.300v", name, err)
		}
		if n > 150<<20 {
			t.Errorf("%s: refusing %d bytes allocated %d MB", name, len(src), n>>20)
		}
	}
	fi, err := parseIssue("BODY-1", []byte("---\ntitle: t\nstate: Todo\nlabels: [a, b]\n---\n"+strings.Repeat("Text of the description.\n", (MaxIssueFileBytes-100)/25)))
	if err != nil || len(fi.issue.Labels) != 2 {
		t.Errorf("long description: %v %+v", err, fi.issue.Labels)
	}
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestFilesKeepsRefusalsOfUnchangedFiles: a malformed file was parsed
// again at every poll and every candidates, terminal and refresh request
// (only parses were kept). Its refusal is now kept by the file's stamp like
// a parse: parsed once per change, and read again once it is fixed.
func TestFilesKeepsRefusalsOfUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuf{}
	f := newTestFiles(t, dir, "", logs)
	f.racy, f.racyFine = 0, 0
	writeIssue(t, dir, "OK-1.md", "---\ntitle: fine\nstate: Todo\n---\n")
	writeIssue(t, dir, "BAD-1.md", "---\ntitle: t\nstate: Todo\nlabels: {"+strings.Repeat("k: v, ", 1000)+"k: v}\n---\n")
	for range 5 {
		got, dropped, err := f.Candidates(t.Context(), []string{"Todo"})
		if err != nil || dropped != 1 || len(got) != 1 {
			t.Fatalf("candidates: %d, dropped %d, %v", len(got), dropped, err)
		}
	}
	if _, err := f.Refresh(t.Context(), []string{"OK-1"}); err != nil {
		t.Fatal(err)
	}
	if f.parses != 2 {
		t.Fatalf("%d parses for two unchanged files read six times, want 2", f.parses)
	}
	if c := strings.Count(logs.String(), "already defined"); c != 6 {
		t.Errorf("the kept refusal logged %d times in six loads, want 6 (every load still names it):\n%s", c, logs.String())
	}
	// Fixed: read again, once.
	// (Another size: the stamp differs whatever the clock.)
	writeIssue(t, dir, "BAD-1.md", "---\ntitle: t\nstate: Todo\nlabels: [k]\n---\n")
	for range 2 {
		if got, dropped, err := f.Candidates(t.Context(), []string{"Todo"}); err != nil || dropped != 0 || len(got) != 2 {
			t.Fatalf("candidates after the fix: %d, dropped %d, %v", len(got), dropped, err)
		}
	}
	if f.parses != 3 {
		t.Errorf("%d parses after the fix and two polls, want 3", f.parses)
	}
}
