package bus

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishTurns stores n text events of a run's turn 1, Seq 1..n, one
// millisecond apart from base, and returns their stream sequences.
func publishTurns(t *testing.T, b *Bus, runID string, n int, base time.Time) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		ev := TurnEvent{RunID: runID, Turn: 1, Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Millisecond), Kind: TurnText, Text: fmt.Sprint("text ", i+1)}
		ack, err := PublishDurable(t.Context(), b, TurnEvents, ev, "", runID, "1")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Seq)
	}
	return seqs
}

// readTurns reads a run's turn events with the given reader settings and
// returns their event Seq values and stream sequences, failing on any
// error or on stream sequences out of order.
func readTurns(t *testing.T, b *Bus, runID string, r storedReader) (evSeqs []int64, seqs []uint64) {
	t.Helper()
	subject, err := TurnEvents.Filter(runID)
	if err != nil {
		t.Fatal(err)
	}
	r.b, r.stream, r.filter = b, StreamTurns, subject
	r.fn = func(m *nats.Msg, at StoredMeta) error {
		v, err := decode[TurnEvent](m, TurnEvents.spec, TurnEvents.spec.typeName)
		if err != nil {
			return err
		}
		if len(seqs) > 0 && at.Seq <= seqs[len(seqs)-1] {
			return fmt.Errorf("stream sequence %d after %d", at.Seq, seqs[len(seqs)-1])
		}
		if at.Time.IsZero() {
			return fmt.Errorf("message %d without a time", at.Seq)
		}
		evSeqs, seqs = append(evSeqs, v.Seq), append(seqs, at.Seq)
		return nil
	}
	if err := r.read(t.Context()); err != nil {
		t.Fatal(err)
	}
	return evSeqs, seqs
}

func oneTo(n int) []int64 {
	var out []int64
	for i := range n {
		out = append(out, int64(i+1))
	}
	return out
}

// TestReadStoredBatchBoundaries: whatever the batch size (one, smaller
// than the run, the run's size exactly, larger), every event of the run
// comes once, in stream order, with another run's events interleaved in
// the stream.
func TestReadStoredBatchBoundaries(t *testing.T) {
	b := openTest(t, Options{})
	base := time.Now()
	for i := range 23 { // a1 b1 a2 b2 ...

		ev := TurnEvent{RunID: "a", Turn: 1, Seq: int64(i + 1), At: base.Add(time.Duration(i) * time.Millisecond), Kind: TurnText}
		if _, err := PublishDurable(t.Context(), b, TurnEvents, ev, "", "a", "1"); err != nil {
			t.Fatal(err)
		}
		publishTurns(t, b, "b", 1, base)
	}
	for _, batch := range []int{1, 5, 22, 23, 24, 100} {
		got, _ := readTurns(t, b, "a", storedReader{batch: batch})
		if !slices.Equal(got, oneTo(23)) {
			t.Errorf("batch %d: read %v", batch, got)
		}
	}
}

// TestReadStoredByteBudget: requests that end on their byte budget
// before their count (a 409 status) are followed by more, two in flight,
// and nothing is lost or read twice.
func TestReadStoredByteBudget(t *testing.T) {
	b := openTest(t, Options{})
	publishTurns(t, b, "a", 40, time.Now())
	for _, maxBytes := range []int{500, 1500} {
		got, _ := readTurns(t, b, "a", storedReader{batch: 16, maxBytes: maxBytes})
		if !slices.Equal(got, oneTo(40)) {
			t.Errorf("max bytes %d: read %v", maxBytes, got)
		}
	}
	// A budget smaller than one message is an error, not a loop.
	subject, _ := TurnEvents.Filter("a")
	r := storedReader{b: b, stream: StreamTurns, filter: subject, maxBytes: 1, fn: func(*nats.Msg, StoredMeta) error { return nil }}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := r.read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("a message larger than the budget: %v (context: %v)", err, ctx.Err())
	}
}

// TestReadStoredSkipsDeletedAndPurged: messages deleted in the middle
// and at a batch boundary, and another run purged from the stream, leave
// gaps in the sequence that the reader steps over.
func TestReadStoredSkipsDeletedAndPurged(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	base := time.Now()
	seqs := publishTurns(t, b, "a", 12, base)
	publishTurns(t, b, "b", 5, base)
	s, err := b.js.Stream(ctx, StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	// Events 5 and 6 of a (the end and the start of a batch of 5), and 12.
	for _, i := range []int{4, 5, 11} {
		if err := s.DeleteMsg(ctx, seqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Run b's turns purged, as runlog.Purge does.
	bTurns, err := TurnEvents.Filter("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(bTurns)); err != nil {
		t.Fatal(err)
	}
	want := []int64{1, 2, 3, 4, 7, 8, 9, 10, 11}
	for _, batch := range []int{1, 4, 5, 0} {
		got, _ := readTurns(t, b, "a", storedReader{batch: batch})
		if !slices.Equal(got, want) {
			t.Errorf("batch %d: read %v, want %v", batch, got, want)
		}
	}
	if got, _ := readTurns(t, b, "b", storedReader{}); len(got) != 0 {
		t.Errorf("purged run b: read %v", got)
	}
}

// TestReadStoredRecoversLostMessages: a subscription that may hold only
// two messages drops most of each batch of 50 while the reader is slow;
// the reader notices (a gap in the consumer sequence, or the client's
// slow-consumer report) and resumes after the last message it handed on,
// so the run still comes whole and in order.
func TestReadStoredRecoversLostMessages(t *testing.T) {
	b := openTest(t, Options{})
	publishTurns(t, b, "a", 60, time.Now())
	subject, _ := TurnEvents.Filter("a")
	var got []int64
	r := storedReader{b: b, stream: StreamTurns, filter: subject, batch: 50, pendingLimit: 2}
	r.fn = func(m *nats.Msg, _ StoredMeta) error {
		v, err := decode[TurnEvent](m, TurnEvents.spec, TurnEvents.spec.typeName)
		if err != nil {
			return err
		}
		if len(got) < 10 {
			time.Sleep(5 * time.Millisecond) // let the server outrun us
		}
		got = append(got, v.Seq)
		return nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := r.read(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, oneTo(60)) {
		t.Fatalf("read %v", got)
	}
	if r.restarts == 0 {
		t.Fatal("nothing was dropped: the test did not exercise recovery")
	}
}

func TestParseAckReply(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ackFields
		ok   bool
	}{
		{"$JS.ACK.TURNS.c1.1.42.7.1700000000000000000.3", ackFields{streamSeq: 42, consumerSeq: 7, time: 1700000000000000000, pending: 3}, true},
		{"$JS.ACK._.ACCHASH.TURNS.c1.1.42.7.1700000000000000000.3", ackFields{streamSeq: 42, consumerSeq: 7, time: 1700000000000000000, pending: 3}, true},
		{"$JS.ACK._.ACCHASH.TURNS.c1.1.42.7.1700000000000000000.3.rand", ackFields{streamSeq: 42, consumerSeq: 7, time: 1700000000000000000, pending: 3}, true},
		{"$JS.ACK.TURNS.c1.1.x.7.1.3", ackFields{}, false},
		{"$JS.ACK.TURNS.c1.1.42", ackFields{}, false},
		{"_INBOX.abc", ackFields{}, false},
	} {
		got, ok := parseAckReply(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
