package runlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

// maxTurnBatch and maxTurnBatchBytes bound one stored message of agent
// events (see bus.HeaderEvents): a follower catching up holds a few of
// them in memory at once, and one event larger than the byte bound is
// stored on its own.
const (
	maxTurnBatch      = 256
	maxTurnBatchBytes = 64 << 10
)

// DefaultWriterWindow is how many of one writer's messages may await their
// acknowledgement at once.
const DefaultWriterWindow = 256

// Writer stores a sequence of durable messages (one run's agent events)
// with their acknowledgements pipelined: Write returns once the message is
// sent and at most window messages are unacknowledged; Flush returns once
// every one is stored. Nothing is dropped: a full window makes Write wait
// (back-pressure), and a message whose acknowledgement failed is sent again
// synchronously with the same Nats-Msg-Id (the stream stores it once). A
// Writer is used by one goroutine.
//
// A synchronous publish per event costs a round trip each; pipelining lets
// a fast agent stream at the store's speed instead.
type Writer struct {
	b       *bus.Bus
	window  int
	pending []pendingWrite
	err     error
	// turns is the batch of agent events AppendTurn is building.
	turns turnBatch
}

// turnBatch is agent events of one run and turn waiting to be stored as
// one message: buf is "[" and their JSON, comma-separated.
type turnBatch struct {
	subject     string
	run         string
	turn        int
	buf         []byte
	n           int
	first, last int64
	scratch     []byte
}

type pendingWrite struct {
	msg    *nats.Msg
	msgID  string
	future jetstream.PubAckFuture
}

// NewWriter returns a writer with the given window (DefaultWriterWindow
// when window < 1).
func NewWriter(b *bus.Bus, window int) *Writer {
	if window < 1 {
		window = DefaultWriterWindow
	}
	return &Writer{b: b, window: window}
}

// WriteDurable sends v on the topic for tokens. msgID (required) makes a
// resend idempotent. An error means a message could not be stored; the
// writer keeps reporting it.
func WriteDurable[T any](ctx context.Context, w *Writer, t bus.Topic[T], v T, msgID string, tokens ...string) error {
	if w.err != nil {
		return w.err
	}
	if t.Spec().Stream == "" {
		return fmt.Errorf("write durable: %s is not stored in a stream", t.Spec().Pattern)
	}
	if msgID == "" {
		return errors.New("write durable: a message id is required")
	}
	subject, err := t.Subject(tokens...)
	if err != nil {
		return err
	}
	m, err := t.Encode(subject, v)
	if err != nil {
		return err
	}
	// Whatever was appended before this is stored before it.
	if err := w.SendTurns(ctx); err != nil {
		return err
	}
	return w.send(ctx, m, msgID)
}

// AppendTurn adds one agent event of a run to the batch the writer is
// building; SendTurns (or Flush, or a full batch) sends the batch as one
// stored message. The runner appends everything it read from the agent in
// one go and then sends it: a flooding agent costs one stored message per
// read instead of one per event, and an agent writing a line at a time
// still gets each event stored at once. An event of another run or turn
// sends the batch first. The message id of a batch names its first and
// last event (ev.Seq), so a resend is stored once.
func (w *Writer) AppendTurn(ctx context.Context, ev bus.TurnEvent) error {
	if w.err != nil {
		return w.err
	}
	tb := &w.turns
	if tb.n > 0 && (ev.RunID != tb.run || ev.Turn != tb.turn) {
		if err := w.SendTurns(ctx); err != nil {
			return err
		}
	}
	enc, err := ev.AppendJSON(tb.scratch[:0])
	if err != nil {
		return fmt.Errorf("encode agent event %d of run %s: %w", ev.Seq, ev.RunID, err)
	}
	tb.scratch = enc
	if tb.n > 0 && len(tb.buf)+len(enc)+2 > maxTurnBatchBytes {
		if err := w.SendTurns(ctx); err != nil {
			return err
		}
	}
	if tb.n == 0 {
		subject, err := bus.TurnEvents.Subject(ev.RunID, strconv.Itoa(ev.Turn))
		if err != nil {
			return err
		}
		tb.subject, tb.run, tb.turn, tb.first = subject, ev.RunID, ev.Turn, ev.Seq
		tb.buf = append(tb.buf[:0], '[')
	} else {
		tb.buf = append(tb.buf, ',')
	}
	tb.buf = append(tb.buf, enc...)
	tb.n++
	tb.last = ev.Seq
	if tb.n >= maxTurnBatch {
		return w.SendTurns(ctx)
	}
	return nil
}

