// Package logsink is the writer between Symphony's logs and the file
// descriptor they go to. Logging must never stop orchestration (the
// reference specification, section 13.2): a log output that is closed
// (`symphony run | head -2`), broken or full must cost log lines, not
// agents. A Sink therefore never blocks its caller and never fails:
//
//   - Write copies the bytes into a queue and returns at once. One
//     goroutine of the Sink writes the queue to the destination, in order.
//   - The queue holds at most Limit bytes. When the destination does not
//     keep up (a pipe nobody reads: write(2) blocks once its 64 KiB are
//     full), further writes are dropped and counted until the queue has
//     room; the next write that gets through is preceded by a line saying
//     how many were dropped.
//   - A write the destination refuses (EPIPE, EIO, ENOSPC) is counted and
//     dropped. (For EPIPE on fd 1 or 2 not to kill the process, the caller
//     must have asked for SIGPIPE with signal.Notify; see cmd/symphony.)
//
// Both counts are exported as symphony_log_write_errors_total.
//
// A write(2) on a blocking descriptor cannot be interrupted: Close waits
// for the queue to be written for at most its timeout, then returns; a
// goroutine blocked on a destination nobody reads stays blocked until the
// process exits, which follows Close.
package logsink

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLimit is the queue bound: at about 200 bytes a line, 5,000 log
// lines, far more than a burst of Symphony's logs, and a bounded cost
// (1 MiB) when nobody reads.
const DefaultLimit = 1 << 20

// Sink is a non-blocking, never-failing writer to a log destination.
type Sink struct {
	dst   io.Writer
	limit int

	mu      sync.Mutex
	queue   [][]byte
	queued  int    // bytes in queue
	lost    uint64 // writes dropped since the last note
	closing bool
	wake    chan struct{} // one pending wake-up for the writer goroutine
	done    chan struct{} // closed when the writer goroutine ends

	failed  atomic.Uint64
	dropped atomic.Uint64
}

// New starts a Sink writing to dst with a queue of at most limit bytes
// (DefaultLimit when limit <= 0). Close stops it.
func New(dst io.Writer, limit int) *Sink {
	if limit <= 0 {
		limit = DefaultLimit
	}
	s := &Sink{dst: dst, limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.loop()
	return s
}

// Write queues a copy of p. It never blocks on the destination and
// always reports success: a log line that cannot be written is counted,
// not returned as an error to code that cannot do anything about it.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closing || s.queued+len(p) > s.limit {
		s.lost++
		s.mu.Unlock()
		s.dropped.Add(1)
		return len(p), nil
	}
	s.queue = append(s.queue, append([]byte(nil), p...))
	s.queued += len(p)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Failed is how many writes the destination refused.
func (s *Sink) Failed() uint64 { return s.failed.Load() }

// Dropped is how many writes were dropped because the queue was full (or
// the Sink closed).
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// loop writes the queue to the destination until Close, then what is
// left.
func (s *Sink) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch, lost, closing := s.queue, s.lost, s.closing
		s.queue, s.lost = nil, 0
		s.mu.Unlock()
		if lost > 0 {
			s.put(fmt.Appendf(nil, "symphony: %d log writes dropped: the log output was not read fast enough\n", lost))
		}
		for _, b := range batch {
			s.put(b)
			s.mu.Lock()
			s.queued -= len(b)
			s.mu.Unlock()
		}
		if closing && len(batch) == 0 && lost == 0 {
			return
		}
		if len(batch) == 0 {
			<-s.wake
		}
	}
}

func (s *Sink) put(b []byte) {
	if _, err := s.dst.Write(b); err != nil {
		s.failed.Add(1)
	}
}

// Close stops taking writes, waits up to timeout for the queue to reach
// the destination and reports whether it did. It is safe to call more
// than once.
func (s *Sink) Close(timeout time.Duration) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
		return nil
	case <-t.C:
		return fmt.Errorf("log output: not written within %s (nobody reads it)", timeout)
	}
}
