package agentrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// Process control.
const (
	// KillGrace is the wait between SIGTERM and SIGKILL on cancel.
	KillGrace = 5 * time.Second
	// StderrTail is how much of the agent's stderr is kept.
	StderrTail = 8 << 10
	// DrainGrace bounds how long the agent's output pipes may stay open
	// after it exited and everything in its process group and everything
	// carrying its run marker was killed. Only a process that left both
	// (its own session, a replaced environment) can still hold them then;
	// waiting for it would hold the turn, and the run, forever. Once the
	// grace is over and the pipe holds no unread byte, reading stops.
	DrainGrace = 2 * time.Second
	// drainCap stops reading even from a pipe that never empties (an
	// escaped process writing without pause).
	drainCap = 4 * DrainGrace
	// lineBatchBytes and lineBatchLines bound one batch of lines handed
	// from the reader to the turn's loop.
	lineBatchBytes = 256 << 10
	lineBatchLines = 1024
	// markerEnv marks every agent process with its run (the value is the
	// run id), so that what left the process group can still be found.
	markerEnv = "SYMPHONY_RUN_ID"
)

// turnSpec is one invocation of the agent CLI.
type turnSpec struct {
	argv  []string // argv[0] is the binary
	dir   string   // the workspace; the child's cwd
	env   []string
	stdin string // the prompt
	// silence fails the turn when stdout stays quiet this long.
	silence time.Duration
	// runID, when set, is the markerEnv value env carries: at the end of
	// the turn every process carrying it is killed too.
	runID string
	// since, when set, delivers a window opened earlier (before anything
	// of this turn started) to search for what the turn leaves behind;
	// without it the turn opens one just before the agent's start.
	since <-chan procscan.Window
	// started, when set, is called once the agent's start has been tried,
	// with the agent's pid (0 when the start failed).
	started func(pid int)
	// commit, when set, is called after the events of each batch of lines
	// were handed to emit: what the agent wrote in one go is stored as one
	// message (see runlog.Writer.AppendTurn). An error stops the turn as a
	// failed emit does.
	commit func() error
}

// turnOutcome is how one invocation ended.
type turnOutcome struct {
	status    bus.RunStatus // succeeded, failed, timed_out, canceled, blocked
	err       string
	sessionID string
	result    *bus.TurnResult
	// resultText is the result line's text (the CLI's final message, or
	// its error).
	resultText string
	exitCode   *int
	signal     string
	stderr     string
	parseErrs  int
	// abandoned: the output pipes were still held open by an escaped
	// process DrainGrace after the agent exited, and reading stopped.
	abandoned bool
}

// canceled carries the status and reason of a cancel into a turn.
type canceled struct {
	status bus.RunStatus
	reason string
}

