package frontmatter

import (
	"errors"
	"testing"
)

func TestSplit(t *testing.T) {
	cases := []struct {
		in, front, body string
		line            int
		err             error
	}{
		{"no front matter", "", "no front matter", 1, nil},
		{"---\na: 1\n---\nbody", "a: 1\n", "body", 4, nil},
		{"---\n---\n", "", "", 3, nil},
		{"---\na: 1\n---", "a: 1\n", "", 4, nil},
		{"---  \r\na: 1\r\n---\r\nb", "a: 1\r\n", "b", 4, nil},
		{"\xef\xbb\xbf---\na: 1\n---\nb", "a: 1\n", "b", 4, nil},
		{"---\na: 1\n", "", "", 0, ErrUnclosed},
		{"---", "", "", 0, ErrUnclosed},
		{"x\n---\na\n---\n", "", "x\n---\na\n---\n", 1, nil},
	}
	for _, c := range cases {
		front, body, line, err := Split([]byte(c.in))
		if !errors.Is(err, c.err) || string(front) != c.front || string(body) != c.body || line != c.line {
			t.Errorf("Split(%q) = %q, %q, %d, %v", c.in, front, body, line, err)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("---\na: 1\n---\nbody"))
	f.Fuzz(func(t *testing.T, data []byte) {
		front, body, line, err := Split(data)
		if err != nil {
			return
		}
		if len(front)+len(body) > len(data) || line < 1 {
			t.Fatalf("inconsistent split: %d+%d of %d, line %d", len(front), len(body), len(data), line)
		}
	})
}
