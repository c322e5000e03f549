package scheduler

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestRunEndLinesCarrySession: the scheduler's lines about a run's end
// (retry queued, blocked…) carry the run's session_id, as every line of a
// run does once the session is known (SPEC §13.1).
func TestRunEndLinesCarrySession(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		var logged lockedBuffer
		a.log = slog.New(slog.NewTextHandler(&logged, nil))
		for _, st := range []bus.RunStatus{bus.RunFailed, bus.RunBlocked} {
			id := "L-" + string(st)
			r := &running{runID: id + "-run", issue: iss(id, 1, "", "Todo")}
			a.running[id] = r
			a.onRunEvent(t.Context(), bus.RunEvent{RunID: r.runID, Event: bus.RunFinished, At: time.Now(), Issue: r.issue.Ref(),
				Status: st, Error: "boom", SessionID: "sess-" + id})
		}
		n := 0
		for _, l := range strings.Split(logged.String(), "\n") {
			for _, st := range []bus.RunStatus{bus.RunFailed, bus.RunBlocked} {
				id := "L-" + string(st)
				if strings.Contains(l, "run_id="+id+"-run") {
					n++
					if !strings.Contains(l, "session_id=sess-"+id) {
						t.Errorf("a run's line without its session_id: %s", l)
					}
				}
			}
		}
		if n < 2 {
			t.Errorf("%d lines about the runs' ends, want one each:\n%s", n, logged.String())
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for concurrent log writes.
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
