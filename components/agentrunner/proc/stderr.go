package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// tail keeps the last n bytes written to it (stderr).
type tail struct {
	n    int
	buf  []byte
	seen int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.seen += int64(len(p))
	if len(p) >= t.n {
		t.buf = append(t.buf[:0], p[len(p)-t.n:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.n; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	if t.seen > int64(len(t.buf)) {
		return fmt.Sprintf("[… %d bytes]", t.seen-int64(len(t.buf))) + string(t.buf)
	}
	return string(t.buf)
}

// Buffer sizes of drainStderr.
const (
	stderrBufSmall = 2 << 10
	stderrBufLarge = 32 << 10
)

// drainStderr copies r into t until r ends. Most agents write little or
// nothing to stderr, and every live child holds its buffer for as long as
// it runs (io.Copy's 32 KiB each, 1.6 MB with 50 agents), so the buffer
// starts small and grows only once a read fills it: a flood is read in
// large chunks.
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
