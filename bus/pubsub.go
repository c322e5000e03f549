package bus

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultRequestTimeout bounds a Request whose context has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// ErrNoResponder is returned by Request when no component serves the subject.
var ErrNoResponder = errors.New("no responder")

// Message is a decoded message: its concrete subject and its payload.
type Message[T any] struct {
	Subject string
	Data    T
	// Raw is the payload as stored (JSON), for messages read from a
	// stream.
	Raw []byte
	// Seq is the stream sequence for messages read from a stream, else 0.
	Seq uint64
	// Time is when the stream stored the message; zero for core messages.
	Time time.Time
}

// Publish sends v on the topic's subject for tokens (core NATS, not stored).
// For a topic backed by a stream use PublishDurable, which waits for the
// store's acknowledgement.
func Publish[T any](ep Endpoint, t Topic[T], v T, tokens ...string) error {
	b := ep.bus()
	subject, err := t.Subject(tokens...)
	if err != nil {
		return err
	}
	msgs, err := encodeParts(subject, t.spec, t.spec.typeName, v, b.partLimit())
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := b.nc.PublishMsg(m); err != nil {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
	}
	return nil
}

// Ack is the store's acknowledgement of a durable publish.
type Ack struct {
	Stream string
	Seq    uint64
	// Duplicate is true when the message id was already stored within the
	// duplicate window: the earlier message stands and this one was dropped.
	Duplicate bool
}

