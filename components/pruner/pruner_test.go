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

// TestPruneLeavesTheSpendIntact: the budgets' counts are the scheduler's
// KV keys, not derived from the runs: pruning every run of an issue
// leaves its lifetime spend (budget.per_issue, agent.max_runs_per_issue's
// count) and the fleet's spend of the day (budget.per_day) as they were,
// so a pruned run still counts.
func TestPruneLeavesTheSpendIntact(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := now.Add(-40 * 24 * time.Hour)
	publishRun(t, b, "old", old.Add(-time.Hour), &old) // issue i-old
	spend := bus.IssueSpend{IssueID: "i-old", Identifier: "P-old", USD: 1.5, Tokens: 900, Runs: 1, Turns: 3, Counted: []string{"old"}}
	day := bus.DaySpend{Day: "2026-09-22", TimeZone: "UTC", USD: 1.5, Tokens: 900, Runs: 1, Outcomes: map[bus.RunStatus]int{bus.RunSucceeded: 1}}
	runs := bus.RunCount{IssueID: "i-old", Runs: 1, LastRunID: "old"}
	sk, _ := bus.IssueSpends.Key("i-old")
	dk, _ := bus.DaySpends.Key(day.Day)
	rk, _ := bus.RunCounts.Key("i-old")
	for _, put := range []func() error{
		func() error { _, err := bus.Put(t.Context(), b, sk, spend); return err },
		func() error { _, err := bus.Put(t.Context(), b, dk, day); return err },
		func() error { _, err := bus.Put(t.Context(), b, rk, runs); return err },
	} {
		if err := put(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Prune(t.Context(), b, 30*24*time.Hour, false, now)
	if err != nil || len(res.Deleted) != 1 || count(t, b, bus.RunEvents, "old") != 0 {
		t.Fatalf("prune: %+v %v", res, err)
	}
	if e, err := bus.Get(t.Context(), b, sk); err != nil || e.Value.USD != 1.5 || e.Value.Tokens != 900 || e.Value.Runs != 1 || e.Value.Turns != 3 {
		t.Errorf("the issue's lifetime spend after the prune: %+v %v", e.Value, err)
	}
	if e, err := bus.Get(t.Context(), b, dk); err != nil || e.Value.USD != 1.5 || e.Value.Runs != 1 || e.Value.Outcomes[bus.RunSucceeded] != 1 {
		t.Errorf("the day's spend after the prune: %+v %v", e.Value, err)
	}
	if e, err := bus.Get(t.Context(), b, rk); err != nil || e.Value.Runs != 1 {
		t.Errorf("the issue's run count after the prune: %+v %v", e.Value, err)
	}
}
