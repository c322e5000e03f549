package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stored history (a run's events, the run summaries, any durable topic's
// History) is read by ReadStored: an ephemeral consumer that acknowledges nothing, pulled in
// large batches, one request in flight, on a plain subscription. The client library's ordered
// consumer iterator does the same job with a timer per message (its
// heartbeat check and the iterator's wait), a parsed metadata struct per
// message and small batches; on a 100,000-event run those were a third of
// the reading goroutine's time. JetStream direct gets, the other way to
// read without consumer state, cost more here: the server rewrites the
// headers of every stored message that has any (ours all do) through
// net/http's header writer, six times per message.
const (
	// readBatch is how many messages one pull request asks for and
	// readMaxBytes how many bytes at most. Both stay far below what one
	// subscription may hold before the
	// client drops messages (64Ki messages in a synchronous
	// subscription's channel, 64 MiB).
	readBatch    = 16384
	readMaxBytes = 8 << 20
	// apiNext is the pull request subject prefix; the stream and the
	// consumer name follow.
	apiNext = "$JS.API.CONSUMER.MSG.NEXT."
)

// StoredMeta is where a stored message sits in its stream, as ReadStored
// and FollowStored hand it on.
type StoredMeta struct {
	Seq  uint64
	Time time.Time
	// Pending is how many matching messages the stream held after this
	// one when it was delivered: with the first message, a size hint.
	Pending uint64
}

// pullRequest is the body of a pull request. NoWait ends it as soon as no
// message is left to deliver (a 404 status) instead of waiting for more.
type pullRequest struct {
	Batch    int  `json:"batch"`
	MaxBytes int  `json:"max_bytes"`
	NoWait   bool `json:"no_wait"`
}

// errStopped ends a read whose caller wants no more messages.
var errStopped = errors.New("read stopped by the caller")

// errReadGap says a pulled message went missing between the server and
// this client; ReadStored reads again from the last message it handed on.
var errReadGap = errors.New("stored read: a message went missing")

// ReadStored hands fn every message of stream matching filter ("" for
// every subject), oldest first, with its stream sequence and time. It reads
// what is stored when it starts and does not wait for more; messages
// purged while it runs are not read. fn may keep the message (each one has
// its own buffers). It returns fn's error, or an error if the server stops
// answering. It writes nothing but an ephemeral consumer, deleted at the
// end (the inactivity threshold is the backstop). It is the kernel's one
// way to read history in bulk: History builds on it, and so do the
// readers of run history above the kernel (package runlog).
func ReadStored(ctx context.Context, ep Endpoint, stream, filter string, fn func(*nats.Msg, StoredMeta) error, opts ...ReadOption) error {
	b := ep.bus()
	ctx, release, err := ep.open(ctx)
	if err != nil {
		return err
	}
	defer release()
	r := storedReader{b: b, stream: stream, filter: filter, fn: fn}
	for _, opt := range opts {
		opt(&r)
	}
	return r.read(ctx)
}

// ReadOption changes how ReadStored reads.
type ReadOption func(*storedReader)

// ReadInPieces makes ReadStored hold at most about messages messages and
// bytes bytes of the stream at a time (a pull asks for that much; a
// message larger than bytes is still read, alone), where it otherwise asks
// for 16,384 messages or 8 MiB at once. A reader that serves a slow client
// (fn blocks) pins no more than that. Values below 1 keep the defaults.
func ReadInPieces(messages, bytes int) ReadOption {
	return func(r *storedReader) {
		if messages > 0 {
			r.batch, r.queue = messages, 2*messages
		}
		if bytes > 0 {
			r.maxBytes, r.growOnce = bytes, true
		}
	}
}

// storedReader is one ReadStored call. last and left survive a restart
// after a gap: the next consumer starts after last, and reads at most left
// more messages (the count stored when the read began).
type storedReader struct {
	b              *Bus
	stream, filter string
	fn             func(*nats.Msg, StoredMeta) error
	// batch, maxBytes and pendingLimit override readBatch, readMaxBytes
	// and the subscription's pending message limit (tests end requests
	// early and make messages go missing with them).
	batch, maxBytes, pendingLimit int
	// growOnce lets a read with a small maxBytes take a message larger
	// than it: that one message is asked for alone, with readMaxBytes
	// (a small budget bounds what a slow reader buffers; it must not
	// stop the read at the first large message).
	growOnce bool
	// queue, when not 0, is the length of the subscription's own queue
	// (a channel subscription): a synchronous subscription's is 64Ki
	// message pointers, 512 KiB allocated whole, which a reader asking
	// for a few dozen messages at a time (ReadInPieces: runlog.Each, one
	// per dashboard client and stream) does not need.
	queue int
	ch    chan *nats.Msg

	started  bool
	last     uint64 // stream sequence of the last message handed to fn
	left     uint64 // messages still to read
	restarts int    // consumers started again after a gap

	// Of the current consumer: its replies arrive on inbox.<request>.
	sub      *nats.Subscription
	inbox    string
	requests int
}

// read runs consumers until the read is complete, starting a new one
// after the last message handed on whenever one went missing.
func (r *storedReader) read(ctx context.Context) error {
	for {
		err := r.run(ctx)
		if !errors.Is(err, errReadGap) {
			return err
		}
		r.restarts++
		r.b.log.Debug("stored read: resuming after a gap", "stream", r.stream, "filter", r.filter, "after", r.last)
	}
}

// run reads with one consumer, on its own subscription (so nothing of an
// abandoned consumer is mistaken for its messages), until the end, an
// error, or a gap (errReadGap). The subscription outlives the consumer:
// the consumer is deleted first, then the subscription ends.
func (r *storedReader) run(ctx context.Context) error {
	sub, err := r.subscribe()
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	info, err := r.createConsumer(ctx)
	if err != nil {
		return err
	}
	defer r.deleteConsumer(ctx, info.Name)
	if !r.started {
		r.started, r.left = true, info.NumPending
	}
	p := r.newPuller(info.Name)
	return r.pull(ctx, &p)
}

// subscribe opens the consumer's reply subscription on a new inbox, before
// the consumer exists so that none of its replies is missed. With queue it
// is a channel subscription of that length (see storedReader.queue). The
// caller unsubscribes it; a subscription whose pending limit cannot be set
// is unsubscribed here.
func (r *storedReader) subscribe() (*nats.Subscription, error) {
	r.inbox, r.requests = r.b.nc.NewInbox(), 0
	var (
		sub *nats.Subscription
		err error
	)
	if r.queue > 0 {
		r.ch = make(chan *nats.Msg, r.queue)
		sub, err = r.b.nc.ChanSubscribe(r.inbox+".*", r.ch)
	} else {
		sub, err = r.b.nc.SubscribeSync(r.inbox + ".*")
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.stream, err)
	}
	if r.pendingLimit > 0 {
		if err := sub.SetPendingLimits(r.pendingLimit, -1); err != nil {
			_ = sub.Unsubscribe()
			return nil, fmt.Errorf("read %s: %w", r.stream, err)
		}
	}
	r.sub = sub
	return sub, nil
}