// PublishDurable stores v in the topic's stream and returns once the server
// acknowledged it. msgID, when not empty, is sent as Nats-Msg-Id so a retried
// publish of the same message is stored once.
func PublishDurable[T any](ctx context.Context, ep Endpoint, t Topic[T], v T, msgID string, tokens ...string) (Ack, error) {
	b := ep.bus()
	if t.spec.Stream == "" {
		return Ack{}, fmt.Errorf("publish durable: %s is not stored in a stream", t.spec.Pattern)
	}
	subject, err := t.Subject(tokens...)
	if err != nil {
		return Ack{}, err
	}
	m, err := encode(subject, t.spec, t.spec.typeName, v)
	if err != nil {
		return Ack{}, err
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	pa, err := b.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return Ack{}, fmt.Errorf("publish durable %s: %w", subject, err)
	}
	return Ack{Stream: pa.Stream, Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// Pending limits of a subscription: how much a slow reader may fall behind
// before core NATS drops messages for it. The queue is a list that grows
// with what is pending (a callback subscription of nats.go), so an idle
// subscription costs nothing; a SubscribeSync one would preallocate a
// channel of subPendingMsgs slots (512 KiB, scanned by every GC).
const (
	subPendingMsgs  = 65536
	subPendingBytes = 256 << 20
	// servePendingBytes is a responder's byte limit (the nats.go default).
	servePendingBytes = 64 << 20
)

// Subscribe listens on the topic's subjects matching filter tokens (missing
// trailing tokens are wildcards). The subscription is owned by ctx: when ctx
// ends the NATS subscription is removed and C is closed. The subscription is
// registered with the server before Subscribe returns, so a message published
// afterwards is seen. A slow reader has a pending buffer of 64k messages;
// beyond that core NATS drops messages (it has no back-pressure): the
// subscription keeps going, counts the overflow (Overflows) and logs it.
// What must never be lost is published to a stream and read with History.
func Subscribe[T any](ctx context.Context, ep Endpoint, t Topic[T], filter ...string) (*Subscription[T], error) {
	b := ep.bus()
	subject, err := t.Filter(filter...)
	if err != nil {
		return nil, err
	}
	ctx, release, err := ep.open(ctx)
	if err != nil {
		return nil, err
	}
	s, err := subscribe[T](ctx, b, subject, t.spec, t.spec.typeName, release)
	if err != nil {
		release()
	}
	return s, err
}

// subscribe makes the subscription; release is called once it has ended.
func subscribe[T any](ctx context.Context, b *Bus, subject string, spec Spec, typeName string, release func()) (*Subscription[T], error) {
	s := newStream[Message[T]](0, nil)
	d := newDelivery(func() {
		// Ended with the connection rather than by its owner: say so.
		var err error
		if b.connectionEnded() {
			err = fmt.Errorf("subscribe %s: %w", subject, nats.ErrConnectionClosed)
		}
		s.end(err)
		release()
	})
	// nats.go calls the handler from one goroutine per subscription, in
	// order; messages wait in its pending list while the reader is busy.
	// A payload sent in parts is put together here (the handler sees the
	// messages one at a time, in order).
	var asm assembler[T]
	ns, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		if !d.enter() {
			return
		}
		defer d.leave()
		if fromConsumer(m) {
			s.invalid.Add(1)
			b.drops.warn("dropped a message a stream consumer delivered: events come only from publishers", "subject", m.Subject)
			return
		}
		v, err := decode[T](m, spec, typeName)
		if err != nil {
			s.invalid.Add(1)
			b.drops.warn("dropped undecodable message", "subject", m.Subject, "err", err)
			return
		}
		if m.Header.Get(HeaderPart) != "" || len(asm.got) > 0 {
			whole, done, err := asm.add(m.Header, v)
			if err != nil {
				s.dropped.Add(1)
				b.log.Error("lost a message sent in parts", "subject", m.Subject, "err", err)
			}
			if !done {
				return
			}
			v = whole
		}
		select {
		case s.c <- Message[T]{Subject: m.Subject, Data: v}:
		case <-d.stop:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	overflow := func() {
		s.dropped.Add(1)
		b.log.Error("slow subscriber lost messages", "subject", subject)
	}
	end, err := b.register(ctx, ns, d, subPendingMsgs, subPendingBytes, overflow)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	s.stop = end
	return s, nil
}

// fromConsumer reports whether m was delivered by a JetStream push
// consumer rather than published: the server sets every such delivery's
// reply to an acknowledgement subject. A listener client may create a
// consumer and name its deliver subject, which the server does not check
// against the creator's permissions; this keeps the copies of stored
// messages it could aim at a component's subject from being taken as
// events or requests (Symphony's own consumers deliver to its inboxes,
// never to a topic's subject).
func fromConsumer(m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, jsAckPrefix)
}

// jsAckPrefix starts the reply subject of every message a JetStream
// consumer delivers.
const jsAckPrefix = "$JS.ACK."

// delivery is the ending protocol of a callback subscription. The handler
// runs on nats.go's goroutine and may block handing a message to its
// consumer; ending must unblock it (stop), remove the NATS subscription,
// and only then, with no handler running, call finish (which closes the
// consumer's channels: closing them under a running handler would make it
// send on a closed channel).
type delivery struct {
	stop   chan struct{} // closed when the subscription starts ending
	finish func()        // called once, when ended

	mu           sync.Mutex
	ending       bool // end has begun: handlers return at once
	unsubscribed bool // the NATS subscription is removed
	running      bool // a handler is between enter and leave
	finished     bool
	afterStop    func() bool // deregisters the context's AfterFunc
}

func newDelivery(finish func()) *delivery {
	return &delivery{stop: make(chan struct{}), finish: finish}
}

// enter starts a handler; false means the subscription is ending and the
// message is dropped (it would have been discarded by the unsubscribe).
func (d *delivery) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ending {
		return false
	}
	d.running = true
	return true
}

// leave ends a handler started by enter; the last one out of an ended
// subscription finishes it.
func (d *delivery) leave() {
	d.mu.Lock()
	d.running = false
	fin := d.unsubscribed && !d.finished
	d.finished = d.finished || fin
	d.mu.Unlock()
	if fin {
		d.done()
	}
}

// end stops the subscription: it unblocks a running handler, calls
// unsubscribe, and finishes once no handler runs. It is idempotent.
func (d *delivery) end(unsubscribe func()) {
	d.mu.Lock()
	if d.ending {
		d.mu.Unlock()
		return
	}
	d.ending = true
	close(d.stop)
	d.mu.Unlock()
	unsubscribe()
	d.mu.Lock()
	d.unsubscribed = true
	fin := !d.running && !d.finished
	d.finished = d.finished || fin
	d.mu.Unlock()
	if fin {
		d.done()
	}
}

func (d *delivery) done() {
	d.mu.Lock()
	stop := d.afterStop
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
	d.finish()
}

// register completes a callback subscription: it sets its pending limits,
// waits until the server has it (a message published after Subscribe or
// Serve returns is seen), and ties its end to ctx and to the connection.
// overflow is called for every slow-consumer episode. On an error the
// subscription is removed.
func (b *Bus) register(ctx context.Context, ns *nats.Subscription, d *delivery, msgs, bytes int, overflow func()) (end func(), err error) {
	// On failure, end the delivery too: a handler already blocked
	// handing a message over is released instead of waiting forever.
	fail := func(err error) (func(), error) {
		d.end(func() { _ = ns.Unsubscribe() })
		return nil, err
	}
	if err := ns.SetPendingLimits(msgs, bytes); err != nil {
		return fail(err)
	}
	if err := b.nc.Flush(); err != nil {
		return fail(err)
	}
	end = func() { d.end(func() { b.untrack(ns) }) }
	b.track(ns, trackedSub{end: end, overflow: overflow})
	stop := context.AfterFunc(ctx, end)
	d.mu.Lock()
	d.afterStop = stop
	d.mu.Unlock()
	return end, nil
}

// RemoteError is a failure reported by the responder of a request.
type RemoteError struct {
	Subject string
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", e.Subject, e.Message, e.Code)
}

// Ask sends req on the request subject for tokens and waits for the reply.
// Without a deadline on ctx, DefaultRequestTimeout applies. A failure
// reported by the responder comes back as a *RemoteError; no responder at
// all as ErrNoResponder.
func Ask[Req, Resp any](ctx context.Context, ep Endpoint, r Request[Req, Resp], req Req, tokens ...string) (Resp, error) {
	b := ep.bus()
	var zero Resp
	subject, err := r.Subject(tokens...)
	if err != nil {
		return zero, err
	}
	m, err := encode(subject, r.spec, r.spec.typeName, req)
	if err != nil {
		return zero, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if _, ok := any(*new(Resp)).(parted[Resp]); ok {
		return askParts(ctx, b, r, subject, m)
	}
	reply, err := b.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return zero, fmt.Errorf("%w for %s (is the %s component running?)", ErrNoResponder, subject, strings.Join(r.spec.Consumers, "/"))
		}
		return zero, fmt.Errorf("request %s: %w", subject, err)
	}
	if code := reply.Header.Get(HeaderErrorCode); code != "" {
		return zero, &RemoteError{Subject: subject, Code: code, Message: reply.Header.Get(HeaderError)}
	}
	return decode[Resp](reply, r.spec, r.spec.respType)
}

