package runlog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// BenchmarkReadRun reads a run of about 22 MB of agent events (20,000
// events stored in batches) whole (Timeline, what replay and the JSONL
// export use) and piece by piece (Each, what the dashboard uses,
// decoded and raw): what the bounded pieces cost in time against the
// whole read, and what each holds (B/op is allocated, not held).
func BenchmarkReadRun(b *testing.B) {
	bs, err := bus.Open(b.Context(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close(context.Background())
	w := NewWriter(bs, 0)
	text := strings.Repeat("The agent wrote this line of its transcript. ", 24)
	at := time.Unix(1800000000, 0).UTC()
	for i := range 20000 {
		if err := w.AppendTurn(b.Context(), bus.TurnEvent{RunID: "r1", Turn: 1, Seq: int64(i + 1), At: at.Add(time.Duration(i) * time.Millisecond), Kind: bus.TurnText, Text: text}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if evs, _, err := Timeline(b.Context(), bs, "r1"); err != nil || len(evs) != 20000 {
				b.Fatal(len(evs), err)
			}
		}
	})
	for _, raw := range []bool{false, true} {
		name, opts := "pieces", []Option(nil)
		if raw {
			name, opts = "pieces-raw", []Option{RawTurns()}
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				if _, err := Each(b.Context(), bs, "r1", func(Event) error { n++; return nil }, opts...); err != nil || n != 20000 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
