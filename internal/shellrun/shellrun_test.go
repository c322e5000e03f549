package shellrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCappedKeepsHeadAndTail: however the output arrives, what is kept is
// exactly its start and its end, with the count of what is between.
func TestCappedKeepsHeadAndTail(t *testing.T) {
	var all strings.Builder
	for i := 0; all.Len() < 3*MaxOutput; i++ {
		fmt.Fprintf(&all, "line %d\n", i)
	}
	full := all.String()
	for _, chunk := range []int{1, 7, 4096, keepTail - 1, keepTail, keepTail + 1, len(full)} {
		var c Capped
		for rest := full; len(rest) > 0; {
			k := min(chunk, len(rest))
			if n, err := c.Write([]byte(rest[:k])); n != k || err != nil {
				t.Fatalf("write: %d %v", n, err)
			}
			rest = rest[k:]
		}
		want := fmt.Sprintf("%s\n[… %d bytes not kept]\n%s", full[:keepHead], len(full)-MaxOutput, full[len(full)-keepTail:])
		if got := c.String(); got != want {
			t.Errorf("chunks of %d: kept %d bytes, not the head and tail of the output", chunk, len(got))
		}
	}
	var short Capped
	_, _ = short.Write([]byte("small\n"))
	if got := short.String(); got != "small\n" {
		t.Errorf("short output = %q", got)
	}
}

// TestStdinAndEnv: the script reads its standard input and gets exactly
// the environment given, the dropped variables gone.
func TestStdinAndEnv(t *testing.T) {
	env := Env([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "SECRET=s", "KEEP=k", "FIXED=old"},
		func(name, _ string) bool { return name == "SECRET" }, map[string]string{"FIXED": "new\x00"})
	out, _, err := Run(t.Context(), Spec{Script: `cat; echo "|$SECRET|$KEEP|$FIXED|"`, Dir: t.TempDir(), Env: env, Stdin: []byte(`{"id":"x"}`), Timeout: 30 * time.Second})
	if err != nil || out != "{\"id\":\"x\"}||k|new|\n" {
		t.Errorf("out = %q, err = %v", out, err)
	}
	_, _, err = Run(t.Context(), Spec{Script: "true", Dir: filepath.Join(t.TempDir(), "gone"), Env: env, Timeout: 30 * time.Second})
	var se *Error
	if !errors.As(err, &se) || se.ExitCode != -1 || !strings.Contains(err.Error(), "working directory") {
		t.Errorf("a missing directory: %v", err)
	}
}
