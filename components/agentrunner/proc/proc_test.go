package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// agentMaxLine is the agent runner's line cap (agentrunner.MaxLineBytes).
const agentMaxLine = 10 << 20

func TestLineReaderBounds(t *testing.T) {
	in := "a\n" + strings.Repeat("x", 1000) + "\nb\r\nc"
	lr := NewLineReader(strings.NewReader(in), 100)
	var got []string
	for {
		line, tooLong, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if tooLong {
			got = append(got, "<too long>")
			continue
		}
		got = append(got, string(line))
	}
	if strings.Join(got, "|") != "a|<too long>|b|c" {
		t.Errorf("lines %q", got)
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	tl := &tail{n: 8}
	for range 1000 {
		tl.Write([]byte("0123456789"))
	}
	if s := tl.String(); !strings.HasSuffix(s, "23456789") || len(tl.buf) != 8 {
		t.Errorf("tail %q", s)
	}
}

// TestDrainStderrKeepsTheTail: the stderr reader starts with a small buffer
// and grows it for a flood; either way the tail holds the last bytes.
func TestDrainStderrKeepsTheTail(t *testing.T) {
	for _, size := range []int{0, 10, stderrBufSmall, stderrBufSmall + 1, 3 * StderrTail} {
		in := make([]byte, size)
		for i := range in {
			in[i] = byte('a' + i%26)
		}
		tl := &tail{n: StderrTail}
		if err := drainStderr(tl, bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		want := in[max(0, size-StderrTail):]
		if !bytes.Equal(tl.buf, want) || tl.seen != int64(size) {
			t.Errorf("%d bytes: kept %d bytes (seen %d), want the last %d", size, len(tl.buf), tl.seen, len(want))
		}
	}
}

// TestLineReaderGrowsForAFlood: the reader starts with a small buffer and
// takes the large one when a read fills it, losing nothing on the way; an
// agent writing a line at a time keeps the small one.
func TestLineReaderGrowsForAFlood(t *testing.T) {
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "line %d %s\n", i, strings.Repeat("x", i%300))
	}
	lr := NewLineReader(strings.NewReader(in.String()), agentMaxLine)
	n := 0
	for {
		line, tooLong, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || tooLong {
			t.Fatalf("line %d: %v %v", n, tooLong, err)
		}
		if want := fmt.Sprintf("line %d %s", n, strings.Repeat("x", n%300)); string(line) != want {
			t.Fatalf("line %d = %.40q, want %.40q", n, line, want)
		}
		n++
	}
	if n != 500 || lr.r.Size() != lineReaderLarge {
		t.Errorf("%d lines, buffer %d bytes; want 500 and the large buffer", n, lr.r.Size())
	}

	// A line at a time (each read returns one short line): small buffer.
	pr, pw := io.Pipe()
	go func() {
		for i := range 50 {
			fmt.Fprintf(pw, "event %d\n", i)
		}
		pw.Close()
	}()
	lr = NewLineReader(pr, agentMaxLine)
	for n = 0; ; n++ {
		if _, _, err := lr.Next(); err != nil {
			break
		}
	}
	if n != 50 || lr.r.Size() != lineReaderSmall {
		t.Errorf("%d lines, buffer %d bytes; want 50 and the small buffer", n, lr.r.Size())
	}
}

// TestPipeEmpty: the drain's guard tells a pipe with unread bytes from an
// empty one.
func TestPipeEmpty(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if !pipeEmpty(r) {
		t.Error("a new pipe is not empty")
	}
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if pipeEmpty(r) {
		t.Error("a pipe holding 3 bytes is empty")
	}
	if _, err := io.ReadFull(r, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if !pipeEmpty(r) {
		t.Error("a pipe read to its end is not empty")
	}
	r.Close()
	if !pipeEmpty(r) {
		t.Error("a closed pipe must count as empty")
	}
}