// runTurn runs one agent invocation: the child in its own process group
// with cwd = spec.dir, stdout parsed line by line and every event handed to
// emit (synchronously: a slow bus slows the reader, the pipe fills, and the
// child waits — events are never dropped), stderr's tail kept. It reads
// stdout to the end and waits for the child before deciding the outcome;
// the result line decides, whatever order the exit and the last line come
// in. cancel, when it fires, stops the group (SIGTERM, SIGKILL after
// KillGrace).
func runTurn(ctx context.Context, spec turnSpec, cancel <-chan canceled, emit func(bus.TurnEvent) error) turnOutcome {
	cmd := exec.Command(spec.argv[0], spec.argv[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	cmd.Stdin = strings.NewReader(spec.stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Real pipes (not Go writers): Wait then returns when the child exits,
	// even if a background grandchild still holds an output open.
	outR, outW, err := os.Pipe()
	if err != nil {
		return turnOutcome{status: bus.RunFailed, err: "agent stdout: " + err.Error()}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return turnOutcome{status: bus.RunFailed, err: "agent stderr: " + err.Error()}
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	// Opened before the start: everything the agent starts gets a pid
	// handed out after this point, so the search for what it leaves
	// behind reads only processes created since (see procscan.Window).
	var since procscan.Window
	switch {
	case spec.runID == "":
	case spec.since != nil:
		since = <-spec.since
	default:
		since = procscan.Open()
	}
	startErr := cmd.Start()
	if spec.started != nil {
		pid := 0
		if startErr == nil {
			pid = cmd.Process.Pid
		}
		spec.started(pid)
	}
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		return turnOutcome{status: bus.RunFailed, err: fmt.Sprintf("start agent %s: %v", spec.argv[0], startErr)}
	}
	pgid := cmd.Process.Pid
	// killAll kills the agent's process group and, by its marker, whatever
	// of the run left the group (a daemon in its own session): it can only
	// be among the processes created since the agent started.
	// swept is set while the last search found nothing: once the group is
	// killed (a group member can no longer fork: the kernel refuses a fork
	// with a fatal signal pending) and no marked process is left outside
	// it, nothing can start a marked process any more, and searching again
	// would find nothing.
	swept := false
	killAll := func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if spec.runID != "" && !swept {
			n, err := since.Kill(markerEnv, spec.runID)
			swept = n == 0 && err == nil
		}
	}

	stderr := &tail{n: StderrTail}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer errR.Close()
		// An error here is the end of the stream (or the drain closing it).
		_ = drainStderr(stderr, errR)
	}()
	// Lines travel in batches: everything already read that is waiting
	// (up to lineBatchBytes), so a fast agent costs one hand-over per
	// batch, not per line, and memory stays bounded (a batch, plus at most
	// one line of MaxLineBytes). A nil line is one that was too long.
	lines := make(chan [][]byte)
	readDone := make(chan error, 1)
	go func() {
		defer outR.Close()
		lr := newLineReader(outR, MaxLineBytes)
		var batch [][]byte
		size := 0
		for {
			line, long, err := lr.next()
			if err != nil {
				if len(batch) > 0 {
					lines <- batch
				}
				// ErrClosed: the drain stopped reading a pipe an escaped
				// process held open; everything the agent wrote was read.
				if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
					err = nil
				}
				readDone <- err
				close(lines)
				return
			}
			switch {
			case long:
				batch = append(batch, nil)
			case len(line) > 0:
				// A copy: the reader reuses its buffer.
				batch = append(batch, append([]byte(nil), line...))
				size += len(line)
			}
			if len(batch) > 0 && (lr.r.Buffered() == 0 || size >= lineBatchBytes || len(batch) >= lineBatchLines) {
				lines <- batch
				batch, size = nil, 0
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var out turnOutcome
	// stop ends the turn early: SIGTERM to the group now, SIGKILL after
	// the grace period.
	var killTimer *time.Timer
	stopped := false
	stop := func(status bus.RunStatus, reason string) {
		if stopped {
			return
		}
		stopped = true
		out.status, out.err = status, reason
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		killTimer = time.AfterFunc(KillGrace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	}
	silence := time.NewTimer(spec.silence)
	defer silence.Stop()
	// drain is armed when the agent exits (see DrainGrace).
	var drain <-chan time.Time
	var drainTimer *time.Timer
	var exitedAt time.Time
	defer func() {
		if drainTimer != nil {
			drainTimer.Stop()
		}
	}()
	// Channels that, once they fired, must not be selected again (a closed
	// one would spin the loop) are set to nil.
	errDone, ctxDone := (<-chan struct{})(stderrDone), ctx.Done()
	var werr error
	childDone := false
	emitErr := error(nil)
	// handleLine parses one line and records its events (after a failed
	// record nothing more is recorded; the turn is stopped below).
	handleLine := func(line []byte) {
		if line == nil {
			out.parseErrs++
			if emitErr == nil {
				emitErr = emit(bus.TurnEvent{Kind: bus.TurnParseError, Text: fmt.Sprintf("line longer than %d bytes dropped", MaxLineBytes)})
			}
			return
		}
		evs, perr := parseClaudeLine(line)
		if perr != nil {
			out.parseErrs++
			if emitErr == nil {
				emitErr = emit(bus.TurnEvent{Kind: bus.TurnParseError, Text: bound(perr.Error())})
			}
			return
		}
		for _, ev := range evs {
			if ev.SessionID != "" {
				out.sessionID = ev.SessionID
			}
			if ev.Kind == bus.TurnOutcome {
				out.result, out.resultText = ev.Result, ev.Text
			}
			if emitErr == nil {
				emitErr = emit(ev)
			}
		}
	}
	for open, errOpen := true, true; open || errOpen || !childDone; {
		select {
		case batch, ok := <-lines:
			if !ok {
				open, lines = false, nil
				break
			}
			silence.Reset(spec.silence)
			for _, line := range batch {
				handleLine(line)
			}
			if emitErr == nil && spec.commit != nil {
				emitErr = spec.commit()
			}
			if emitErr != nil {
				// The bus refused an event: a run whose record would be
				// incomplete must not go on.
				stop(bus.RunFailed, "recording agent events failed: "+emitErr.Error())
			}
		case <-errDone:
			errOpen, errDone = false, nil
		case werr = <-exited:
			childDone, exited = true, nil
			// The agent is gone: whatever it left running, in its group or
			// out of it, goes too, which also closes any pipe a straggler
			// held open. What it already wrote stays readable.
			killAll()
			exitedAt = time.Now()
			drainTimer = time.NewTimer(DrainGrace)
			drain = drainTimer.C
		case <-drain:
			// Still open after the grace: held by a process that escaped
			// both the group and the marker. Kill whatever holds the pipes,
			// and stop reading once everything in the pipe has been read
			// (closing the read ends wakes both readers); a pipe that never
			// empties is cut at drainCap.
			_, _ = procscan.KillHolding(outR)
			_, _ = procscan.KillHolding(errR)
			if pipeEmpty(outR) || time.Since(exitedAt) >= drainCap {
				_ = outR.Close()
				_ = errR.Close()
				drain = nil
				out.abandoned = true
			} else {
				drainTimer.Reset(100 * time.Millisecond)
			}
		case <-silence.C:
			if out.result != nil || (childDone && !open) {
				// The result arrived, or the agent is gone and its output
				// read: only a straggler keeps a pipe open.
				killAll()
				continue
			}
			stop(bus.RunTimedOut, fmt.Sprintf("no output from the agent for %s (claude.turn_timeout_ms)", spec.silence))
		case c := <-cancel:
			stop(c.status, c.reason)
		case <-ctxDone:
			ctxDone = nil
			stop(bus.RunInterrupted, "symphony is shutting down")
		}
	}
	readErr := <-readDone
	if killTimer != nil {
		killTimer.Stop()
	}
	// Nothing of the run may outlive the turn.
	killAll()
	out.stderr = stderr.String()

	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			out.signal = ws.Signal().String()
		} else {
			code := ps.ExitCode()
			out.exitCode = &code
		}
	}
	if stopped {
		return out
	}
	switch {
	case out.result != nil && out.result.IsError:
		out.status = bus.RunFailed
		out.err = "the agent reported an error"
		if out.result.APIStatus != 0 {
			out.err += fmt.Sprintf(" (API status %d)", out.result.APIStatus)
		}
		if t := strings.TrimSpace(out.resultText); t != "" {
			out.err += ": " + lastLine(t)
		}
	case out.result != nil && len(out.result.PermissionDenials) > 0:
		out.status = bus.RunBlocked
		out.err = "the agent was denied permission for " + strings.Join(out.result.PermissionDenials, ", ") + "; it needs an operator"
	case out.result != nil:
		out.status = bus.RunSucceeded
	case readErr != nil:
		out.status, out.err = bus.RunFailed, "reading the agent's output: "+readErr.Error()
	case werr != nil:
		out.status, out.err = bus.RunFailed, fmt.Sprintf("the agent exited (%v) without a result", werr)
	default:
		out.status, out.err = bus.RunFailed, "the agent exited without a result"
	}
	if out.status == bus.RunFailed && out.stderr != "" {
		out.err += ": " + lastLine(out.stderr)
	}
	return out
}

// Buffer sizes of drainStderr.
const (
	stderrBufSmall = 2 << 10
	stderrBufLarge = 32 << 10
)

// drainStderr copies r into t until r ends. Most agents write little or
// nothing to stderr, and every live turn holds its buffer for as long as it
// runs (io.Copy's 32 KiB each, 1.6 MB with 50 agents), so the buffer starts
// small and grows only once a read fills it: a flood is read in large
// chunks.
func drainStderr(t *tail, r io.Reader) error {
	buf := make([]byte, stderrBufSmall)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_, _ = t.Write(buf[:n])
			if n == len(buf) && len(buf) < stderrBufLarge {
				buf = make([]byte, stderrBufLarge)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// pipeEmpty reports whether the read end f of a pipe holds no unread byte
// (FIONREAD). Anything it cannot tell counts as empty: the caller only
// asks once the writer it cares about is dead.
func pipeEmpty(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	var n int32 // FIONREAD writes a C int
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return true
	}
	return n == 0
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
