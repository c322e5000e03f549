package logsink

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestWritesInOrder: with a destination that keeps up, everything is
// written, in order, and nothing is counted.
func TestWritesInOrder(t *testing.T) {
	var buf lockedBuffer
	s := New(&buf, 0)
	var want strings.Builder
	for i := range 1000 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if n, err := s.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := s.Close(time.Minute); err != nil {
		t.Fatal(err)
	}
	if buf.String() != want.String() || s.Failed() != 0 || s.Dropped() != 0 {
		t.Fatalf("%d bytes written, failed %d, dropped %d", len(buf.String()), s.Failed(), s.Dropped())
	}
}

// TestClosedPipeIsCounted: a pipe whose reader is gone refuses every
// write (EPIPE); the writer does not see it, and each one is counted.
func TestClosedPipeIsCounted(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	s := New(w, 0)
	for range 10 {
		if n, err := s.Write([]byte("a log line\n")); n != 11 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := s.Close(time.Minute); err != nil {
		t.Fatal(err)
	}
	if s.Failed() != 10 {
		t.Fatalf("failed %d, want 10", s.Failed())
	}
	// The write really was refused with EPIPE (this is not fd 1 or 2, so
	// Go reports it instead of raising SIGPIPE).
	if _, err := w.Write([]byte("x")); !errorsIs(err, syscall.EPIPE) {
		t.Fatalf("the destination does not fail as a closed pipe: %v", err)
	}
}

func errorsIs(err error, target syscall.Errno) bool {
	for err != nil {
		if e, ok := err.(syscall.Errno); ok && e == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// blocked is a destination nobody reads: every Write waits until open is
// closed.
type blocked struct {
	open chan struct{}
	buf  lockedBuffer
}

func (b *blocked) Write(p []byte) (int, error) {
	<-b.open
	return b.buf.Write(p)
}

// TestFullOutputNeverBlocks: with a destination that blocks, writes still
// return at once; past the queue's bound they are dropped and counted;
// Close gives up after its timeout; when the destination moves again the
// queued lines come out, then a note of how many were dropped.
func TestFullOutputNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dst := &blocked{open: make(chan struct{})}
		s := New(dst, 1000)
		line := []byte(strings.Repeat("x", 99) + "\n")
		for range 50 {
			if n, err := s.Write(line); n != 100 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		synctest.Wait()
		// One line is in the blocked write, ten fit the queue.
		if d := s.Dropped(); d < 38 || d > 40 {
			t.Fatalf("dropped %d, want about 39", d)
		}
		start := time.Now()
		if err := s.Close(5 * time.Second); err == nil || time.Since(start) != 5*time.Second {
			t.Fatalf("Close = %v after %v, want an error after 5s", err, time.Since(start))
		}
		close(dst.open)
		<-s.done
		out := dst.buf.String()
		if n := strings.Count(out, string(line)); n != int(50-s.Dropped()) {
			t.Errorf("%d lines written, want %d", n, 50-s.Dropped())
		}
		if !strings.Contains(out, "log writes dropped") {
			t.Errorf("no note of the dropped lines:\n%s", out)
		}
	})
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