// Handler answers one request. A returned error is sent back to the asker as
// a RemoteError; an error that implements Code() string sets its code,
// otherwise the code is "error".
type Handler[Req, Resp any] func(ctx context.Context, subject string, req Req) (Resp, error)

// Serve answers requests on the topic's subjects matching filter tokens,
// one at a time, until ctx ends (ServeN answers several at once). Responders share a queue group named after
// the pattern, so with several instances each request is answered once.
// Serve returns once the subscription is registered; the returned channel is
// closed when serving has stopped.
func Serve[Req, Resp any](ctx context.Context, ep Endpoint, r Request[Req, Resp], h Handler[Req, Resp], filter ...string) (<-chan struct{}, error) {
	return ServeN(ctx, ep, r, 1, h, filter...)
}

// ServeN is Serve with up to n requests handled concurrently (a slow hook
// for one issue must not hold up another's). The returned channel is closed
// once serving has stopped and every handler in flight has returned.
func ServeN[Req, Resp any](ctx context.Context, ep Endpoint, r Request[Req, Resp], n int, h Handler[Req, Resp], filter ...string) (<-chan struct{}, error) {
	return ServeBounded(ctx, ep, r, n, subPendingMsgs, servePendingBytes, h, filter...)
}

// ServeBounded is ServeN with the responder's pending limits: at most
// pendingMsgs requests and pendingBytes bytes wait for a handler; beyond
// them requests are dropped (their askers time out) and the overflow is
// logged. A responder for outside askers (a run's MCP server) gets a
// subscription of its own with small limits, so a flood fills only it.
func ServeBounded[Req, Resp any](ctx context.Context, ep Endpoint, r Request[Req, Resp], n, pendingMsgs, pendingBytes int, h Handler[Req, Resp], filter ...string) (<-chan struct{}, error) {
	b := ep.bus()
	if n < 1 {
		n = 1
	}
	subject, err := r.Filter(filter...)
	if err != nil {
		return nil, err
	}
	ctx, release, err := ep.open(ctx)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	slots := make(chan struct{}, n)
	var inflight sync.WaitGroup
	// Handlers in flight are waited for off the delivery goroutine: an
	// ending subscription must not hold up the bus's teardown.
	d := newDelivery(func() {
		go func() {
			inflight.Wait()
			close(done)
			release()
		}()
	})
	ns, err := b.nc.QueueSubscribe(subject, "q."+strings.NewReplacer("{", "", "}", "").Replace(r.spec.Pattern), func(m *nats.Msg) {
		if !d.enter() {
			return
		}
		defer d.leave()
		if fromConsumer(m) {
			b.drops.warn("dropped a request a stream consumer delivered: requests come only from askers", "subject", m.Subject)
			return
		}
		select {
		case slots <- struct{}{}:
		case <-d.stop:
			return
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			serveOne(ctx, b, m, r.spec, h)
		})
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("serve %s: %w", subject, err)
	}
	overflow := func() {
		b.log.Error("responder overflowed; some requests were dropped (their askers time out)", "subject", subject)
	}
	if _, err := b.register(ctx, ns, d, pendingMsgs, pendingBytes, overflow); err != nil {
		return nil, fmt.Errorf("serve %s: %w", subject, err)
	}
	return done, nil
}

