package main

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// TestPlayKeepsScaledGaps replays events recorded 0 s, 10 s, 10 s, 70 s
// apart at speed 5 on a fake clock: they come out 0, 2, 0 and 12 s apart.
func TestPlayKeepsScaledGaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var events []runlog.Event
		for _, off := range []time.Duration{0, 10 * time.Second, 10 * time.Second, 70 * time.Second} {
			events = append(events, runlog.Event{At: base.Add(off)})
		}
		start := time.Now()
		var at []time.Duration
		if err := play(context.Background(), events, 5, func(runlog.Event) { at = append(at, time.Since(start)) }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(at) != "[0s 2s 2s 14s]" {
			t.Errorf("emitted at %v, want [0s 2s 2s 14s]", at)
		}
		// Speed 0: no waiting at all.
		start = time.Now()
		_ = play(context.Background(), events, 0, func(runlog.Event) {})
		if d := time.Since(start); d != 0 {
			t.Errorf("speed 0 waited %v", d)
		}
	})
}

// BenchmarkRunsList10k measures `symphony runs`' fold over 10,000 stored
// runs (five lifecycle events each).
func BenchmarkRunsList10k(b *testing.B) {
	store, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close(context.Background())
	base := time.Now().Add(-time.Hour)
	for i := range 10000 {
		id := fmt.Sprintf("run-%05d", i)
		ref := bus.IssueRef{ID: id, Identifier: fmt.Sprintf("B-%d", i)}
		for _, kind := range []bus.RunEventKind{bus.RunDispatched, bus.RunWorkspaceReady, bus.RunTurnStarted, bus.RunTurnFinished, bus.RunFinished} {
			ev := bus.RunEvent{RunID: id, Event: kind, At: base.Add(time.Duration(i) * time.Millisecond), Issue: ref, Turn: 1, Status: bus.RunSucceeded}
			if err := runlog.Record(context.Background(), store, ev, ""); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		runs, err := summarize(context.Background(), store)
		if err != nil || len(runs) != 10000 {
			b.Fatalf("%d runs, %v", len(runs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
}

// BenchmarkReplay100k measures reading and ordering a 100,000-event run
// (what `replay --speed 0` does before printing), each event stored in a
// message of its own, as an agent writing a line at a time is stored.
func BenchmarkReplay100k(b *testing.B) { benchReplay(b, 1) }

// BenchmarkReplay100kBatched is BenchmarkReplay100k with the events stored
// 64 to a message, as the runner stores a flooding agent's output.
func BenchmarkReplay100kBatched(b *testing.B) { benchReplay(b, 64) }

func benchReplay(b *testing.B, perMessage int) {
	store, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close(context.Background())
	base := time.Now().Add(-time.Hour)
	const n = 100000
	w := runlog.NewWriter(store, 0)
	for i := range n {
		ev := bus.TurnEvent{RunID: "big", Turn: 1, Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Millisecond), Kind: bus.TurnText, Text: "some assistant text of a usual length for one event"}
		if err := w.AppendTurn(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
		if (i+1)%perMessage == 0 {
			if err := w.SendTurns(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		events, _, err := runlog.Timeline(context.Background(), store, "big")
		if err != nil || len(events) != n {
			b.Fatalf("%d events, %v", len(events), err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
