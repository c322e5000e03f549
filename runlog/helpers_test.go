package runlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/symphony-oss/symphony/bus"
)

// testTimeout is a generous bound for things that normally take
// milliseconds; it exists so a broken test fails instead of hanging.
const testTimeout = 30 * time.Second

func openTest(t *testing.T, opts bus.Options) *bus.Bus {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	b, err := bus.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func streamMsgs(t *testing.T, b *bus.Bus, name string) uint64 {
	t.Helper()
	return streamState(t, b, name).Msgs
}

// streamState is the named stream's state (messages, consumers…).
func streamState(t *testing.T, b *bus.Bus, name string) jetstream.StreamState {
	t.Helper()
	s, err := b.JetStream().Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// publishTurns stores n agent events of runID, turn 1, seq 1..n, one
// millisecond apart from base, and returns their stream sequences.
func publishTurns(t *testing.T, b *bus.Bus, runID string, n int, base time.Time) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		ev := bus.TurnEvent{RunID: runID, Turn: 1, Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Millisecond), Kind: bus.TurnText, Text: fmt.Sprint("text ", i+1)}
		ack, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, ev, "", runID, "1")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Seq)
	}
	return seqs
}

func oneTo(n int) []int64 {
	var out []int64
	for i := range n {
		out = append(out, int64(i+1))
	}
	return out
}

// subjectOf is topic's subject for tokens (subjects are spelled only in
// bus).
func subjectOf[T any](t *testing.T, topic bus.Topic[T], tokens ...string) string {
	t.Helper()
	s, err := topic.Subject(tokens...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// followFn reads Follow's stream into deliver until the stream ends (ctx
// ended: nil) or deliver fails (its error), as Follow itself did when it
// took a callback; by the time it returns the follow's consumers are gone.
func followFn(ctx context.Context, b *bus.Bus, runID string, after Cursor, deliver func(Event) error, opts ...Option) error {
	s, err := Follow(ctx, b, runID, after, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	for ev := range s.C() {
		if err := deliver(ev); err != nil {
			return err
		}
	}
	return s.Err()
}