// createConsumer creates the read's ephemeral consumer: in memory,
// acknowledging nothing (a read changes no state), gone after
// readerInactivity if the reader dies without deleting it, and starting
// after the last message handed on when the read resumes after a gap.
func (r *storedReader) createConsumer(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: readerInactivity,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if r.filter != "" {
		cfg.FilterSubject = r.filter
	}
	if r.last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.last+1
	}
	cons, err := r.b.js.CreateConsumer(ctx, r.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.stream, err)
	}
	return cons.CachedInfo(), nil
}

// deleteConsumer deletes the read's consumer, even when ctx has ended (the
// read was cancelled): it would otherwise hold its place in the stream
// until the inactivity threshold. A server that does not answer in 2s
// leaves it to that backstop.
func (r *storedReader) deleteConsumer(ctx context.Context, name string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = r.b.js.DeleteConsumer(dctx, r.stream, name)
}

// newPuller is the puller of consumer name, with the read's batch and byte
// budget (readBatch and readMaxBytes unless ReadInPieces set others).
func (r *storedReader) newPuller(name string) puller {
	batch := uint64(readBatch)
	if r.batch > 0 {
		batch = uint64(r.batch)
	}
	p := puller{r: r, subject: apiNext + r.stream + "." + name, batch: batch, maxBytes: readMaxBytes}
	if r.maxBytes > 0 {
		p.maxBytes = r.maxBytes
	}
	return p
}

