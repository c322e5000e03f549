package runlog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// eachOf reads a run with Each into a slice.
func eachOf(t *testing.T, b *bus.Bus, runID string, opts ...Option) ([]Event, Cursor) {
	t.Helper()
	var out []Event
	cur, err := Each(t.Context(), b, runID, func(ev Event) error {
		out = append(out, ev)
		return nil
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return out, cur
}

// TestEachRunEventIsTheTimeline: a run of many pieces (more messages than
// one bounded pull, batched and single agent events, lifecycle and hook
// events between them) read piece by piece gives exactly Timeline's
// events, in its order, with its cursor; raw agent events carry the same
// payloads and times.
func TestEachRunEventIsTheTimeline(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	// The batch below is stored at 1800000000 s and a few ns, after the
	// single events.
	base := time.Unix(1800000000, 0).UTC().Add(-time.Hour)
	n := 3*eachReadBatch + 7
	publishTurns(t, b, "other", 3, base)
	publishTurns(t, b, "big", n, base)
	w := NewWriter(b, 0)
	appendTurns(t, w, "big", 2, 1, 40) // one message of 40 events
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, at := range []time.Duration{-time.Second, 5 * time.Millisecond, time.Duration(n) * time.Millisecond} {
		kind := []bus.RunEventKind{bus.RunDispatched, bus.RunTurnStarted, bus.RunFinished}[i]
		if _, err := bus.PublishDurable(ctx, b, bus.RunEvents, bus.RunEvent{RunID: "big", Event: kind, At: base.Add(at)}, "", "big", string(kind)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := bus.PublishDurable(ctx, b, bus.WorkspaceHookEvents, bus.HookEvent{RunID: "big", Hook: "before_run", Phase: bus.HookStarted, At: base.Add(time.Duration(10*i+3) * time.Millisecond)}, "", "big", "before_run"); err != nil {
			t.Fatal(err)
		}
	}
	want, wantCur, err := Timeline(ctx, b, "big")
	if err != nil {
		t.Fatal(err)
	}
	got, cur := eachOf(t, b, "big")
	if cur != wantCur {
		t.Fatalf("cursor %v, want %v", cur, wantCur)
	}
	same := func(a, b Event) bool {
		return a.Stream == b.Stream && a.Seq == b.Seq && a.Index == b.Index && a.more == b.more && a.At.Equal(b.At) && string(a.Event) == string(b.Event) &&
			(a.Run == nil) == (b.Run == nil) && (a.Hook == nil) == (b.Hook == nil)
	}
	if len(got) != len(want) || len(got) != n+40+6 {
		t.Fatalf("%d events, timeline has %d, want %d", len(got), len(want), n+46)
	}
	for i := range want {
		if !same(got[i], want[i]) || (want[i].Turn != nil) != (got[i].Turn != nil) {
			t.Fatalf("event %d: %+v, timeline has %+v", i, got[i], want[i])
		}
	}
	raw, rawCur := eachOf(t, b, "big", RawTurns())
	if rawCur != wantCur || len(raw) != len(want) {
		t.Fatalf("raw: %d events, cursor %v", len(raw), rawCur)
	}
	for i := range want {
		if !same(raw[i], want[i]) || raw[i].Turn != nil {
			t.Fatalf("raw event %d: %+v, timeline has %+v", i, raw[i], want[i])
		}
	}
	if none, cur := eachOf(t, b, "nope"); len(none) != 0 || cur != (Cursor{}) {
		t.Fatalf("unknown run: %d events, cursor %v", len(none), cur)
	}
}

// TestEachRunEventReadsALargeMessage: a stored message larger than the
// bounded pull's byte budget is read (asked for alone), and what follows
// it. Without that, the read stopped at it for good ("a message is larger
// than 262144 bytes").
func TestEachRunEventReadsALargeMessage(t *testing.T) {
	b := openTest(t, bus.Options{})
	big := strings.Repeat("x", 3*eachReadMaxBytes)
	for i, text := range []string{"before", big, "after"} {
		if _, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: int64(i + 1), At: time.Unix(1800000000, int64(i)).UTC(), Kind: bus.TurnText, Text: text}, fmt.Sprint("e-", i), "r1", "1"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := eachOf(t, b, "r1")
	if seqs := seqsOf(got); !slices.Equal(seqs, []int64{1, 2, 3}) || got[1].Turn.Text != big {
		t.Fatalf("read %v", seqs)
	}
}

// TestEachRunEventStopsAndLeavesNothing: a reader that stops after the
// first event (a client gone) gets its error back, and the read leaves no
// consumer on the server and no goroutine behind — however long the run.
func TestEachRunEventStopsAndLeavesNothing(t *testing.T) {
	b := openTest(t, bus.Options{})
	publishTurns(t, b, "r1", 4*eachReadBatch, time.Unix(1800000000, 0))
	consumers := func() int { return streamState(t, b, bus.StreamTurns).Consumers }
	before, baseConsumers := runtime.NumGoroutine(), consumers()
	stop := errors.New("client gone")
	for range 5 {
		n := 0
		_, err := Each(t.Context(), b, "r1", func(Event) error {
			n++
			return stop
		})
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("stopped read: %d events, %v", n, err)
		}
	}
	// A read ended by its context ends too.
	ctx, cancel := context.WithCancel(t.Context())
	_, err := Each(ctx, b, "r1", func(Event) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v", err)
	}
	if c := consumers(); c != baseConsumers {
		t.Fatalf("%d consumers left on the stream, want %d", c, baseConsumers)
	}
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the reads", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
