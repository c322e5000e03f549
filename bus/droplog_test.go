package bus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestDropLogIsRateLimited: a flood of dropped messages (a listener
// client's consumer aimed at a component's subject delivers at will)
// logs one line per kind per interval, then one line with the count of
// those it did not log.
func TestDropLogIsRateLimited(t *testing.T) {
	var out bytes.Buffer
	d := newDropLog(slog.New(slog.NewTextHandler(&out, nil)))
	now := time.Unix(1_700_000_000, 0)
	d.now = func() time.Time { return now }
	for range 1000 {
		d.warn("dropped undecodable message", "subject", "symphony.x")
		d.warn("request without reply subject dropped", "subject", "symphony.y")
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 2,000 drops in one interval, want 2:\n%s", n, out.String())
	}
	now = now.Add(dropLogEvery)
	d.warn("dropped undecodable message", "subject", "symphony.x")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "more_dropped_unlogged=999") {
		t.Fatalf("after the interval: %q", lines)
	}
}
