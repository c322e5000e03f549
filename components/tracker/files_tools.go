package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/symphony-oss/symphony/bus"
)

// The files tracker's tools let an agent move its own issue and comment on
// it, so the demo and the tests use tools without any SaaS. Both act only
// on the file of the run's issue (found by its id, as a poll reads it; the
// agent names no file), write it atomically (a temporary file renamed over
// it) and keep it within MaxIssueFileBytes.

// Bounds of the files tools' arguments.
const (
	// maxStateBytes bounds a state name.
	maxStateBytes = 100
	// MaxCommentBytes bounds one comment's body.
	MaxCommentBytes = 16 << 10
)

var (
	filesSetStateSchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["state"],` +
		`"properties":{"state":{"type":"string","minLength":1,"maxLength":100,"description":"The new state, e.g. \"Human Review\" or \"Done\"."}}}`)
	filesAddCommentSchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["body"],` +
		`"properties":{"body":{"type":"string","minLength":1,"maxLength":16384,"description":"Markdown text of the comment."}}}`)
)

// tools implements adapter.
func (f *files) tools() []tool {
	return []tool{
		{spec: bus.ToolSpec{Name: "files_set_state", Mutates: true, InputSchema: filesSetStateSchema,
			Description: "Set the state of your own issue (the one this run works on) in the files tracker, e.g. to hand it off for review. Any one-line state name is accepted: the next poll reads it, and an issue no longer in an active state is not run again."},
			call: f.setStateTool},
		{spec: bus.ToolSpec{Name: "files_add_comment", Mutates: true, InputSchema: filesAddCommentSchema,
			Description: "Append a comment to your own issue's file (the one this run works on), under a heading naming the run and the time."},
			call: f.addCommentTool},
	}
}

// setStateTool is files_set_state. The files tracker has no list of
// states (the file is the state): any one-line name is accepted, so an
// issue can be handed to a state the workflow neither runs nor ends
// (Human Review).
func (f *files) setStateTool(ctx context.Context, run toolRun, args json.RawMessage) bus.ToolResult {
	var state string
	if err := decodeArgs(args, argField{"state", true, &state}); err != nil {
		return failed(bus.ToolBadArguments, err.Error())
	}
	state = strings.TrimSpace(state)
	switch {
	case state == "":
		return failed(bus.ToolBadArguments, `field "state" is empty`)
	case len(state) > maxStateBytes:
		return failed(bus.ToolBadArguments, fmt.Sprintf(`field "state" is %d bytes, over the bound of %d`, len(state), maxStateBytes))
	case strings.IndexFunc(state, unicode.IsControl) >= 0:
		return failed(bus.ToolBadArguments, `field "state" must be one line without control characters`)
	}
	var prev string
	res := f.rewriteOwn(ctx, run, func(data []byte, cur fileIssue) ([]byte, error) {
		prev = cur.issue.State
		return withState(data, state)
	}, func(next fileIssue) error {
		if next.issue.State != state {
			return fmt.Errorf("the state would read %q, not %q", next.issue.State, state)
		}
		return nil
	})
	if !res.OK {
		return res
	}
	return succeeded(map[string]string{"issue": run.issue.Identifier, "previous_state": prev, "state": state})
}