// pull asks for messages and hands them on until the read has all it
// counted on, the stream has nothing more, an error, or a gap.
func (r *storedReader) pull(ctx context.Context, p *puller) error {
	for r.left > 0 {
		// One request in flight at a time: with two waiting, nats-server
		// (waitQueue.pop) serves them alternately, message by message,
		// and a delivered message does not say which request it answers,
		// so the count each still owes could not be kept. A batch is
		// 16,384 messages; the wait at each boundary is one round trip.
		if len(p.queue) == 0 {
			if err := p.ask(); err != nil {
				return err
			}
		}
		if len(p.queue) == 0 {
			return nil // nothing left to ask for
		}
		m, err := r.next(ctx)
		if err != nil {
			return err
		}
		var done bool
		if m.Reply == "" {
			done, err = p.status(m)
		} else {
			done, err = r.deliver(p, m)
		}
		if err != nil || done {
			return err
		}
	}
	return nil
}

// deliver hands one stored message to fn; it reports whether the read is
// complete (the stream held nothing after it). A message that is not the
// next one the requests were owed is a gap.
func (r *storedReader) deliver(p *puller, m *nats.Msg) (bool, error) {
	ack, ok := parseAckReply(m.Reply)
	if !ok {
		return false, fmt.Errorf("read %s after %d: unexpected reply subject %q", r.stream, r.last, m.Reply)
	}
	if !p.received(ack.consumerSeq) {
		return false, errReadGap // lost on the way, or more than was asked for
	}
	if err := r.fn(m, StoredMeta{Seq: ack.streamSeq, Time: time.Unix(0, ack.time), Pending: ack.pending}); err != nil {
		return false, err
	}
	r.last = ack.streamSeq
	r.left--
	return ack.pending == 0, nil
}

// puller keeps the pull requests of one consumer: the ones in flight, in
// the order made, and how many messages they still owe.
type puller struct {
	r         *storedReader
	subject   string
	batch     uint64
	maxBytes  int
	queue     []pullInFlight
	asked     uint64 // messages requested and not yet received
	delivered uint64 // consumer sequence of the last message received
	// large: the next request asks for one message with readMaxBytes
	// (see storedReader.growOnce).
	large bool
}

type pullInFlight struct {
	reply     string
	want, got uint64
	maxBytes  int
}

// ask requests the next batch, never more than the read still needs.
func (p *puller) ask() error {
	want, maxBytes := min(p.r.left-p.asked, p.batch), p.maxBytes
	if p.large {
		want, maxBytes, p.large = min(want, 1), max(maxBytes, readMaxBytes), false
	}
	if want == 0 {
		return nil
	}
	p.r.requests++
	reply := p.r.inbox + "." + strconv.Itoa(p.r.requests)
	body, err := json.Marshal(pullRequest{Batch: int(want), MaxBytes: maxBytes, NoWait: true})
	if err != nil {
		return fmt.Errorf("read %s: %w", p.r.stream, err)
	}
	if err := p.r.b.nc.PublishRequest(p.subject, reply, body); err != nil {
		return fmt.Errorf("read %s: %w", p.r.stream, err)
	}
	p.queue = append(p.queue, pullInFlight{reply: reply, want: want, maxBytes: maxBytes})
	p.asked += want
	return nil
}

// received counts the message of consumer sequence seq against the
// oldest request in flight (messages answer the requests in the order they
// were made). False, counting nothing, when it is not the next message
// owed: one was lost on the way, or more came than was asked for.
func (p *puller) received(seq uint64) bool {
	if seq != p.delivered+1 || len(p.queue) == 0 {
		return false
	}
	p.delivered = seq
	if p.queue[0].got++; p.queue[0].got == p.queue[0].want {
		p.queue = p.queue[1:]
	}
	p.asked--
	return true
}

