package logsink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatingFileKeepsItsBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "service.log")
	r, err := OpenRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two lines a file
	for i := 0; i < 9; i++ {
		if _, err := r.Write([]byte(line)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Size() > 100 || st.Size() == 0 {
			t.Errorf("%s: %d bytes, want 1..100", name, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third rotated file exists (keep is 2): %v", err)
	}
	cur, _ := os.ReadFile(path)
	if string(cur) != line {
		t.Errorf("current file holds %q, want the last line only", cur)
	}
}