// addCommentTool is files_add_comment: the comment goes at the end of the
// file's body, under a heading with the run and the time.
func (f *files) addCommentTool(ctx context.Context, run toolRun, args json.RawMessage) bus.ToolResult {
	var body string
	if err := decodeArgs(args, argField{"body", true, &body}); err != nil {
		return failed(bus.ToolBadArguments, err.Error())
	}
	body = strings.TrimSpace(strings.ReplaceAll(body, "\r\n", "\n"))
	switch {
	case body == "":
		return failed(bus.ToolBadArguments, `field "body" is empty`)
	case len(body) > MaxCommentBytes:
		return failed(bus.ToolBadArguments, fmt.Sprintf(`field "body" is %d bytes, over the bound of %d`, len(body), MaxCommentBytes))
	case strings.IndexFunc(body, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		return failed(bus.ToolBadArguments, `field "body" has control characters (only newlines and tabs are allowed)`)
	}
	at := time.Now().UTC().Format(time.RFC3339)
	runID := run.id
	if runID == "" {
		runID = bus.NoRun
	}
	heading := fmt.Sprintf("## Comment (run %s, %s)", runID, at)
	res := f.rewriteOwn(ctx, run, func(data []byte, _ fileIssue) ([]byte, error) {
		out := bytes.TrimRight(data, " \t\r\n")
		out = append(out[:len(out):len(out)], "\n\n"+heading+"\n\n"+body+"\n"...)
		return out, nil
	}, func(fileIssue) error { return nil })
	if !res.OK {
		return res
	}
	return succeeded(map[string]string{"issue": run.issue.Identifier, "comment": heading})
}

// rewriteOwn finds the file of the run's issue, changes its bytes with
// edit, checks the result still parses as the same issue (and with check),
// and replaces the file atomically. It refuses a file that is not a
// regular file, one that would grow over MaxIssueFileBytes, and one that
// changed while it was being rewritten.
func (f *files) rewriteOwn(ctx context.Context, run toolRun, edit func([]byte, fileIssue) ([]byte, error), check func(fileIssue) error) bus.ToolResult {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	path, cur, res := f.ownFile(ctx, run.issue)
	if !res.OK {
		return res
	}
	st, err := os.Lstat(path)
	if err != nil {
		return failed(bus.TrackerRequestError, fmt.Sprintf("read the issue file: %v", err))
	}
	if !st.Mode().IsRegular() {
		return refused("regular_file_only", "the issue's file is not a regular file (a symlink, say); the tools write regular files only")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return failed(bus.TrackerRequestError, fmt.Sprintf("read the issue file: %v", err))
	}
	next, err := edit(data, cur)
	if err != nil {
		return refused("editable_front_matter", err.Error())
	}
	if len(next) > MaxIssueFileBytes {
		return refused("issue_file_bound", fmt.Sprintf("the issue file would be %d bytes, over the files tracker's bound of %d", len(next), MaxIssueFileBytes))
	}
	parsed, err := parseIssue(strings.TrimSuffix(filepath.Base(path), ".md"), next)
	if err == nil && (parsed.issue.ID != cur.issue.ID || parsed.issue.Identifier != cur.issue.Identifier) {
		err = fmt.Errorf("the file would describe issue %q, not %q", parsed.issue.Identifier, cur.issue.Identifier)
	}
	if err == nil {
		err = check(parsed)
	}
	if err != nil {
		return refused("editable_front_matter", "the edit would not read back as intended, so nothing was written ("+err.Error()+"); the file's front matter may need an operator's hand")
	}
	if err := replaceFile(path, st, next); err != nil {
		return failed(bus.TrackerRequestError, err.Error())
	}
	return bus.ToolResult{OK: true}
}

// ownFile finds the one file whose issue has the run's issue id and
// identifier, as a poll would read it.
func (f *files) ownFile(ctx context.Context, own bus.IssueRef) (string, fileIssue, bus.ToolResult) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return "", fileIssue{}, failed(bus.TrackerRequestError, fmt.Sprintf("read the issues directory: %v", err))
	}
	var found []fileIssue
	for _, e := range entries {
		if ctx.Err() != nil {
			return "", fileIssue{}, failed(bus.TrackerRequestError, ctx.Err().Error())
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".md") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := f.readIssueFile(filepath.Join(f.dir, e.Name()))
		if err == nil && (fi.issue.ID == own.ID || fi.issue.Identifier == own.Identifier) {
			found = append(found, fi)
		}
	}
	switch {
	case len(found) == 0:
		return "", fileIssue{}, failed(bus.TrackerRequestError, fmt.Sprintf("the run's issue %s is not in the issues directory (gone, or its file is malformed)", own.Identifier))
	case len(found) > 1:
		return "", fileIssue{}, refused("own_issue_only", fmt.Sprintf("%d issue files share the run's issue id or identifier; none is written until one remains", len(found)))
	case found[0].issue.ID != own.ID || found[0].issue.Identifier != own.Identifier:
		return "", fileIssue{}, refused("own_issue_only", "the file of the run's issue now names another id or identifier; nothing was written")
	}
	return found[0].path, found[0], bus.ToolResult{OK: true}
}

// withState returns data with the front matter's top-level state: line
// replaced by state (quoted). A front matter without exactly one such line
// is refused; rewriteOwn checks the result reads back as intended.
func withState(data []byte, state string) ([]byte, error) {
	bom := []byte("\xef\xbb\xbf")
	prefix := []byte{}
	if bytes.HasPrefix(data, bom) {
		prefix, data = bom, data[len(bom):]
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) == 0 || !isFenceLine(lines[0]) {
		return nil, fmt.Errorf("the file has no front matter")
	}
	at := -1
	for i := 1; i < len(lines); i++ {
		if isFenceLine(lines[i]) {
			break
		}
		if key, _, ok := bytes.Cut(lines[i], []byte(":")); ok && string(bytes.TrimRight(key, " \t")) == "state" {
			if at >= 0 {
				return nil, fmt.Errorf("the front matter has more than one state: line")
			}
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("the front matter has no state: line of its own")
	}
	quoted, err := json.Marshal(state)
	if err != nil {
		return nil, err
	}
	eol := "\n"
	if bytes.HasSuffix(lines[at], []byte("\r\n")) {
		eol = "\r\n"
	}
	lines[at] = []byte("state: " + string(quoted) + eol)
	return append(prefix, bytes.Join(lines, nil)...), nil
}

func isFenceLine(line []byte) bool {
	return string(bytes.TrimRight(line, " \t\r\n")) == "---"
}

// replaceFile writes data to a temporary file next to path (hidden: a poll
// skips it) with path's mode, and renames it over path, unless path
// changed since st was taken.
func replaceFile(path string, st os.FileInfo, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tool-*")
	if err != nil {
		return fmt.Errorf("write the issue file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write the issue file: %w", err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return fmt.Errorf("write the issue file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write the issue file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the issue file: %w", err)
	}
	now, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("write the issue file: %w", err)
	}
	a, okA := stampOf(st)
	b, okB := stampOf(now)
	if !okA || !okB || a != b {
		return fmt.Errorf("the issue file changed while the tool was writing it; nothing was written, call again")
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write the issue file: %w", err)
	}
	done = true
	return nil
}