// SendTurns sends the events appended since the last send as one stored
// message: a lone event as a bare object (as WriteDurable would store it),
// several as a JSON array (schema 2, with the Symphony-Events header).
func (w *Writer) SendTurns(ctx context.Context) error {
	tb := &w.turns
	if tb.n == 0 {
		return w.err
	}
	m := nats.NewMsg(tb.subject)
	m.Header.Set(bus.HeaderType, bus.TurnEvents.Spec().TypeName())
	var msgID string
	if tb.n == 1 {
		m.Data = append([]byte(nil), tb.buf[1:]...)
		m.Header.Set(bus.HeaderSchema, "1")
		msgID = tb.run + "-" + strconv.FormatInt(tb.first, 10)
		tb.buf = tb.buf[:0]
	} else {
		// A batch that fills most of its buffer hands the buffer to the
		// message (kept until it is acknowledged) and the next batch starts
		// in a new one sized after it, so a steady flood neither copies
		// nor regrows; a small batch in a large buffer is copied out, so a
		// window of pending messages does not pin mostly empty buffers.
		data := append(tb.buf, ']')
		if cap(data) > 2*len(data) {
			m.Data = append([]byte(nil), data...)
			tb.buf = tb.buf[:0]
		} else {
			m.Data = data
			tb.buf = make([]byte, 0, min(max(len(data)+len(data)/4, 4<<10), maxTurnBatchBytes+4<<10))
		}
		m.Header.Set(bus.HeaderSchema, strconv.Itoa(bus.TurnEvents.Spec().Schema))
		m.Header.Set(bus.HeaderEvents, strconv.Itoa(tb.n))
		msgID = tb.run + "-" + strconv.FormatInt(tb.first, 10) + "-" + strconv.FormatInt(tb.last, 10)
	}
	tb.n = 0
	if w.err != nil {
		return w.err
	}
	return w.send(ctx, m, msgID)
}

// send stores m asynchronously within the window.
func (w *Writer) send(ctx context.Context, m *nats.Msg, msgID string) error {
	if err := w.dropSettled(ctx); err != nil {
		return err
	}
	for len(w.pending) >= w.window {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	f, err := w.b.JetStream().PublishMsgAsync(m, jetstream.WithMsgID(msgID))
	if err != nil {
		// Not even sent (too many in flight on the connection): store it
		// synchronously instead.
		return w.resend(ctx, m, msgID)
	}
	w.pending = append(w.pending, pendingWrite{msg: m, msgID: msgID, future: f})
	return nil
}

// Flush sends the agent events appended and waits until every message
// written so far is stored.
func (w *Writer) Flush(ctx context.Context) error {
	if err := w.SendTurns(ctx); err != nil {
		return err
	}
	for len(w.pending) > 0 {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	return w.err
}

// Pending is how many messages await their acknowledgement, or were
// acknowledged since the last send (appended agent events not yet sent are
// not counted).
func (w *Writer) Pending() int { return len(w.pending) }

// dropSettled lets go of the messages at the head of the window whose
// outcome has arrived, without waiting for any: an acknowledged one is
// dropped, and one the store refused is sent again at once, synchronously
// (the same message id: stored once). Before, a message was kept until the
// window filled or Flush: an agent writing an event at a time kept up to a
// window of stored messages in memory per run (most of the daemon's heap
// with 50 agents), and a store refusing a turn's messages was noticed only
// at its end. Now a refusal that a resend cannot cure stops the writer at
// the next send, and so the turn.
func (w *Writer) dropSettled(ctx context.Context) error {
	k := 0
	var err error
scan:
	for k < len(w.pending) {
		p := w.pending[k]
		select {
		case <-p.future.Ok():
		case perr := <-p.future.Err():
			w.b.Logger().Warn("durable write not acknowledged; sending it again", "subject", p.msg.Subject, "msg_id", p.msgID, "err", perr)
			if err = w.resend(ctx, p.msg, p.msgID); err != nil {
				k++ // on record in w.err
				break scan
			}
		default:
			break scan
		}
		k++
	}
	if k > 0 {
		// The rest moves to the front, so the next send appends in place
		// instead of into a fresh array whenever the head moved past it.
		n := copy(w.pending, w.pending[k:])
		clear(w.pending[n:])
		w.pending = w.pending[:n]
	}
	return err
}

func (w *Writer) settleOldest(ctx context.Context) error {
	p := w.pending[0]
	w.pending[0] = pendingWrite{}
	w.pending = w.pending[1:]
	select {
	case <-p.future.Ok():
		return nil
	case err := <-p.future.Err():
		w.b.Logger().Warn("durable write not acknowledged; sending it again", "subject", p.msg.Subject, "msg_id", p.msgID, "err", err)
		return w.resend(ctx, p.msg, p.msgID)
	case <-ctx.Done():
		w.err = fmt.Errorf("write durable %s: %w", p.msg.Subject, ctx.Err())
		return w.err
	}
}

func (w *Writer) resend(ctx context.Context, m *nats.Msg, msgID string) error {
	if _, err := w.b.JetStream().PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		w.err = fmt.Errorf("write durable %s: %w", m.Subject, err)
		return w.err
	}
	return nil
}
