package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// Hook output limits.
const (
	// MaxHookOutput is how much of a hook's combined output is kept: its
	// first and its last halves.
	MaxHookOutput = 64 << 10
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

// The kept output is split between its start (what the hook was doing)
// and its end (why it failed).
const (
	keepHead = MaxHookOutput / 2
	keepTail = MaxHookOutput - keepHead
)

// capped keeps the first keepHead and the last keepTail bytes written to
// it, so memory stays bounded however much a hook prints and the error a
// hook ends with is never the part dropped.
type capped struct {
	mu    sync.Mutex
	head  []byte
	tail  []byte // ring of the latest bytes after head, full once len is keepTail
	next  int    // where the ring's oldest byte is (and the next write goes) once full
	after int64  // bytes written after head, kept or not
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	if room := keepHead - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	c.after += int64(len(p))
	if c.tail == nil {
		c.tail = make([]byte, 0, keepTail)
	}
	if len(p) >= keepTail {
		c.tail, c.next = append(c.tail[:0], p[len(p)-keepTail:]...), 0
		return n, nil
	}
	if room := keepTail - len(c.tail); room > 0 {
		k := min(room, len(p))
		c.tail = append(c.tail, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(c.tail[c.next:], p)
		c.next = (c.next + k) % keepTail
		p = p[k:]
	}
	return n, nil
}

// String is the head, a note of how much was dropped, and the tail (from
// its first whole UTF-8 character).
func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail := append(append(make([]byte, 0, len(c.tail)), c.tail[c.next:]...), c.tail[:c.next]...)
	lost := c.after - int64(len(tail))
	if lost == 0 {
		return string(c.head) + string(tail)
	}
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
		lost++
	}
	return fmt.Sprintf("%s\n[… %d bytes not kept]\n%s", c.head, lost, tail)
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
	if len(s) <= limit {
		return s
	}
	// The marker's number is at most len(s): room for that many digits.
	keep := max(limit-len(cutMarker(len(s), "bytes")), 0)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + cutMarker(len(s)-keep, "bytes")
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

// hookEnv is the hook's environment: the parent's, minus the tracker
// secret's variable and LINEAR_API_KEY unless inherit, plus the fixed issue
// variables (bounded, see MaxHookVar) and issueFile as SYMPHONY_ISSUE_JSON.
// Issue data reaches a hook only here, never in the script text.
func hookEnv(parent []string, secretVar string, inherit bool, issue bus.Issue, dir, issueFile string) []string {
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
	env := make([]string, 0, len(parent)+len(fixed))
	for _, kv := range parent {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := fixed[name]; ok {
			continue
		}
		if !inherit && (name == secretVar || name == "LINEAR_API_KEY") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range fixed {
		env = append(env, k+"="+v)
	}
	return env
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
func runHook(ctx context.Context, name, script, dir string, parent []string, secretVar string, inherit bool, issue bus.Issue, timeout time.Duration) (string, time.Duration, error) {
	path, err := writeIssueFile(issue)
	if err != nil {
		return "", 0, &HookError{Hook: name, ExitCode: -1, Err: fmt.Errorf("write the issue file for $%s: %w", IssueJSONVar, err)}
	}
	defer os.Remove(path)
	env := hookEnv(parent, secretVar, inherit, issue, dir, path)
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
// background job cannot outlive its hook).
func runScript(ctx context.Context, name, script, dir string, env []string, timeout time.Duration) (out string, dur time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-lc", script)
	cmd.Dir = dir
	cmd.Env = env
	var buf capped
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output pipes held open by a killed group's stragglers must not hang
	// Wait.
	cmd.WaitDelay = time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.E2BIG) {
			err = tooBig(script, env, err)
		}
		return "", 0, &HookError{Hook: name, ExitCode: -1, Err: err}
	}
	werr := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(werr, exec.ErrWaitDelay) && cmd.ProcessState != nil && ctx.Err() == nil {
		// The shell exited but a background job it left held the output
		// open; the job is killed above, and the shell's status stands.
		werr = nil
		if !cmd.ProcessState.Success() {
			werr = &exec.ExitError{ProcessState: cmd.ProcessState}
		}
	}
	dur = time.Since(start)
	out = buf.String()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, dur, &HookError{Hook: name, TimedOut: true, Timeout: timeout, Output: out, ExitCode: -1}
	case werr != nil:
		code := -1
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitCode()
		}
		return out, dur, &HookError{Hook: name, ExitCode: code, Output: out, Err: werr}
	}
	return out, dur, nil
}

// tooBig explains an exec refused with E2BIG. The issue variables are
// bounded, so what is too large is the script or Symphony's own
// environment, which the operator controls.
func tooBig(script string, env []string, err error) error {
	size, largest, largestName := 0, 0, ""
	for _, kv := range env {
		size += len(kv) + 1
		if len(kv) > largest {
			largest = len(kv)
			largestName, _, _ = strings.Cut(kv, "=")
		}
	}
	return fmt.Errorf("cannot start: the script (%d bytes) and the environment (%d variables, %d bytes; the largest, %s, %d bytes) are more than the system allows a new process (E2BIG; on Linux 128 KiB for one string, a quarter of the stack limit for all): shorten the script or Symphony's own environment: %w",
		len(script), len(env), size, largestName, largest, err)
}

// truncate shortens hook output for logs and events, keeping the end (where
// errors are).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := len(s) - n
	for cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut++
	}
	return fmt.Sprintf("[… %d bytes]\n", cut) + s[cut:]
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return truncate(s, 200)
}
