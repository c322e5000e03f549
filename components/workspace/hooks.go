package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Hook output limits.
const (
	// MaxHookOutput is how much of a hook's combined output is kept.
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

// capped keeps the first MaxHookOutput bytes written to it.
type capped struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	lost int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := MaxHookOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
		c.lost += max(0, len(p)-room)
	} else {
		c.lost += len(p)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost > 0 {
		return c.buf.String() + fmt.Sprintf("\n[… %d more bytes not kept]", c.lost)
	}
	return c.buf.String()
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