// serveOne decodes one request, calls the handler (a panic becomes an
// error reply, not a crash) and sends the reply or the error.
func serveOne[Req, Resp any](ctx context.Context, b *Bus, m *nats.Msg, spec Spec, h Handler[Req, Resp]) {
	if m.Reply == "" {
		b.drops.warn("request without reply subject dropped", "subject", m.Subject)
		return
	}
	var replies []*nats.Msg
	req, err := decode[Req](m, spec, spec.typeName)
	if err != nil {
		replies = []*nats.Msg{errorReply(m.Reply, CodeBadRequest, err)}
	} else {
		resp, herr := callHandler(ctx, m.Subject, req, h)
		if herr != nil {
			replies = []*nats.Msg{errorReply(m.Reply, CodeOf(herr), herr)}
		} else if replies, err = encodeParts(m.Reply, spec, spec.respType, resp, b.partLimit()); err != nil {
			replies = []*nats.Msg{errorReply(m.Reply, CodeEncode, err)}
		}
	}
	for _, reply := range replies {
		if err := b.nc.PublishMsg(reply); err != nil {
			b.log.Warn("reply failed", "subject", m.Subject, "err", err)
			// The asker gets why (a reply over the server's max payload,
			// say) instead of waiting for its timeout.
			_ = b.nc.PublishMsg(errorReply(m.Reply, CodeReplyFailed, fmt.Errorf("reply failed: %w", err)))
			return
		}
	}
}

func callHandler[Req, Resp any](ctx context.Context, subject string, req Req, h Handler[Req, Resp]) (resp Resp, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler for %s panicked: %v", subject, p)
		}
	}()
	return h(ctx, subject, req)
}

func errorReply(subject, code string, err error) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(HeaderErrorCode, code)
	// Header values are single-line.
	m.Header.Set(HeaderError, strings.Join(strings.Fields(err.Error()), " "))
	return m
}

