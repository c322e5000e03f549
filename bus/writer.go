package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	b       *Bus
	window  int
	pending []pendingWrite
	err     error
}

type pendingWrite struct {
	msg    *nats.Msg
	msgID  string
	future jetstream.PubAckFuture
}

// NewWriter returns a writer with the given window (DefaultWriterWindow
// when window < 1).
func NewWriter(b *Bus, window int) *Writer {
	if window < 1 {
		window = DefaultWriterWindow
	}
	return &Writer{b: b, window: window}
}

// WriteDurable sends v on the topic for tokens. msgID (required) makes a
// resend idempotent. An error means a message could not be stored; the
// writer keeps reporting it.
func WriteDurable[T any](ctx context.Context, w *Writer, t Topic[T], v T, msgID string, tokens ...string) error {
	if w.err != nil {
		return w.err
	}
	if t.spec.Stream == "" {
		return fmt.Errorf("write durable: %s is not stored in a stream", t.spec.Pattern)
	}
	if msgID == "" {
		return errors.New("write durable: a message id is required")
	}
	subject, err := t.Subject(tokens...)
	if err != nil {
		return err
	}
	m, err := encode(subject, t.spec, t.spec.typeName, v)
	if err != nil {
		return err
	}
	for len(w.pending) >= w.window {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	f, err := w.b.js.PublishMsgAsync(m, jetstream.WithMsgID(msgID))
	if err != nil {
		// Not even sent (too many in flight on the connection): store it
		// synchronously instead.
		if err := w.resend(ctx, m, msgID); err != nil {
			return err
		}
		return nil
	}
	w.pending = append(w.pending, pendingWrite{msg: m, msgID: msgID, future: f})
	return nil
}

// Flush waits until every message written so far is stored.
func (w *Writer) Flush(ctx context.Context) error {
	for len(w.pending) > 0 {
		if err := w.settleOldest(ctx); err != nil {
			return err
		}
	}
	return w.err
}

// Pending is how many messages await their acknowledgement.
func (w *Writer) Pending() int { return len(w.pending) }

func (w *Writer) settleOldest(ctx context.Context) error {
	p := w.pending[0]
	w.pending[0] = pendingWrite{}
	w.pending = w.pending[1:]
	select {
	case <-p.future.Ok():
		return nil
	case err := <-p.future.Err():
		w.b.log.Warn("durable write not acknowledged; sending it again", "subject", p.msg.Subject, "msg_id", p.msgID, "err", err)
		return w.resend(ctx, p.msg, p.msgID)
	case <-ctx.Done():
		w.err = fmt.Errorf("write durable %s: %w", p.msg.Subject, ctx.Err())
		return w.err
	}
}

func (w *Writer) resend(ctx context.Context, m *nats.Msg, msgID string) error {
	if _, err := w.b.js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		w.err = fmt.Errorf("write durable %s: %w", m.Subject, err)
		return w.err
	}
	return nil
}
