package proc

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/symphony-oss/symphony/internal/procscan"
)

// Process control.
const (
	// KillGrace is the wait between SIGTERM and SIGKILL on a stop.
	KillGrace = 5 * time.Second
	// StderrTail is how much of the child's stderr is kept.
	StderrTail = 8 << 10
	// DrainGrace bounds how long the child's output pipes may stay open
	// after it exited and everything in its process group and everything
	// carrying its marker was killed. Only a process that left both
	// (its own session, a replaced environment) can still hold them then;
	// waiting for it would hold the caller forever. Once the grace is over
	// and the pipe holds no unread byte, reading stops.
	DrainGrace = 2 * time.Second
	// drainCap stops reading even from a pipe that never empties (an
	// escaped process writing without pause).
	drainCap = 4 * DrainGrace
	// lineBatchBytes and lineBatchLines bound one batch of lines handed
	// from the reader to the supervising loop.
	lineBatchBytes = 256 << 10
	lineBatchLines = 1024
)

// Spec is one child process to run.
type Spec struct {
	Argv []string // Argv[0] is the binary
	Dir  string   // the child's working directory
	Env  []string
	// Stdin is the child's stdin. A long-lived child that is written to
	// while it runs gets the read end of an *os.File pipe: exec then
	// starts no copying goroutine that Wait would wait for.
	Stdin io.Reader
	// Silence stops the child when its stdout stays quiet this long
	// (before Lines reported its last word); zero or less: never.
	Silence time.Duration
	// MaxLine bounds one line of stdout; a longer one reaches Lines as
	// nil, without being held in memory.
	MaxLine int
	// MarkerName and MarkerValue, when set, are a variable every process
	// of the child carries in its environment (Env must hold it): when the
	// child exits and at the end, every process carrying it is killed too,
	// whatever group or session it moved to.
	MarkerName, MarkerValue string
	// Since, when set, delivers a window opened earlier (before anything
	// of this child started) to search for what it leaves behind; without
	// it one is opened just before the start.
	Since <-chan procscan.Window
	// Started, when set, is called once the start has been tried, with
	// the child's pid (0 when the start failed).
	Started func(pid int)
}

// Lines handles one batch of stdout lines, in order (a nil line was
// longer than Spec.MaxLine). It returns final once the child has said its
// last word: from then on a silence only kills what the child left
// running. An error stops the child (a caller that cannot keep what it
// reads must not let it go on).
type Lines func(batch [][]byte) (final bool, err error)

// StopKind is why the supervisor ended the child early.
type StopKind int

// Why a child was stopped.
const (
	NotStopped StopKind = iota
	// StoppedByLines: the Lines handler returned an error.
	StoppedByLines
	// StoppedBySilence: no line for Spec.Silence.
	StoppedBySilence
	// StoppedByCancel: a value arrived on the cancel channel.
	StoppedByCancel
	// StoppedByShutdown: the context ended.
	StoppedByShutdown
)

// StartError is a child that never ran: a pipe could not be made
// (Stage "stdout" or "stderr") or the exec failed (Stage "start").
type StartError struct {
	Stage string
	Err   error
}

func (e *StartError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Result is how a child ended. C is the caller's cancel value.
type Result[C any] struct {
	// StartErr (a *StartError) is set when the child never started;
	// nothing else is then.
	StartErr error
	// Stop is why the child was stopped early, if it was: the first
	// reason wins.
	Stop StopKind
	// Cancel is the value that stopped it (StoppedByCancel).
	Cancel C
	// LinesErr is the handler's error (StoppedByLines).
	LinesErr error
	// ReadErr is a failure reading stdout (its end is not one).
	ReadErr error
	// WaitErr is what exec.Cmd.Wait returned (an exit status).
	WaitErr error
	// ExitCode is set when the child exited; Signal names the signal that
	// killed it otherwise.
	ExitCode *int
	Signal   string
	// Stderr is the tail of stderr (StderrTail bytes at most, with a
	// count of what was cut).
	Stderr string
	// Abandoned: the output pipes were still held open by an escaped
	// process DrainGrace after the child exited, and reading stopped.
	Abandoned bool
}

// child is a started process with its pipes.
type child struct {
	cmd        *exec.Cmd
	outR, errR *os.File
	pgid       int
	since      procscan.Window
	marker     [2]string
	// swept is set while the last search found nothing: once the group is
	// killed (a group member can no longer fork: the kernel refuses a fork
	// with a fatal signal pending) and no marked process is left outside
	// it, nothing can start a marked process any more, and searching again
	// would find nothing.
	swept bool
}

// start starts the child in its own process group with cwd = s.Dir.
func start(s Spec) (*child, error) {
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	cmd.Stdin = s.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Real pipes (not Go writers): Wait then returns when the child exits,
	// even if a background grandchild still holds an output open.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, &StartError{"stdout", err}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, &StartError{"stderr", err}
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	c := &child{cmd: cmd, outR: outR, errR: errR, marker: [2]string{s.MarkerName, s.MarkerValue}}
	// Opened before the start: everything the child starts gets a pid
	// handed out after this point, so the search for what it leaves
	// behind reads only processes created since (see procscan.Window).
	switch {
	case s.MarkerValue == "":
	case s.Since != nil:
		c.since = <-s.Since
	default:
		c.since = procscan.Open()
	}
	startErr := cmd.Start()
	if s.Started != nil {
		pid := 0
		if startErr == nil {
			pid = cmd.Process.Pid
		}
		s.Started(pid)
	}
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		return nil, &StartError{"start", startErr}
	}
	c.pgid = cmd.Process.Pid
	return c, nil
}

// killAll kills the child's process group and, by its marker, whatever of
// it left the group (a daemon in its own session): it can only be among
// the processes created since the child started.
func (c *child) killAll() {
	_ = syscall.Kill(-c.pgid, syscall.SIGKILL)
	if c.marker[1] != "" && !c.swept {
		n, err := c.since.Kill(c.marker[0], c.marker[1])
		c.swept = n == 0 && err == nil
	}
}

// exit fills in how the process ended.
func (c *child) exit(code **int, signal *string) {
	ps := c.cmd.ProcessState
	if ps == nil {
		return
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		*signal = ws.Signal().String()
		return
	}
	n := ps.ExitCode()
	*code = &n
}

// readStderr keeps the tail of stderr until it ends; done is closed then.
func (c *child) readStderr(t *tail, done chan<- struct{}) {
	defer close(done)
	defer c.errR.Close()
	// An error here is the end of the stream (or the drain closing it).
	_ = drainStderr(t, c.errR)
}

// readLines reads stdout in batches: everything already read that is
// waiting (up to lineBatchBytes), so a fast child costs one hand-over per
// batch, not per line, and memory stays bounded (a batch, plus at most one
// line of max). A nil line is one that was too long. The read's error (nil
// at the end of the stream) goes to done once lines is closed.
func (c *child) readLines(max int, lines chan<- [][]byte, done chan<- error) {
	defer c.outR.Close()
	lr := NewLineReader(c.outR, max)
	var batch [][]byte
	size := 0
	for {
		line, long, err := lr.Next()
		if err != nil {
			if len(batch) > 0 {
				lines <- batch
			}
			// ErrClosed: the drain stopped reading a pipe an escaped
			// process held open; everything the child wrote was read.
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				err = nil
			}
			done <- err
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
}