// History iterates over the stored messages of a durable topic matching
// filter tokens, oldest first (each payload of a message that holds
// several, in order, with the message's sequence), and ends once it has caught up (no matching
// message pending); it does not wait for new ones. It reads with
// ReadStored and writes nothing but an ephemeral consumer. Undecodable
// messages are yielded as errors (the iteration continues if the caller
// continues).
func History[T any](ctx context.Context, ep Endpoint, t Topic[T], filter ...string) iter.Seq2[Message[T], error] {
	b := ep.bus()
	return func(yield func(Message[T], error) bool) {
		if t.spec.Stream == "" {
			yield(Message[T]{}, fmt.Errorf("history: %s is not stored in a stream", t.spec.Pattern))
			return
		}
		subject, err := t.Filter(filter...)
		if err != nil {
			yield(Message[T]{}, err)
			return
		}
		err = ReadStored(ctx, b, t.spec.Stream, subject, func(m *nats.Msg, at StoredMeta) error {
			if err := checkHeaders(m, t.spec, t.spec.typeName); err != nil {
				if !yield(Message[T]{Subject: m.Subject, Raw: m.Data, Seq: at.Seq, Time: at.Time}, err) {
					return errStopped
				}
				return nil
			}
			// A message of a batched topic may hold several payloads: each
			// is yielded with the message's sequence.
			stopped := false
			err := eachPayload(t.spec, m.Data, func(data []byte, _ int) {
				if stopped {
					return
				}
				var v T
				derr := unmarshalPayload(m.Subject, t.spec.typeName, data, &v)
				stopped = !yield(Message[T]{Subject: m.Subject, Data: v, Raw: data, Seq: at.Seq, Time: at.Time}, derr)
			})
			if err != nil && !stopped {
				stopped = !yield(Message[T]{Subject: m.Subject, Raw: m.Data, Seq: at.Seq, Time: at.Time}, fmt.Errorf("%w on %s: %v", ErrDecode, m.Subject, err))
			}
			if stopped {
				return errStopped
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopped) {
			yield(Message[T]{}, fmt.Errorf("history %s: %w", subject, err))
		}
	}
}

// Follow hands fn every stored message of a durable topic matching filter
// tokens from stream sequence from on (0: the first), decoded, then each
// new one as it is stored, until ctx ends or stop is called: History that
// does not end. fn runs on one goroutine, one message at a time, in stream
// order, and may block (back-pressure, see FollowStored). A message that
// cannot be decoded is handed on with its error and its sequence, so a
// reader keeping a cursor moves past it.
func Follow[T any](ctx context.Context, ep Endpoint, t Topic[T], from uint64, fn func(Message[T], error), filter ...string) (stop func(), err error) {
	if t.spec.Stream == "" {
		return nil, fmt.Errorf("follow: %s is not stored in a stream", t.spec.Pattern)
	}
	subject, err := t.Filter(filter...)
	if err != nil {
		return nil, err
	}
	return FollowStored(ctx, ep, t.spec.Stream, subject, from, func(m *nats.Msg, at StoredMeta) {
		bad := Message[T]{Subject: m.Subject, Raw: m.Data, Seq: at.Seq, Time: at.Time}
		if err := checkHeaders(m, t.spec, t.spec.typeName); err != nil {
			fn(bad, err)
			return
		}
		err := eachPayload(t.spec, m.Data, func(data []byte, _ int) {
			var v T
			derr := unmarshalPayload(m.Subject, t.spec.typeName, data, &v)
			fn(Message[T]{Subject: m.Subject, Data: v, Raw: data, Seq: at.Seq, Time: at.Time}, derr)
		})
		if err != nil {
			fn(bad, fmt.Errorf("%w on %s: %v", ErrDecode, m.Subject, err))
		}
	})
}

// historyStall fails a stored read that receives nothing for that long:
// the server answers every pull request at once, with messages or a
// status, so silence means it is gone or stuck.
const historyStall = 2 * time.Second

// readerInactivity is how soon the server drops a reader's consumer that
// was left behind (a client that vanished); readers also delete theirs
// when done.
const readerInactivity = 30 * time.Second

// orderedConsumer creates an ephemeral ordered consumer and returns a
// cleanup that deletes it from the server (stopping a consumer does not):
// readers come and go with every page view, and their consumers must not
// pile up.
func orderedConsumer(ctx context.Context, stream jetstream.Stream, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, func(), error) {
	cfg.InactiveThreshold = readerInactivity
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		info := cons.CachedInfo()
		if info == nil || info.Name == "" {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, info.Name) // the inactivity threshold is the backstop
	}
	return cons, cleanup, nil
}

// FollowStored hands fn every message of stream matching filter ("" for
// every subject) from stream sequence from on (0: the first), then each
// new one as it is stored, until ctx ends or stop is called. fn runs on one
// goroutine, one message at a time, in stream order; while it blocks, the
// consumer holds at most followPullMessages messages: a slow reader
// applies back-pressure and loses nothing. The ordered consumer behind it
// recreates itself after a connection hiccup and is deleted by stop (its
// inactivity threshold is the backstop). It writes nothing else. A caller
// whose fn may block on a reader ends that wait itself when ctx ends.
func FollowStored(ctx context.Context, ep Endpoint, stream, filter string, from uint64, fn func(*nats.Msg, StoredMeta)) (stop func(), err error) {
	b := ep.bus()
	ctx, release, err := ep.open(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
			release()
		}
	}()
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var cfg jetstream.OrderedConsumerConfig
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, cleanup, err := orderedConsumer(ctx, s, cfg)
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(jm jetstream.Msg) {
		md, err := jm.Metadata()
		if err != nil {
			b.log.Warn("follow: message without metadata", "subject", jm.Subject(), "err", err)
			return
		}
		m := &nats.Msg{Subject: jm.Subject(), Header: jm.Headers(), Data: jm.Data()}
		fn(m, StoredMeta{Seq: md.Sequence.Stream, Time: md.Timestamp, Pending: md.NumPending})
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrNoHeartbeat) || ctx.Err() != nil {
			return // the ordered consumer recreates itself
		}
		b.log.Debug("follow: consumer notice", "stream", stream, "filter", filter, "err", err)
	}), jetstream.PullMaxMessages(followPullMessages))
	if err != nil {
		cleanup()
		return nil, err
	}
	// The follow ends with ctx (through a Client, with its Close too);
	// stop ends it early, and cancel then lets go of the hook.
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cc.Stop()
			cleanup()
			cancel()
			release()
		})
	}
	context.AfterFunc(ctx, stop)
	return stop, nil
}

// followPullMessages bounds what a follower's consumer pulls ahead of its
// reader, in messages: a follower whose reader waits (a dashboard client
// that reads slowly) holds at most this many, about 2 MiB of agent events
// stored 64 KiB to a message. It was a byte budget of twice the largest
// message (16 MiB for each of a follower's three consumers: a follow from
// the start of a long run, the run page's stream without a cursor, pinned
// 48 MiB per client); a count cannot stall on one large message the way
// a byte budget smaller than it does. The library's default is 500.
const followPullMessages = 32