// status handles a status reply; it reports whether the read is complete.
// A request that ends before its count (nothing left, or its byte
// budget spent) owes nothing more; a status for a request already
// answered in full (a batch completed with bytes to spare) is ignored.
func (p *puller) status(m *nats.Msg) (bool, error) {
	i := slices.IndexFunc(p.queue, func(q pullInFlight) bool { return q.reply == m.Subject })
	if i < 0 {
		return false, nil
	}
	status, desc := m.Header.Get("Status"), m.Header.Get("Description")
	switch {
	case status == "100":
		return false, nil
	case status == "404" || status == "408":
		if i == 0 {
			return true, nil // nothing left: purged while reading
		}
	case status == "409" && (desc == "Message Size Exceeds MaxBytes" || desc == "Batch Completed"):
		if i == 0 && p.queue[0].got == 0 && p.r.growOnce && p.queue[0].maxBytes < readMaxBytes {
			p.large = true // ask for that message alone, with room
		} else if i == 0 && p.queue[0].got == 0 {
			// Asking again would get the same answer forever.
			return false, fmt.Errorf("read %s after %d: a message is larger than %d bytes", p.r.stream, p.r.last, p.maxBytes)
		}
	default:
		return false, fmt.Errorf("read %s after %d: %s %s", p.r.stream, p.r.last, status, desc)
	}
	p.asked -= p.queue[i].want - p.queue[i].got
	p.queue = slices.Delete(p.queue, i, i+1)
	return false, nil
}

// readPoll is how often a reader waiting for a reply checks whether the
// client dropped one (its pending limits): the server answers a pull
// request at once, so a wait is short unless something went missing.
const readPoll = 100 * time.Millisecond

// next waits for the next reply. A reply the client dropped (NextMsg
// says so once, Dropped counts them) is errReadGap: the read resumes
// after the last message handed on. No reply for historyStall is an
// error.
func (r *storedReader) next(ctx context.Context) (*nats.Msg, error) {
	deadline := time.Now().Add(historyStall)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := r.nextMsg(ctx)
		if err == nil {
			return m, nil
		}
		if errors.Is(err, nats.ErrSlowConsumer) {
			return nil, errReadGap
		}
		if !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("read %s after %d: %w", r.stream, r.last, err)
		}
		if n, _ := r.sub.Dropped(); n > 0 {
			return nil, errReadGap
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("read %s after %d: no reply for %v", r.stream, r.last, historyStall)
		}
	}
}

// nextMsg is the subscription's next message, waiting at most readPoll
// (nats.ErrTimeout).
func (r *storedReader) nextMsg(ctx context.Context) (*nats.Msg, error) {
	if r.ch == nil {
		return r.sub.NextMsg(readPoll)
	}
	select {
	case m := <-r.ch:
		return m, nil
	default:
	}
	t := time.NewTimer(readPoll)
	defer t.Stop()
	select {
	case m := <-r.ch:
		return m, nil
	case <-t.C:
		return nil, nats.ErrTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ackFields are the delivery facts a JetStream message's reply subject
// carries.
type ackFields struct {
	streamSeq, consumerSeq, pending uint64
	time                            int64
}

// parseAckReply reads an acknowledgement subject without allocating:
// $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>,
// or the v2 form with <domain>.<account hash> after ACK (and possibly
// more tokens at the end).
func parseAckReply(s string) (ackFields, bool) {
	rest, ok := strings.CutPrefix(s, jsAckPrefix)
	if !ok {
		return ackFields{}, false
	}
	var tok [12]string
	n := 0
	for n < len(tok) {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			tok[n] = rest
			n++
			break
		}
		tok[n], rest = rest[:i], rest[i+1:]
		n++
	}
	var f []string
	switch {
	case n == 7: // v1
		f = tok[2:7]
	case n >= 9: // v2
		f = tok[4:9]
	default:
		return ackFields{}, false
	}
	var v [5]uint64
	for i, t := range f {
		x, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			return ackFields{}, false
		}
		v[i] = x
	}
	return ackFields{streamSeq: v[1], consumerSeq: v[2], time: int64(v[3]), pending: v[4]}, true
}
