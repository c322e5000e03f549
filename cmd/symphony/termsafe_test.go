package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/runlog"
)

// evil is what an issue author or an agent's output can hold: a screen
// clear, a window title set ended by BEL, an OSC 52 clipboard write ended
// by ST, a carriage return that hides the start of a line, the 8-bit CSI
// U+009B and NEL U+0085 (as UTF-8), DEL, a lone 0x9B byte and invalid
// UTF-8.
const evil = "\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x1b\\ok\rFORGED \u009b31m\u0085\x7f \x9b \xff\xfe"

// rawControl finds the first raw control in out: a C0 byte other than
// newline and tab, DEL, a C1 character, or a byte that is not UTF-8.
func rawControl(out string) (int, bool) {
	for i, r := range out {
		switch {
		case r == '\n' || r == '\t':
		case r == utf8.RuneError && !strings.HasPrefix(out[i:], "\uFFFD"):
			return i, true
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return i, true
		}
	}
	return -1, false
}

func assertNoRawControl(t *testing.T, what, out string) {
	t.Helper()
	if i, bad := rawControl(out); bad {
		t.Errorf("%s: raw control byte at %d: %q", what, i, out[max(0, i-20):min(len(out), i+20)])
	}
}

// recordEvilRun stores a run whose every outside field holds evil.
func recordEvilRun(t *testing.T, b *bus.Bus, runID string) {
	t.Helper()
	start := time.Now().Add(-time.Hour)
	ref := bus.IssueRef{ID: "id-EVIL-1", Identifier: "EVIL-1", Title: "title " + evil}
	for _, ev := range []bus.RunEvent{
		{RunID: runID, Event: bus.RunDispatched, At: start, Issue: ref},
		{RunID: runID, Event: bus.RunWorkspaceReady, At: start.Add(time.Second), Issue: ref, Workspace: "/ws/EVIL-1"},
		{RunID: runID, Event: bus.RunSessionStarted, At: start.Add(2 * time.Second), Issue: ref, SessionID: "session " + evil},
		{RunID: runID, Event: bus.RunFinished, At: start.Add(9 * time.Second), Issue: ref, Status: bus.RunFailed, Error: "run error " + evil},
	} {
		if err := runlog.Record(t.Context(), b, ev, ""); err != nil {
			t.Fatal(err)
		}
	}
	hook := bus.HookEvent{Hook: bus.HookBeforeRun, Phase: bus.HookFailed, Issue: ref, RunID: runID, At: start.Add(1500 * time.Millisecond),
		Error: "hook error " + evil, Output: "hook output " + evil}
	if _, err := bus.PublishDurable(t.Context(), b, bus.WorkspaceHookEvents, hook, "", runID, bus.HookBeforeRun); err != nil {
		t.Fatal(err)
	}
	// Tool input is JSON as the agent wrote it: C1, DEL and invalid UTF-8
	// may be raw in its strings.
	input := json.RawMessage("{\"command\":\"echo \u009b2J \x7f \xff\",\"note\":\"\\u001b]52;c;eA==\\u0007\"}")
	for i, ev := range []bus.TurnEvent{
		{Kind: bus.TurnPrompt, Text: "prompt for title " + evil},
		{Kind: bus.TurnText, Text: "agent text " + evil},
		{Kind: bus.TurnToolUse, Tool: &bus.ToolCall{ID: "t1", Name: "Bash" + evil, Input: input}},
		{Kind: bus.TurnStderr, Text: "stderr " + evil},
		{Kind: bus.TurnTrackerTool, Text: "tool output " + evil, TrackerTool: &bus.ToolCallRecord{Tool: "linear" + evil, Arguments: input,
			Class: "refused" + evil, Rule: "rule " + evil, Error: "tool error " + evil, DurationMS: 3,
			RateLimit: &bus.ToolRateLimit{Headers: map[string]string{"X-Evil" + evil: "v " + evil}}}},
		{Kind: bus.TurnOutcome, Text: "result " + evil, Result: &bus.TurnResult{IsError: true}},
	} {
		ev.RunID, ev.Turn, ev.Seq, ev.At = runID, 1, int64(i+1), start.Add(time.Duration(3+i)*time.Second)
		if _, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, ev, "", runID, "1"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayPrintEscapesOutsideText: a run whose title, session, agent
// text, tool name and input, stderr, tracker tool call (name, arguments,
// class, rule, error, rate-limit headers, output), hook error and run
// error hold ESC sequences, BEL, OSC 52, C1 and invalid UTF-8 — replay
// --print, runs and the JSON exports write no raw control byte other than
// newline and tab, and the JSON still decodes to what was stored.
func TestReplayPrintEscapesOutsideText(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	recordEvilRun(t, b, "run-evil")
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "--data-dir", dataDir, "replay", "run-evil", "--print", "--speed", "0")
	if code != 0 || !strings.Contains(out, "agent text ") || !strings.Contains(out, `\u001b[2J`) || !strings.Contains(out, `\u009b31m`) ||
		!strings.Contains(out, `tracker tool linear\u001b[2J`) || !strings.Contains(out, `tool error \u001b[2J`) {
		t.Fatalf("replay --print: exit %d\n%s", code, out)
	}
	assertNoRawControl(t, "replay --print", out)
	for _, args := range [][]string{{"runs"}, {"runs", "--json"}, {"replay", "run-evil", "--jsonl"}} {
		code, out := runCLI(t, append([]string{"--data-dir", dataDir}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		assertNoRawControl(t, strings.Join(args, " "), out)
		if args[len(args)-1] == "--jsonl" {
			first, _, _ := strings.Cut(out, "\n")
			var ev struct {
				Event struct {
					Issue struct{ Title string }
				}
			}
			var want string // the title as stored: JSON replaced its invalid bytes
			enc, _ := json.Marshal("title " + evil)
			_ = json.Unmarshal(enc, &want)
			if err := json.Unmarshal([]byte(first), &ev); err != nil || ev.Event.Issue.Title != want {
				t.Errorf("the JSONL export no longer decodes to the stored title: %v %q", err, first)
			}
		}
	}
}

// sgr matches the colour sequences transcriptLine writes itself.
var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// TestTranscriptLineInColourEscapesFields: on a terminal the line is
// written raw for its colours; apart from them, no field may carry a
// control.
func TestTranscriptLineInColourEscapesFields(t *testing.T) {
	dataDir := t.TempDir()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	recordEvilRun(t, b, "run-evil")
	events, _, err := runlog.Timeline(t.Context(), b, "run-evil")
	if err != nil || len(events) != 11 {
		t.Fatalf("%d events, %v", len(events), err)
	}
	for _, ev := range events {
		line := transcriptLine(ev, true)
		if !sgr.MatchString(line) {
			t.Errorf("no colour in %q", line)
		}
		assertNoRawControl(t, "colour line", sgr.ReplaceAllString(line, ""))
		if strings.Contains(line, "\n") {
			t.Errorf("a transcript line spans lines: %q", line)
		}
	}
}

// TestErrorsAndValidateEscapeOutsideText: what a command prints about a
// WORKFLOW.md (sample prompts, effective config, errors quoting its
// values) and its errors on stderr reach the terminal escaped.
func TestErrorsAndValidateEscapeOutsideText(t *testing.T) {
	dir := t.TempDir()
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, "---\ntracker: {kind: files, provider: {path: issues}}\nhooks: {after_create: \"echo '"+strings.ReplaceAll(evil, "\\", "\\\\")+"'\"}\n---\nPrompt "+evil+" for {{ issue.identifier }}.\n")
	code, out := runCLI(t, "validate", wf)
	if code != 0 || !strings.Contains(out, "Prompt ") {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	assertNoRawControl(t, "validate", out)
	code, out = runCLI(t, "validate", "--json", wf)
	if code != 0 || json.Valid([]byte(out)) != true {
		t.Fatalf("validate --json: exit %d\n%s", code, out)
	}
	assertNoRawControl(t, "validate --json", out)
	// An error naming outside text: a missing workflow whose name holds
	// the sequences, and an unknown run id.
	code, out = runCLI(t, "validate", filepath.Join(dir, "missing"+evil+".md"))
	if code == 0 || !strings.Contains(out, "missing") {
		t.Fatalf("validate of a missing file: exit %d\n%s", code, out)
	}
	assertNoRawControl(t, "validate error", out)
	code, out = runCLI(t, "--data-dir", dir, "replay", "x"+evil, "--print")
	if code == 0 {
		t.Fatalf("replay of an unknown run: exit %d\n%s", code, out)
	}
	assertNoRawControl(t, "replay error", out)
}

// TestLogHandlersEscapeThroughStderr: slog's text handler quotes a value
// holding C0, C1 or invalid UTF-8 but writes DEL raw; its JSON handler
// writes C1 and DEL raw (valid JSON). Through the process's stderr
// writer neither leaves a raw control, and JSON stays valid with the
// same values.
func TestLogHandlersEscapeThroughStderr(t *testing.T) {
	values := []string{evil, "c1 \u009b[2J", "nel \u0085", "del\x7f", "esc \x1b]0;x\x07", "bad \xff"}
	for _, format := range []string{"text", "json"} {
		var raw, safe bytes.Buffer
		g := &Globals{LogFormat: format, LogLevel: "info"}
		rawLog, safeLog := g.logger(&raw), g.logger(termsafe.NewWriter(&safe))
		for _, v := range values {
			for _, l := range []*slog.Logger{rawLog, safeLog} {
				l.Info("msg "+v, "title", v, "err", errors.New(v), v, 1)
			}
		}
		if _, bad := rawControl(raw.String()); !bad {
			t.Errorf("%s: the handler alone escapes everything; the writer is not what makes it safe (test is stale)", format)
		}
		assertNoRawControl(t, format+" log", safe.String())
		if format == "json" {
			for line := range strings.SplitSeq(strings.TrimSpace(safe.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Errorf("escaped JSON log line is not JSON: %v %q", err, line)
				}
			}
		}
	}
}
