// Package shellrun runs an operator's shell script the way Symphony runs
// every command it does not own (workspace hooks, notify.command): with
// bash -lc, in a process group of its own that is killed whole at the
// timeout and again once the shell has exited (so no background job
// outlives it), with its combined output kept bounded (its first and last
// halves), and with an environment built by the caller from the parent's
// minus what must not leak. Both the workspace and the notifier components
// build on it; a component never imports another.
package shellrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// MaxOutput is how much of a script's combined output is kept: its first
// and its last halves.
const MaxOutput = 64 << 10

// The kept output is split between its start (what the script was doing)
// and its end (why it failed).
const (
	keepHead = MaxOutput / 2
	keepTail = MaxOutput - keepHead
)

// Spec is one script to run.
type Spec struct {
	// Script is given to bash -lc.
	Script string
	// Dir is the working directory.
	Dir string
	// Env is the whole environment (see Env to build it).
	Env []string
	// Stdin is the script's standard input; nil gives it none (/dev/null).
	Stdin []byte
	// Timeout bounds the run; the process group is killed when it passes.
	Timeout time.Duration
}

// Error is a script that could not start, exited non-zero or timed out.
type Error struct {
	// ExitCode is the shell's exit status; -1 when it did not exit on its
	// own (spawn failure, timeout, signal).
	ExitCode int
	TimedOut bool
	Timeout  time.Duration
	// Output is the kept output (see MaxOutput).
	Output string
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.TimedOut:
		return fmt.Sprintf("timed out after %s (process group killed)", e.Timeout)
	case e.ExitCode > 0:
		return fmt.Sprintf("exited with status %d: %s", e.ExitCode, LastLine(e.Output))
	}
	return fmt.Sprintf("failed: %v", e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs spec.Script with bash -lc in spec.Dir, in its own process
// group, and kills the whole group at the timeout (and after the shell
// exits, so a background job cannot outlive it). It returns the kept
// output and how long the script ran; a failure is an *Error.
func Run(ctx context.Context, spec Spec) (out string, dur time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-lc", spec.Script)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	var buf Capped
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output pipes held open by a killed group's stragglers must not hang
	// Wait (nor a script that never reads a large stdin).
	cmd.WaitDelay = time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.E2BIG) {
			err = TooBig(spec.Script, spec.Env, err)
		}
		if spec.Dir != "" {
			// exec names the shell when the directory is what is missing.
			if _, serr := os.Stat(spec.Dir); serr != nil {
				err = fmt.Errorf("working directory: %w", serr)
			}
		}
		return "", 0, &Error{ExitCode: -1, Err: err}
	}
	werr := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(werr, exec.ErrWaitDelay) && cmd.ProcessState != nil && ctx.Err() == nil {
		// The shell exited but a background job it left held the output
		// open (or the input unread); the job is killed above, and the
		// shell's status stands.
		werr = nil
		if !cmd.ProcessState.Success() {
			werr = &exec.ExitError{ProcessState: cmd.ProcessState}
		}
	}
	dur = time.Since(start)
	out = buf.String()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, dur, &Error{TimedOut: true, Timeout: spec.Timeout, Output: out, ExitCode: -1, Err: ctx.Err()}
	case werr != nil:
		code := -1
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitCode()
		}
		return out, dur, &Error{ExitCode: code, Output: out, Err: werr}
	}
	return out, dur, nil
}

// Env is a script's environment: parent minus the variables drop
// refuses (by name or by value: see internal/secretenv) and minus those
// fixed sets, plus fixed. Values cannot hold NUL: it is removed from
// fixed values rather than failing the exec.
func Env(parent []string, drop func(name, value string) bool, fixed map[string]string) []string {
	env := make([]string, 0, len(parent)+len(fixed))
	for _, kv := range parent {
		name, value, _ := strings.Cut(kv, "=")
		if _, ok := fixed[name]; ok {
			continue
		}
		if drop != nil && drop(name, value) {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range fixed {
		env = append(env, k+"="+strings.ReplaceAll(v, "\x00", ""))
	}
	return env
}

// Cut returns s if it fits limit bytes, else its longest prefix that ends
// on a character boundary and leaves room for the marker, plus the marker
// (marker(n) says n bytes are missing; its length may grow with n's digits
// only, up to len(s)'s).
func Cut(s string, limit int, marker func(missing int) string) string {
	if len(s) <= limit {
		return s
	}
	// The marker's number is at most len(s): room for that many digits.
	keep := max(limit-len(marker(len(s))), 0)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker(len(s)-keep)
}

// Capped keeps the first keepHead and the last keepTail bytes written to
// it, so memory stays bounded however much a script prints and the error
// a script ends with is never the part dropped.
type Capped struct {
	mu    sync.Mutex
	head  []byte
	tail  []byte // ring of the latest bytes after head, full once len is keepTail
	next  int    // where the ring's oldest byte is (and the next write goes) once full
	after int64  // bytes written after head, kept or not
}

func (c *Capped) Write(p []byte) (int, error) {
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
func (c *Capped) String() string {
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

// TooBig explains an exec refused with E2BIG. The variables Symphony sets
// are bounded, so what is too large is the script or Symphony's own
// environment, which the operator controls.
func TooBig(script string, env []string, err error) error {
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

// Truncate shortens output for logs and events, keeping the end (where
// errors are).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := len(s) - n
	for cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut++
	}
	return fmt.Sprintf("[… %d bytes]\n", cut) + s[cut:]
}

// LastLine is the last non-empty line of s, at most 200 bytes.
func LastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return Truncate(s, 200)
}
