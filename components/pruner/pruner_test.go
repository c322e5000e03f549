package pruner

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

func publishRun(t *testing.T, b *bus.Bus, runID string, started time.Time, ended *time.Time) {
	t.Helper()
	ctx := t.Context()
	ref := bus.IssueRef{ID: "i-" + runID, Identifier: "P-" + runID}
	if err := runlog.Record(ctx, b, bus.RunEvent{RunID: runID, Event: bus.RunDispatched, At: started, Issue: ref}, ""); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := bus.PublishDurable(ctx, b, bus.TurnEvents, bus.TurnEvent{RunID: runID, Turn: 1, Seq: int64(i + 1), Kind: bus.TurnText, Text: "hello"}, "", runID, strconv.Itoa(1)); err != nil {
			t.Fatal(err)
		}
	}
	if ended != nil {
		if err := runlog.Record(ctx, b, bus.RunEvent{RunID: runID, Event: bus.RunFinished, At: *ended, Issue: ref, Status: bus.RunSucceeded}, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func count[T any](t *testing.T, b *bus.Bus, topic bus.Topic[T], runID string) int {
	t.Helper()
	n := 0
	for _, err := range bus.History(t.Context(), b, topic, runID) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestPruneDeletesExactlyOldFinishedRuns(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour)
	recent := now.Add(-24 * time.Hour)
	publishRun(t, b, "old", old.Add(-time.Hour), &old)
	publishRun(t, b, "recent", recent.Add(-time.Hour), &recent)
	publishRun(t, b, "running", old, nil) // started long ago, never ended

	dry, err := Prune(t.Context(), b, 30*24*time.Hour, true, now)
	if err != nil || len(dry.Deleted) != 1 || dry.Deleted[0].RunID != "old" || dry.BytesFreed != 0 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if count(t, b, bus.RunEvents, "old") != 2 || count(t, b, bus.TurnEvents, "old") != 3 {
		t.Fatal("the dry run deleted something")
	}

	res, err := Prune(t.Context(), b, 30*24*time.Hour, false, now)
	if err != nil || len(res.Deleted) != 1 || res.Deleted[0].RunID != "old" || res.Kept != 2 || res.BytesFreed == 0 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if count(t, b, bus.RunEvents, "old") != 0 || count(t, b, bus.TurnEvents, "old") != 0 {
		t.Error("the old run's events are still stored")
	}
	for _, keep := range []string{"recent", "running"} {
		if count(t, b, bus.RunEvents, keep) == 0 || count(t, b, bus.TurnEvents, keep) != 3 {
			t.Errorf("%s was touched", keep)
		}
	}
	again, err := Prune(t.Context(), b, 30*24*time.Hour, false, now)
	if err != nil || len(again.Deleted) != 0 || again.Kept != 2 {
		t.Errorf("second prune is not a no-op: %+v %v", again, err)
	}
	if _, err := Prune(t.Context(), b, 0, false, now); err == nil {
		t.Error("a zero age was accepted")
	}
}

// TestServeRefusesAgesOutOfRange: a prune request's age must be positive
// and fit a Duration; one that would wrap around (to a small age that
// deletes almost everything) is refused and deletes nothing. An age in
// range is served, and the answer counts what it deletes.
func TestServeRefusesAgesOutOfRange(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	old := time.Now().Add(-48 * time.Hour)
	publishRun(t, b, "old", old.Add(-time.Hour), &old)
	c, err := New(Options{Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range []int64{0, -1, 9_300_000_000_000_000, 1 << 62} {
		if res, err := c.serve(t.Context(), "", bus.PruneRequest{OlderThanMS: ms}); err == nil || !strings.Contains(err.Error(), "older_than_ms") {
			t.Errorf("older_than_ms %d: %+v %v", ms, res, err)
		}
	}
	if count(t, b, bus.RunEvents, "old") != 2 {
		t.Fatal("a refused request deleted something")
	}
	res, err := c.serve(t.Context(), "", bus.PruneRequest{OlderThanMS: (24 * time.Hour).Milliseconds()})
	if err != nil || res.DeletedCount != 1 || len(res.Deleted) != 1 || res.Deleted[0].RunID != "old" {
		t.Errorf("prune of a day: %+v %v", res, err)
	}
}
