package agentrunner

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunLogCarriesTheSession: every line of a run's logger names the run
// and the issue, and from the moment the agent reports its session every
// line names it too (SPEC §13.1), the lines of the run's other goroutines
// (its lane, its tool responders) included.
func TestRunLogCarriesTheSession(t *testing.T) {
	out := &lockedBuffer{}
	w := &run{r: &Component{log: slog.New(slog.NewTextHandler(out, nil))},
		d: bus.Dispatch{RunID: "run-1", Issue: bus.Issue{ID: "id-1", Identifier: "ABC-1"}}}
	tools := &runTools{log: w.log}
	w.log().Info("before")
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 100 {
			tools.log().Info("from another goroutine")
		}
	})
	w.setSession("sess-9")
	wg.Wait()
	w.log().Info("after")
	tools.log().Info("tool after")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "run_id=run-1 issue_id=id-1 issue_identifier=ABC-1") {
			t.Errorf("line without the run and issue: %s", l)
		}
		if strings.Count(l, "session_id=") > 1 {
			t.Errorf("session_id twice: %s", l)
		}
	}
	if strings.Contains(lines[0], "session_id") {
		t.Errorf("a session before the agent reported one: %s", lines[0])
	}
	for _, l := range lines[len(lines)-2:] {
		if !strings.Contains(l, "session_id=sess-9") {
			t.Errorf("line after the session is known lacks it: %s", l)
		}
	}
}

// TestRunLinesUseTheRunLogger: the runner's code logs a run's lines only
// through run.log, so none of them misses the session: the component's
// own logger (w.r.log) is used only where run.log is built.
func TestRunLinesUseTheRunLogger(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if strings.Contains(line, "w.r.log.") && !strings.Contains(line, "w.r.log.With(") {
				t.Errorf("%s:%d logs a run's line past run.log: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
