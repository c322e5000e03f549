package runlog

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

// followUntil follows run r1 from the cursor (agent events raw or decoded)
// until done says so, failing the test if that takes 20 s.
func followUntil(t *testing.T, b *bus.Bus, after Cursor, raw bool, done func(Event) bool) {
	t.Helper()
	var opts []Option
	if raw {
		opts = append(opts, RawTurns())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	finished := false
	if err := followFn(ctx, b, "r1", after, func(ev Event) error {
		if done(ev) {
			finished = true
			cancel()
		}
		return nil
	}, opts...); err != nil {
		t.Fatal(err)
	}
	if !finished {
		t.Fatalf("raw=%v: following r1 did not finish in 20 s", raw)
	}
}

// storeTurns stores events of run r1, turn 1, each [from, to] as one
// message, through a new writer, and waits until all are stored.
func storeTurns(t *testing.T, b *bus.Bus, batches ...[2]int64) {
	t.Helper()
	w := NewWriter(b, 0)
	for _, r := range batches {
		appendTurns(t, w, "r1", 1, r[0], r[1])
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// appendTurns appends events seq from..to of run/turn and sends them as
// one message.
func appendTurns(t *testing.T, w *Writer, run string, turn int, from, to int64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		ev := bus.TurnEvent{RunID: run, Turn: turn, Seq: seq, At: time.Unix(1800000000, seq).UTC(), Kind: bus.TurnText, Text: fmt.Sprint("t", seq)}
		if err := w.AppendTurn(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SendTurns(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func turnsStored(t *testing.T, b *bus.Bus) uint64 {
	t.Helper()
	return streamMsgs(t, b, bus.StreamTurns)
}

func seqsOf(events []Event) []int64 {
	var out []int64
	for _, e := range events {
		if e.Turn != nil {
			out = append(out, e.Turn.Seq)
		} else if e.Stream == bus.StreamTurns {
			var v bus.TurnEvent
			_ = json.Unmarshal(e.Event, &v)
			out = append(out, v.Seq)
		}
	}
	return out
}

// TestTurnBatchesStoreAndRead: events appended together are stored as one
// message; a lone one as a bare object; every reader hands each event on
// in order, with its place in its message, and nothing twice.
func TestTurnBatchesStoreAndRead(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	w := NewWriter(b, 0)
	appendTurns(t, w, "r1", 1, 1, 5) // a batch of 5
	appendTurns(t, w, "r1", 1, 6, 6) // alone
	// A turn change inside one go splits it.
	if err := w.AppendTurn(ctx, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: 7, At: time.Unix(1800000000, 7).UTC(), Kind: bus.TurnText}); err != nil {
		t.Fatal(err)
	}
	appendTurns(t, w, "r1", 2, 8, 10)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := turnsStored(t, b); n != 4 {
		t.Fatalf("%d messages stored, want 4 (5 events, 1, 1, 3)", n)
	}

	// The stored form: an array with its count and schema 2; a lone event
	// as a bare object, schema 1.
	s, _ := b.JetStream().Stream(ctx, bus.StreamTurns)
	first, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if first.Header.Get(bus.HeaderEvents) != "5" || first.Header.Get(bus.HeaderSchema) != "2" || first.Data[0] != '[' {
		t.Fatalf("batch stored as %v %.40s", first.Header, first.Data)
	}
	lone, err := s.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if lone.Header.Get(bus.HeaderEvents) != "" || lone.Header.Get(bus.HeaderSchema) != "1" || lone.Data[0] != '{' {
		t.Fatalf("lone event stored as %v %.40s", lone.Header, lone.Data)
	}

	events, cur, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqsOf(events)); got != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Fatalf("timeline seqs %s", got)
	}
	if events[4].Index != 4 || events[4].Seq != 1 || events[5].Index != 0 || events[5].Seq != 2 || cur.Turns != 4 || cur.TurnsPart != 0 {
		t.Fatalf("places: %+v %+v, cursor %v", events[4], events[5], cur)
	}
	var stored bus.TurnEvent
	if err := json.Unmarshal(events[2].Event, &stored); err != nil || stored.Seq != 3 {
		t.Fatalf("event payload %s: %v", events[2].Event, err)
	}

	var hist []int64
	for m, err := range bus.History(ctx, b, bus.TurnEvents, "r1") {
		if err != nil {
			t.Fatal(err)
		}
		hist = append(hist, m.Data.Seq)
	}
	if got := fmt.Sprint(hist); got != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Fatalf("history seqs %s", got)
	}
	// The generic decoder refuses a batch with a clear error: checked in
	// bus (TestDecodeRefusesABatch), whose decoder it is.

	// The writer's message ids make a resend of the same batch a duplicate.
	storeTurns(t, b, [2]int64{1, 5})
	if n := turnsStored(t, b); n != 4 {
		t.Fatalf("a resent batch was stored again: %d messages", n)
	}
}

// TestFollowRunResumesInsideABatch: a cursor taken inside a message of
// several events resumes at the next event of that message, in both
// decoded and raw delivery, and its string form round-trips.
func TestFollowRunResumesInsideABatch(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	storeTurns(t, b, [2]int64{1, 4}, [2]int64{5, 6})
	events, _, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var cur Cursor
	for _, ev := range events[:2] {
		cur.Advance(ev)
	}
	if cur.Turns != 1 || cur.TurnsPart != 2 || cur.String() != "0.1.0.2" {
		t.Fatalf("cursor after 2 of 4 = %+v %q", cur, cur.String())
	}
	if !cur.Includes(events[1]) || cur.Includes(events[2]) || cur.Includes(events[4]) {
		t.Fatal("Includes disagrees with the cursor")
	}
	back, err := ParseCursor(cur.String())
	if err != nil || back != cur {
		t.Fatalf("parse %q = %+v, %v", cur.String(), back, err)
	}
	for _, bad := range []string{"0.0.0.5", "1.2.3.0", "1.2.3.1048577", "1.2.3.4.5"} {
		if c, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) = %+v, want an error", bad, c)
		}
	}
	end, err := End(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Covers(end) {
		t.Fatal("a cursor inside the first message covers the run's end")
	}
	full := cur
	for _, ev := range events {
		full.Advance(ev)
	}
	if !full.Covers(end) || full.TurnsPart != 0 {
		t.Fatalf("cursor after everything %+v does not cover the end %+v", full, end)
	}
	// Advance never goes back.
	again := full
	again.Advance(events[0])
	if again != full {
		t.Fatalf("Advance went back: %+v", again)
	}

	for _, raw := range []bool{false, true} {
		var got []Event
		followUntil(t, b, back, raw, func(ev Event) bool {
			got = append(got, ev)
			return len(got) == 4
		})
		if fmt.Sprint(seqsOf(got)) != "[3 4 5 6]" || got[0].Index != 2 || got[3].Index != 1 {
			t.Fatalf("raw=%v: followed %v (%+v)", raw, seqsOf(got), got)
		}
		if raw && (got[0].Turn != nil || got[0].At.IsZero()) {
			t.Fatalf("raw delivery decoded the event or lost its time: %+v", got[0])
		}
	}
}

// TestDamagedBatchKeepsTheReadableEvents: a stored array cut short or with
// one bad element hides neither the events before the damage nor the
// other messages of the run.
func TestDamagedBatchKeepsTheReadableEvents(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	good := func(seq int64) string {
		enc, err := bus.TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: time.Unix(1800000000, seq).UTC(), Kind: bus.TurnText}.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(enc)
	}
	for i, body := range []string{
		"[" + good(1) + `,{"seq":},` + good(3) + "]",
		"[" + good(4) + "," + good(5)[:20],
		good(6),
	} {
		m := nats.NewMsg(subjectOf(t, bus.TurnEvents, "r1", "1"))
		m.Data = []byte(body)
		m.Header.Set(bus.HeaderType, "TurnEvent")
		m.Header.Set(bus.HeaderSchema, "2")
		if _, err := b.JetStream().PublishMsg(ctx, m, jetstream.WithMsgID("damaged-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	events, _, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqsOf(events)); got != "[1 3 4 6]" {
		t.Fatalf("readable events %s, want [1 3 4 6]", got)
	}
	var got []Event
	followUntil(t, b, Cursor{}, true, func(ev Event) bool {
		got = append(got, ev)
		return len(got) == 4
	})
	if s := fmt.Sprint(seqsOf(got)); s != "[1 3 4 6]" {
		t.Fatalf("followed %s, want [1 3 4 6]", s)
	}
}

// TestCursorPassesABatchEndingInADamagedEvent: when the last events of a
// run's last message cannot be read, a reader that delivered the rest still
// reaches the run's end (a stream waiting for it would never end).
func TestCursorPassesABatchEndingInADamagedEvent(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	storeTurns(t, b, [2]int64{1, 2})
	m := nats.NewMsg(subjectOf(t, bus.TurnEvents, "r1", "1"))
	enc, _ := bus.TurnEvent{RunID: "r1", Turn: 1, Seq: 3, At: time.Now().UTC(), Kind: bus.TurnText}.AppendJSON(nil)
	m.Data = []byte("[" + string(enc) + `,{"seq":}]`)
	m.Header.Set(bus.HeaderType, "TurnEvent")
	m.Header.Set(bus.HeaderSchema, "2")
	if _, err := b.JetStream().PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	end, err := End(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	events, _, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var cur Cursor
	for _, ev := range events {
		cur.Advance(ev)
	}
	if !cur.Covers(end) {
		t.Fatalf("timeline: cursor %v does not cover the end %v", cur, end)
	}
	for _, raw := range []bool{false, true} {
		var fc Cursor
		followUntil(t, b, Cursor{}, raw, func(ev Event) bool {
			fc.Advance(ev)
			return fc.Covers(end)
		})
		if !fc.Covers(end) {
			t.Fatalf("raw=%v: followed to %v, never covering the end %v", raw, fc, end)
		}
	}
}

// TestFollowDeliversALargeMessage: a stored
// message near the store's size limit is delivered, and what follows it.
func TestFollowDeliversALargeMessage(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	big := strings.Repeat("x", 3<<20)
	for i, text := range []string{big, "small"} {
		if _, err := bus.PublishDurable(ctx, b, bus.TurnEvents, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: int64(i + 1), At: time.Now().UTC(), Kind: bus.TurnText, Text: text}, fmt.Sprint("big-", i), "r1", "1"); err != nil {
			t.Fatal(err)
		}
	}
	// Both events arrive: the 3 MiB one and the one after it.
	n := 0
	followUntil(t, b, Cursor{}, false, func(Event) bool {
		n++
		return n == 2
	})
}

// TestTurnBatchBounds: a batch is sent when it reaches its event or byte
// bound, and an event larger than the byte bound is stored on its own.
func TestTurnBatchBounds(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	w := NewWriter(b, 0)
	for seq := int64(1); seq <= maxTurnBatch+1; seq++ {
		if err := w.AppendTurn(ctx, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: time.Now().UTC(), Kind: bus.TurnText}); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", maxTurnBatchBytes)
	for seq := int64(maxTurnBatch + 2); seq <= maxTurnBatch+3; seq++ {
		if err := w.AppendTurn(ctx, bus.TurnEvent{RunID: "r1", Turn: 1, Seq: seq, At: time.Now().UTC(), Kind: bus.TurnText, Text: big}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The first 256 fill a batch; the next one cannot share a message
	// with a big one, nor can the two big ones: 256, 1, 1, 1.
	if n := turnsStored(t, b); n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}
	events, _, err := Timeline(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != maxTurnBatch+3 {
		t.Fatalf("%d events read back, want %d", len(events), maxTurnBatch+3)
	}
}

// TestFollowPassesAnUnreadableMessage: a stored message of which nothing
// can be decoded (a newer schema, damage) is delivered as an Unreadable
// marker, so a reader's cursor still reaches the run's end.
func TestFollowPassesAnUnreadableMessage(t *testing.T) {
	b := openTest(t, bus.Options{})
	ctx := t.Context()
	storeTurns(t, b, [2]int64{1, 2})
	for i, schema := range []string{"99", "2"} {
		m := nats.NewMsg(subjectOf(t, bus.TurnEvents, "r1", "1"))
		m.Data = []byte(`[{"seq":},{"at":}]`)
		m.Header.Set(bus.HeaderType, "TurnEvent")
		m.Header.Set(bus.HeaderSchema, schema)
		if _, err := b.JetStream().PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprint("unreadable-", i))); err != nil {
			t.Fatal(err)
		}
	}
	end, err := End(ctx, b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []bool{false, true} {
		var fc Cursor
		markers := 0
		followUntil(t, b, Cursor{}, raw, func(ev Event) bool {
			if ev.Unreadable {
				markers++
				if len(ev.Event) != 0 || ev.Turn != nil {
					t.Errorf("a marker carries an event: %+v", ev)
				}
			}
			fc.Advance(ev)
			return fc.Covers(end)
		})
		if markers != 2 {
			t.Errorf("raw=%v: %d markers, want 2 (a newer schema, then two bad events)", raw, markers)
		}
	}
}

// TestTimelineOutgrowsItsSizeHint: a run whose first message is a lone
// event and whose later ones are batches holds far more events than the
// first message suggests; every one is read, each entry with its own
// typed event (those decoded past the first slice go into new ones).
func TestTimelineOutgrowsItsSizeHint(t *testing.T) {
	b := openTest(t, bus.Options{})
	batches := [][2]int64{{1, 1}}
	for from := int64(2); from < 3000; from += 250 {
		batches = append(batches, [2]int64{from, from + 249})
	}
	storeTurns(t, b, batches...)
	last := batches[len(batches)-1][1]
	evs, _, err := Timeline(t.Context(), b, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, e := range evs {
		if e.Turn != nil {
			if want := fmt.Sprint("t", e.Turn.Seq); e.Turn.Text != want || !e.At.Equal(time.Unix(1800000000, e.Turn.Seq)) {
				t.Fatalf("event %d: text %q at %v", e.Turn.Seq, e.Turn.Text, e.At)
			}
			seqs = append(seqs, e.Turn.Seq)
		}
	}
	if int64(len(seqs)) != last {
		t.Fatalf("%d events read, want %d", len(seqs), last)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, s)
		}
	}
}
