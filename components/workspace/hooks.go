package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/secretenv"
	"github.com/symphony-oss/symphony/internal/shellrun"
)

// Hook output limits.
const (
	// MaxHookOutput is how much of a hook's combined output is kept: its
	// first and its last halves.
	MaxHookOutput = shellrun.MaxOutput
	// LogHookOutput is how much of it goes into logs and events.
	LogHookOutput = 4 << 10
)

// HookError is a hook that failed or timed out.
type HookError struct {
	Hook     string
	ExitCode int
	TimedOut bool
	Timeout  time.Duration
	Output   string
	Err      error
}

func (e *HookError) Error() string {
	if e.TimedOut {
		return fmt.Sprintf("hook %s timed out after %s (process group killed)", e.Hook, e.Timeout)
	}
	if e.ExitCode > 0 {
		return fmt.Sprintf("hook %s exited with status %d: %s", e.Hook, e.ExitCode, lastLine(e.Output))
	}
	return fmt.Sprintf("hook %s failed: %v", e.Hook, e.Err)
}

// Code classes the error on the bus.
func (e *HookError) Code() string {
	if e.TimedOut {
		return bus.CodeHookTimedOut
	}
	return bus.CodeHookFailed
}

// Bounds of the issue variables a hook gets. Outside text (a 900 KB
// title, 60,000 labels) must not make the environment too large to exec
// (Linux refuses a single "NAME=value" over 128 KiB and all of argv and
// the environment over a quarter of the stack limit, 2 MiB by default,
// with E2BIG), or every attempt of every hook would fail. A longer value
// is cut, on a UTF-8 boundary (ISSUE_LABELS after a whole label), and
// ends with a marker saying how much is missing; the whole issue is in
// the file named by SYMPHONY_ISSUE_JSON.
const (
	// MaxHookVar bounds ISSUE_ID, ISSUE_IDENTIFIER, ISSUE_TITLE,
	// ISSUE_STATE and ISSUE_URL, marker included.
	MaxHookVar = 8 << 10
	// MaxHookLabels bounds ISSUE_LABELS, marker included.
	MaxHookLabels = 32 << 10
	// IssueJSONVar names the file that holds the whole issue as JSON.
	IssueJSONVar = "SYMPHONY_ISSUE_JSON"
)

// cutValue returns s if it fits limit bytes, else its longest prefix that
// ends on a character boundary and leaves room for the marker, plus the
// marker.
func cutValue(s string, limit int) string {
	return shellrun.Cut(s, limit, func(n int) string { return cutMarker(n, "bytes") })
}

// cutLabels joins labels with commas within limit bytes: whole labels in
// their order, then, if some do not fit, a marker of how many are left
// out (a label cut in half could match another one in a script). The
// marker holds no comma: a script splitting on commas sees one element.
func cutLabels(labels []string, limit int) string {
	clean := make([]string, len(labels))
	total := 0
	for i, l := range labels {
		clean[i] = strings.ReplaceAll(l, "\x00", "")
		total += len(clean[i]) + 1
	}
	if total-1 <= limit {
		return strings.Join(clean, ",")
	}
	room := limit - len(cutMarker(len(labels), "labels")) - 1 // the comma before the marker
	var b strings.Builder
	n := 0
	for _, l := range clean {
		sep := min(n, 1)
		if b.Len()+sep+len(l) > room {
			break
		}
		if sep > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		n++
	}
	if n > 0 {
		b.WriteByte(',')
	}
	b.WriteString(cutMarker(len(labels)-n, "labels"))
	return b.String()
}

func cutMarker(n int, what string) string {
	return fmt.Sprintf("…[cut: %d more %s; the full issue is in $%s]", n, what, IssueJSONVar)
}

// hookEnv is the hook's environment: the parent's, minus what drop
// refuses (the tracker's credential, see secretDrop; nil keeps all), plus
// the fixed issue variables (bounded, see MaxHookVar) and issueFile as
// SYMPHONY_ISSUE_JSON. Issue data reaches a hook only here, never in the
// script text.
func hookEnv(parent []string, drop func(name, value string) bool, issue bus.Issue, dir, issueFile string) []string {
	// Environment values cannot hold NUL; drop it rather than fail.
	v := func(s string) string { return cutValue(strings.ReplaceAll(s, "\x00", ""), MaxHookVar) }
	fixed := map[string]string{
		"ISSUE_ID":           v(issue.ID),
		"ISSUE_IDENTIFIER":   v(issue.Identifier),
		"ISSUE_TITLE":        v(issue.Title),
		"ISSUE_STATE":        v(issue.State),
		"ISSUE_URL":          v(deref(issue.URL)),
		"ISSUE_LABELS":       cutLabels(issue.Labels, MaxHookLabels),
		"SYMPHONY_WORKSPACE": strings.ReplaceAll(dir, "\x00", ""),
		IssueJSONVar:         issueFile,
	}
	return shellrun.Env(parent, drop, fixed)
}

// secretDrop is what a hook run under snap must not inherit from parent:
// every variable holding the tracker's credential (internal/secretenv),
// unless hooks.inherit_secrets keeps them all.
func secretDrop(snap bus.ConfigSnapshot, parent []string) func(name, value string) bool {
	if snap.Config.Hooks.InheritSecrets {
		return nil
	}
	return secretenv.Drop(snap, parent)
}

// writeIssueFile writes the whole issue as JSON to a new file of mode
// 0600 in the temporary directory (outside every workspace, so an agent
// working there does not see or commit it) and returns its path.
func writeIssueFile(issue bus.Issue) (string, error) {
	b, err := json.Marshal(issue)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "symphony-issue-*.json") // mode 0600
	if err != nil {
		return "", err
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(f.Name())
		return "", werr
	}
	return f.Name(), nil
}

// runHook runs one hook for issue in dir: the issue file, the bounded
// environment, the script, and the file removed when the hook has ended
// (timed out included). Both the component and the tests run hooks here.
func runHook(ctx context.Context, name, script, dir string, parent []string, drop func(name, value string) bool, issue bus.Issue, timeout time.Duration) (string, time.Duration, error) {
	path, err := writeIssueFile(issue)
	if err != nil {
		return "", 0, &HookError{Hook: name, ExitCode: -1, Err: fmt.Errorf("write the issue file for $%s: %w", IssueJSONVar, err)}
	}
	defer os.Remove(path)
	env := hookEnv(parent, drop, issue, dir, path)
	return runScript(ctx, name, script, dir, env, timeout)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runScript runs script with bash -lc in dir, in its own process group,
// and kills the whole group at the timeout (and after the shell exits, so a
// background job cannot outlive its hook): shellrun.Run, its failure
// named after the hook.
func runScript(ctx context.Context, name, script, dir string, env []string, timeout time.Duration) (string, time.Duration, error) {
	out, dur, err := shellrun.Run(ctx, shellrun.Spec{Script: script, Dir: dir, Env: env, Timeout: timeout})
	var se *shellrun.Error
	if errors.As(err, &se) {
		return out, dur, &HookError{Hook: name, ExitCode: se.ExitCode, TimedOut: se.TimedOut, Timeout: se.Timeout, Output: se.Output, Err: se.Err}
	}
	return out, dur, err
}

// truncate shortens hook output for logs and events, keeping the end (where
// errors are).
func truncate(s string, n int) string { return shellrun.Truncate(s, n) }

func lastLine(s string) string { return shellrun.LastLine(s) }
