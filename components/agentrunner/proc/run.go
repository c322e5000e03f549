package proc

import (
	"context"
	"syscall"
	"time"

	"github.com/symphony-oss/symphony/internal/procscan"
)

// Run runs one child: in its own process group, stdout read line by line
// and every batch handed to lines (synchronously: a slow handler slows the
// reader, the pipe fills, and the child waits — nothing is dropped),
// stderr's tail kept. It reads stdout to the end and waits for the child
// before returning, whatever order the exit and the last line come in; then
// nothing of the child (its group, its marker) is left running. A value on
// cancel, the end of ctx, a handler error or a silence stops the group
// (SIGTERM, SIGKILL after KillGrace).
func Run[C any](ctx context.Context, s Spec, cancel <-chan C, lines Lines) Result[C] {
	c, err := start(s)
	if err != nil {
		return Result[C]{StartErr: err}
	}
	sv := &supervisor[C]{c: c, spec: s, lines: lines, stderr: &tail{n: StderrTail}}
	errDone := make(chan struct{})
	go c.readStderr(sv.stderr, errDone)
	batches := make(chan [][]byte)
	readDone := make(chan error, 1)
	go c.readLines(s.MaxLine, batches, readDone)
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()

	sv.loop(ctx, batches, errDone, exited, cancel)

	sv.out.ReadErr = <-readDone
	if sv.killTimer != nil {
		sv.killTimer.Stop()
	}
	// Nothing of the child may outlive it.
	c.killAll()
	sv.out.Stderr = sv.stderr.String()
	c.exit(&sv.out.ExitCode, &sv.out.Signal)
	return sv.out
}

// supervisor is the state of Run's loop.
type supervisor[C any] struct {
	c      *child
	spec   Spec
	lines  Lines
	stderr *tail
	out    Result[C]
	// final: lines reported the child's last word.
	final bool
	// killTimer sends SIGKILL KillGrace after a stop's SIGTERM.
	killTimer *time.Timer
	silence   *time.Timer
	// drain is armed when the child exits (see DrainGrace).
	drain      <-chan time.Time
	drainTimer *time.Timer
	exitedAt   time.Time
	childDone  bool
	open       bool // stdout not read to its end yet
}

// loop runs until stdout and stderr are read to their end (or abandoned)
// and the child was waited for. Channels that, once they fired, must not
// be selected again (a closed one would spin the loop) are set to nil.
func (sv *supervisor[C]) loop(ctx context.Context, batches <-chan [][]byte, errDone <-chan struct{}, exited <-chan error, cancel <-chan C) {
	sv.silence = time.NewTimer(sv.spec.Silence)
	if sv.spec.Silence <= 0 {
		// No silence limit: the caller times its own exchanges (a
		// long-lived child between requests is quiet on purpose).
		sv.silence.Stop()
	}
	defer sv.silence.Stop()
	defer func() {
		if sv.drainTimer != nil {
			sv.drainTimer.Stop()
		}
	}()
	ctxDone := ctx.Done()
	sv.open = true
	for errOpen := true; sv.open || errOpen || !sv.childDone; {
		select {
		case batch, ok := <-batches:
			if !ok {
				sv.open, batches = false, nil
				break
			}
			sv.batch(batch)
		case <-errDone:
			errOpen, errDone = false, nil
		case werr := <-exited:
			exited = nil
			sv.exited(werr)
		case <-sv.drain:
			sv.drained()
		case <-sv.silence.C:
			if sv.final || (sv.childDone && !sv.open) {
				// The last word arrived, or the child is gone and its
				// output read: only a straggler keeps a pipe open.
				sv.c.killAll()
				continue
			}
			sv.stop(StoppedBySilence)
		case v := <-cancel:
			if sv.out.Stop == NotStopped {
				sv.out.Cancel = v
			}
			sv.stop(StoppedByCancel)
		case <-ctxDone:
			ctxDone = nil
			sv.stop(StoppedByShutdown)
		}
	}
}

// batch hands a batch to the handler; its error stops the child.
func (sv *supervisor[C]) batch(b [][]byte) {
	if sv.spec.Silence > 0 {
		sv.silence.Reset(sv.spec.Silence)
	}
	final, err := sv.lines(b)
	sv.final = sv.final || final
	if err != nil {
		if sv.out.Stop == NotStopped {
			sv.out.LinesErr = err
		}
		sv.stop(StoppedByLines)
	}
}

// exited handles the child's exit. Whatever it left running, in its group
// or out of it, goes too, which also closes any pipe a straggler held
// open. What it already wrote stays readable.
func (sv *supervisor[C]) exited(werr error) {
	sv.childDone = true
	sv.out.WaitErr = werr
	sv.c.killAll()
	sv.exitedAt = time.Now()
	sv.drainTimer = time.NewTimer(DrainGrace)
	sv.drain = sv.drainTimer.C
}

// drained handles the drain grace running out with a pipe still open:
// held by a process that escaped both the group and the marker. It kills
// whatever holds the pipes, and stops reading once everything in the pipe
// has been read (closing the read ends wakes both readers); a pipe that
// never empties is cut at drainCap.
func (sv *supervisor[C]) drained() {
	_, _ = procscan.KillHolding(sv.c.outR)
	_, _ = procscan.KillHolding(sv.c.errR)
	if pipeEmpty(sv.c.outR) || time.Since(sv.exitedAt) >= drainCap {
		_ = sv.c.outR.Close()
		_ = sv.c.errR.Close()
		sv.drain = nil
		sv.out.Abandoned = true
		return
	}
	sv.drainTimer.Reset(100 * time.Millisecond)
}

// stop ends the child early: SIGTERM to the group now, SIGKILL after the
// grace period. The first reason wins.
func (sv *supervisor[C]) stop(why StopKind) {
	if sv.out.Stop != NotStopped {
		return
	}
	sv.out.Stop = why
	pgid := sv.c.pgid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	sv.killTimer = time.AfterFunc(KillGrace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
}
