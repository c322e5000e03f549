package tracker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// callFiles runs one files tool for the run r1 of issue own.
func callFiles(t *testing.T, f *files, own bus.IssueRef, name, args string) bus.ToolResult {
	t.Helper()
	return runTool(t.Context(), f.tools(), bus.CallTool{RunID: "r1", Issue: own, Tool: name, Arguments: json.RawMessage(args)})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stateOf(t *testing.T, f *files, id string) string {
	t.Helper()
	list, err := f.Refresh(context.Background(), []string{id})
	if err != nil || len(list) != 1 {
		t.Fatalf("refresh %s: %v %v", id, list, err)
	}
	return list[0].State
}

func TestFilesSetStateIsSeenByTheNextPoll(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\n# the operator's note stays\nid: id-1\ntitle: one\nstate: In Progress\nlabels: [x]\n---\nDo it.\n")
	writeIssue(t, dir, "A-2.md", "---\nid: id-2\ntitle: two\nstate: In Progress\n---\nOther.\n")
	other := readFile(t, filepath.Join(dir, "A-2.md"))
	f := newTestFiles(t, dir, "", &logBuf{})
	f.racy, f.racyFine = 0, 0
	own := bus.IssueRef{ID: "id-1", Identifier: "A-1"}
	if got := stateOf(t, f, "id-1"); got != "In Progress" {
		t.Fatalf("before: %q", got)
	}
	res := callFiles(t, f, own, "files_set_state", `{"state": "Human Review"}`)
	if !res.OK {
		t.Fatalf("set state: %+v", res)
	}
	var out map[string]string
	if err := json.Unmarshal(res.Output, &out); err != nil || out["previous_state"] != "In Progress" || out["state"] != "Human Review" {
		t.Errorf("output %s (%v)", res.Output, err)
	}
	list, _, err := f.Candidates(t.Context(), []string{"In Progress"})
	if err != nil || len(list) != 1 || list[0].ID != "id-2" {
		t.Errorf("next poll of In Progress: %v %v", list, err)
	}
	if got := stateOf(t, f, "id-1"); got != "Human Review" {
		t.Errorf("after: %q", got)
	}
	text := readFile(t, filepath.Join(dir, "A-1.md"))
	if !strings.Contains(text, "# the operator's note stays\n") || !strings.Contains(text, "labels: [x]\n") || !strings.HasSuffix(text, "---\nDo it.\n") {
		t.Errorf("the rest of the file changed:\n%s", text)
	}
	if got := readFile(t, filepath.Join(dir, "A-2.md")); got != other {
		t.Errorf("the other issue changed:\n%s", got)
	}
	// A name YAML would read otherwise is quoted.
	for _, state := range []string{`Won't "fix": <now> #1`, "yes", "null", "Ünïcode ✓"} {
		b, _ := json.Marshal(map[string]string{"state": state})
		if res := callFiles(t, f, own, "files_set_state", string(b)); !res.OK {
			t.Fatalf("set state %q: %+v", state, res)
		}
		if got := stateOf(t, f, "id-1"); got != state {
			t.Errorf("state %q read back as %q", state, got)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestFilesAddCommentAppends(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\nDo it.\n")
	writeIssue(t, dir, "A-2.md", "---\ntitle: two\nstate: Todo\n---\n")
	other := readFile(t, filepath.Join(dir, "A-2.md"))
	f := newTestFiles(t, dir, "", &logBuf{})
	own := bus.IssueRef{ID: "A-1", Identifier: "A-1"}
	for _, body := range []string{"First: done.", "Second\nwith two lines."} {
		b, _ := json.Marshal(map[string]string{"body": body})
		if res := callFiles(t, f, own, "files_add_comment", string(b)); !res.OK {
			t.Fatalf("comment: %+v", res)
		}
	}
	text := readFile(t, filepath.Join(dir, "A-1.md"))
	first, second := strings.Index(text, "First: done."), strings.Index(text, "Second\nwith two lines.\n")
	if !strings.HasPrefix(text, "---\ntitle: one\nstate: Todo\n---\nDo it.\n\n## Comment (run r1, ") || first < 0 || second < first {
		t.Errorf("file after two comments:\n%s", text)
	}
	if got := stateOf(t, f, "A-1"); got != "Todo" {
		t.Errorf("state %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "A-2.md")); got != other {
		t.Errorf("the other issue changed:\n%s", got)
	}
	big, _ := json.Marshal(map[string]string{"body": strings.Repeat("x", MaxCommentBytes+1)})
	if res := callFiles(t, f, own, "files_add_comment", string(big)); res.OK || res.Class != bus.ToolBadArguments {
		t.Errorf("oversized comment: %+v", res)
	}
}

func TestFilesToolsActOnlyOnTheRunsIssue(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	writeIssue(t, dir, "A-3.md", "---\nidentifier: A-3\ntitle: multi\nstate: |\n  Todo\n---\n")
	f := newTestFiles(t, dir, "", &logBuf{})
	for name, c := range map[string]struct {
		own   bus.IssueRef
		class string
	}{
		"absent issue":          {bus.IssueRef{ID: "A-9", Identifier: "A-9"}, bus.TrackerRequestError},
		"id of another":         {bus.IssueRef{ID: "A-1", Identifier: "A-2"}, bus.ToolRefused},
		"no issue":              {bus.IssueRef{}, bus.ToolBadArguments},
		"state not on one line": {bus.IssueRef{ID: "A-3", Identifier: "A-3"}, bus.ToolRefused},
	} {
		before := readFile(t, filepath.Join(dir, "A-1.md")) + readFile(t, filepath.Join(dir, "A-3.md"))
		res := callFiles(t, f, c.own, "files_set_state", `{"state":"Done"}`)
		if res.OK || res.Class != c.class || res.Error == "" {
			t.Errorf("%s: %+v", name, res)
		}
		if after := readFile(t, filepath.Join(dir, "A-1.md")) + readFile(t, filepath.Join(dir, "A-3.md")); after != before {
			t.Errorf("%s: a file changed", name)
		}
	}
	// A file that is a link (to outside the directory, say) is not
	// written through.
	outside := filepath.Join(t.TempDir(), "B-1.md")
	writeIssue(t, filepath.Dir(outside), "B-1.md", "---\ntitle: linked\nstate: Todo\n---\n")
	if err := os.Symlink(outside, filepath.Join(dir, "B-1.md")); err != nil {
		t.Fatal(err)
	}
	if res := callFiles(t, f, bus.IssueRef{ID: "B-1", Identifier: "B-1"}, "files_set_state", `{"state":"Done"}`); res.OK || res.Rule != "regular_file_only" {
		t.Errorf("linked issue file: %+v", res)
	}
	if got := readFile(t, outside); got != "---\ntitle: linked\nstate: Todo\n---\n" {
		t.Errorf("written through the link:\n%s", got)
	}
}

func TestFilesToolsRefuseBadArguments(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	f := newTestFiles(t, dir, "", &logBuf{})
	own := bus.IssueRef{ID: "A-1", Identifier: "A-1"}
	for args, want := range map[string]string{
		`{}`:                           `missing required field "state"`,
		`null`:                         `missing required field "state"`,
		`{"state": null}`:              `missing required field "state"`,
		`{"state": 3}`:                 `field "state": want a string, got a JSON number`,
		`{"State": "Done"}`:            `unknown field "State"`,
		`{"state": "Done", "x": 1}`:    `unknown field "x"`,
		`{"state": "A", "state": "B"}`: `field "state" is given twice`,
		`["Done"]`:                     `must be a JSON object`,
		`"Done"`:                       `must be a JSON object`,
		`{"state": "Done"} {}`:         `data after the JSON object`,
		`{"state": "Done"`:             `not JSON`,
		`{"state": "  "}`:              `field "state" is empty`,
		`{"state": "a\nb"}`:            `one line`,
		`{"state": "\u001b[31mred"}`:   `control characters`,
		"{\"state\": \"\xff\"}":        `not valid UTF-8`,
	} {
		res := callFiles(t, f, own, "files_set_state", args)
		if res.OK || res.Class != bus.ToolBadArguments || !strings.Contains(res.Error, want) {
			t.Errorf("%s: %+v, want an error with %q", args, res, want)
		}
	}
	long, _ := json.Marshal(map[string]string{"state": strings.Repeat("s", maxStateBytes+1)})
	if res := callFiles(t, f, own, "files_set_state", string(long)); res.OK || !strings.Contains(res.Error, "over the bound") {
		t.Errorf("long state: %+v", res)
	}
	huge := `{"state": "` + strings.Repeat("s", bus.ToolArgumentsMaxBytes) + `"}`
	if res := callFiles(t, f, own, "files_set_state", huge); res.OK || !strings.Contains(res.Error, "over the bound of 65536") {
		t.Errorf("huge arguments: %+v", res)
	}
	if res := callFiles(t, f, own, "linear_graphql", `{}`); res.OK || res.Class != bus.ToolUnknown || !strings.Contains(res.Error, "files_set_state, files_add_comment") {
		t.Errorf("unknown tool: %+v", res)
	}
	if got := readFile(t, filepath.Join(dir, "A-1.md")); got != "---\ntitle: one\nstate: Todo\n---\n" {
		t.Errorf("file changed:\n%s", got)
	}
}

// FuzzToolArguments: whatever the agent sends as arguments, decoding
// returns (no panic), and what it accepts has exactly the fields asked.
func FuzzToolArguments(f *testing.F) {
	for _, s := range []string{`{}`, `null`, `{"query":"{ viewer { id } }"}`, `{"query":"q","variables":{"a":1}}`, `{"query":"q","variables":[]}`,
		`{"query":"q","query":"r"}`, `{"Query":"q"}`, `[1,2]`, `{"query":"q"} x`, `{"query":"\u0000"}`, `{"query":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var query string
		var vars json.RawMessage
		if err := decodeArgs(raw, argField{"query", true, &query}, argField{"variables", false, &vars}); err != nil {
			if err.Error() == "" {
				t.Error("an empty error")
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("accepted what is not an object: %q: %v", raw, err)
		}
		for k := range m {
			if k != "query" && k != "variables" {
				t.Fatalf("accepted field %q", k)
			}
		}
		// The Linear tool's whole argument path: decode, parse, scope; a
		// rate limit in effect stops it before any request is sent.
		l := &linear{apiKey: "k", now: time.Now, gate: &rateGate{till: time.Now().Add(time.Hour)}}
		res := l.graphqlTool(t.Context(), toolRun{id: "r", issue: bus.IssueRef{ID: "i", Identifier: "I-1"}}, raw)
		if res.OK || res.Error == "" || res.Class == "" {
			t.Fatalf("result %+v", res)
		}
	})
}
