package workspace

import (
	"context"
	"errors"
	"fmt"
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
		return "hook_timed_out"
	}
	return "hook_failed"
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

// hookEnv is the hook's environment: the parent's, minus the tracker
// secret's variable and LINEAR_API_KEY unless inherit, plus the fixed issue
// variables. Issue
// data reaches a hook only here, never in the script text.
func hookEnv(parent []string, secretVar string, inherit bool, issue bus.Issue, dir string) []string {
	fixed := map[string]string{
		"ISSUE_ID":           issue.ID,
		"ISSUE_IDENTIFIER":   issue.Identifier,
		"ISSUE_TITLE":        issue.Title,
		"ISSUE_STATE":        issue.State,
		"ISSUE_URL":          deref(issue.URL),
		"ISSUE_LABELS":       strings.Join(issue.Labels, ","),
		"SYMPHONY_WORKSPACE": dir,
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
		// Environment values cannot hold NUL; drop it rather than fail.
		env = append(env, k+"="+strings.ReplaceAll(v, "\x00", ""))
	}
	return env
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
