package proc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// LineReader yields the lines of r, each at most max bytes; longer lines
// are consumed and reported as too long without being kept.
type LineReader struct {
	r   *bufio.Reader
	src *readSize
	max int
	buf []byte
}

// A child's stdout is read with a small buffer until a read fills it (the
// child wrote faster than it is read: a flood, or a long line), and with a
// large one from then on, so that a flood is read a pipe's worth (64 KiB)
// at a time. A child writing an event at a time never needs more: with 50
// such agents the large buffers were 3 MB of a heap of 12.
const (
	lineReaderSmall = 4 << 10
	lineReaderLarge = 64 << 10
)

// readSize remembers whether the last read filled what was asked of it.
type readSize struct {
	r    io.Reader
	full bool
}

func (s *readSize) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.full = n == len(p) && n > 0
	return n, err
}

// NewLineReader reads the lines of r, each at most max bytes.
func NewLineReader(r io.Reader, max int) *LineReader {
	src := &readSize{r: r}
	return &LineReader{r: bufio.NewReaderSize(src, lineReaderSmall), src: src, max: max}
}

// Next returns the next line (without the newline). tooLong reports a line
// over the limit (line is then nil). err is io.EOF at the end. The line is
// valid until the next call.
func (lr *LineReader) Next() (line []byte, tooLong bool, err error) {
	if lr.src.full && lr.r.Size() < lineReaderLarge {
		// What the small buffer still holds is read first; nothing else
		// points into it (a line returned is a copy, lr.buf).
		rest, _ := lr.r.Peek(lr.r.Buffered())
		lr.r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), lr.src), lineReaderLarge)
	}
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max+1 {
				tooLong = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && len(lr.buf) == 0 && !tooLong:
			return nil, false, err
		case tooLong:
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, true, err
			}
			return nil, true, nil
		}
		return bytes.TrimRight(lr.buf, "\r\n"), false, nil
	}
}
