package runlog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

// Event is one stored event of a run: a lifecycle event (RUNS), an
// agent event (TURNS) or a hook event (HOOKS). Marshalled, it is the JSONL
// audit export format of `symphony replay --jsonl`, one object per line;
// exactly one of Run, Turn and Hook is set.
type Event struct {
	// Stream and Seq locate the message in JetStream.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	// Index is the event's place in its stored message when the message
	// holds several agent events (from 0; see bus/batch.go).
	Index int `json:"index,omitempty"`
	// Subject is the subject it was published on.
	Subject string `json:"subject"`
	// Type is the payload's Go type (the Symphony-Type header).
	Type string    `json:"type"`
	At   time.Time `json:"at"`
	// Event is the payload as stored.
	Event json.RawMessage `json:"event"`

	Run  *bus.RunEvent  `json:"-"`
	Turn *bus.TurnEvent `json:"-"`
	Hook *bus.HookEvent `json:"-"`

	// Unreadable marks, in a live follow only, a stored message of which
	// no event could be decoded (logged): it carries no event and is for
	// the reader's cursor, which it moves past the message, not for
	// showing.
	Unreadable bool `json:"-"`

	// more: further events of the same stored message follow this one.
	more bool
}

// Cursor says how far into a run's stored events a reader has come: the
// last stream sequence seen in each of the three streams. The zero cursor
// is the start. A stored message of agent events can hold several events
// (see bus/batch.go): TurnsPart, when not 0, says that only the first
// TurnsPart events of message Turns were seen.
type Cursor struct {
	Runs, Turns, Hooks uint64
	TurnsPart          int
}

// maxCursorPart bounds the part a cursor may name (a batch holds at most
// maxTurnBatch events; older or newer builds may differ, so with room).
const maxCursorPart = 1 << 20

// turnsBefore orders positions in the turns stream: (seq, part), where
// part 0 is the whole message.
func turnsBefore(seq uint64, part int, seq2 uint64, part2 int) bool {
	if seq != seq2 {
		return seq < seq2
	}
	return part != 0 && (part2 == 0 || part < part2)
}

// Advance moves the cursor past ev.
func (c *Cursor) Advance(ev Event) {
	switch ev.Stream {
	case bus.StreamRuns:
		c.Runs = max(c.Runs, ev.Seq)
	case bus.StreamTurns:
		part := 0
		if ev.more {
			part = ev.Index + 1
		}
		if turnsBefore(c.Turns, c.TurnsPart, ev.Seq, part) {
			c.Turns, c.TurnsPart = ev.Seq, part
		}
	case bus.StreamHooks:
		c.Hooks = max(c.Hooks, ev.Seq)
	}
}

// Includes reports whether the cursor has passed ev (a reader at the
// cursor has seen it).
func (c Cursor) Includes(ev Event) bool {
	switch ev.Stream {
	case bus.StreamRuns:
		return ev.Seq <= c.Runs
	case bus.StreamTurns:
		return ev.Seq < c.Turns || ev.Seq == c.Turns && (c.TurnsPart == 0 || ev.Index < c.TurnsPart)
	case bus.StreamHooks:
		return ev.Seq <= c.Hooks
	}
	return false
}

// String is the cursor as the SSE event id: "runs.turns.hooks", with
// ".part" after it while inside a message of several agent events.
func (c Cursor) String() string {
	var b [84]byte
	s := strconv.AppendUint(b[:0], c.Runs, 10)
	s = strconv.AppendUint(append(s, '.'), c.Turns, 10)
	s = strconv.AppendUint(append(s, '.'), c.Hooks, 10)
	if c.TurnsPart != 0 {
		s = strconv.AppendInt(append(s, '.'), int64(c.TurnsPart), 10)
	}
	return string(s)
}

// ParseCursor reads a cursor written by String. It accepts nothing else.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.Split(s, ".")
	if len(s) > 84 || len(parts) < 3 || len(parts) > 4 {
		return Cursor{}, fmt.Errorf("cursor %q: want runs.turns.hooks or runs.turns.hooks.part", truncate(s, 32))
	}
	var v [4]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Cursor{}, fmt.Errorf("cursor: part %d (%q) is not a sequence number", i+1, truncate(p, 20))
		}
		v[i] = n
	}
	if len(parts) == 4 && (v[3] == 0 || v[3] > maxCursorPart) {
		return Cursor{}, fmt.Errorf("cursor: part 4 (%d) is not an event count from 1 to %d", v[3], maxCursorPart)
	}
	if len(parts) == 4 && v[1] == 0 {
		return Cursor{}, errors.New("cursor: part 4 (events seen of a message) needs a message in part 2")
	}
	return Cursor{Runs: v[0], Turns: v[1], Hooks: v[2], TurnsPart: int(v[3])}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Timeline reads every stored event of a run, merged in time order
// (stream order within a stream), and the cursor just past them. It writes
// nothing. A run with no stored events gives an empty timeline.
func Timeline(ctx context.Context, b *bus.Bus, runID string) ([]Event, Cursor, error) {
	var cur Cursor
	runs, err := collect(ctx, b, bus.RunEvents, runID, &cur.Runs, func(e *Event, ev *bus.RunEvent) { e.At, e.Run = ev.At, ev })
	if err != nil {
		return nil, Cursor{}, err
	}
	turns, err := collect(ctx, b, bus.TurnEvents, runID, &cur.Turns, func(e *Event, ev *bus.TurnEvent) { e.At, e.Turn = ev.At, ev })
	if err != nil {
		return nil, Cursor{}, err
	}
	hooks, err := collect(ctx, b, bus.WorkspaceHookEvents, runID, &cur.Hooks, func(e *Event, ev *bus.HookEvent) { e.At, e.Hook = ev.At, ev })
	if err != nil {
		return nil, Cursor{}, err
	}
	return mergeTimeline(runs, turns, hooks), cur, nil
}

// Sort orders events by time, keeping stream order among equal
// times.
func Sort(events []Event) {
	slices.SortStableFunc(events, compareTimeline)
}

func compareTimeline(a, b Event) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return cmp.Compare(a.Stream, b.Stream)
}

// mergeTimeline is Sort of the parts' concatenation, each part
// being one stream's events in stream order. Each part is almost always
// in time order already, so merging them moves every event once where a
// stable sort of the whole would move the long turn stream many times
// over; a run's events in one stream only come back as they are.
func mergeTimeline(parts ...[]Event) []Event {
	n, nonEmpty := 0, 0
	var only []Event
	for _, p := range parts {
		if !slices.IsSortedFunc(p, compareTimeline) {
			Sort(p)
		}
		if len(p) > 0 {
			n, nonEmpty, only = n+len(p), nonEmpty+1, p
		}
	}
	if nonEmpty <= 1 {
		return only
	}
	out := make([]Event, 0, n)
	for len(out) < n {
		best := -1
		for i, p := range parts {
			if len(p) > 0 && (best < 0 || compareTimeline(p[0], parts[best][0]) < 0) {
				best = i
			}
		}
		out = append(out, parts[best][0])
		parts[best] = parts[best][1:]
	}
	return out
}

// collect reads the stored events of one topic for a run in stream order
// and records the last stream sequence in last; fill sets each entry's
// time and typed event. The typed events are decoded straight into
// slices (the entries point into them), the first sized by the first
// message's pending count, so a long run costs a few large allocations,
// not one per event. When a slice is full the next events go into a new
// one, as large as all decoded so far, instead of a copy of the old one:
// a run stored 64 events to a message outgrows a size taken from its
// messages, and the copies were a fifth of its replay. An event this
// build cannot read (a newer schema, damage) is logged and skipped: it
// must not hide the rest of the run.
func collect[T any](ctx context.Context, b *bus.Bus, topic bus.Topic[T], runID string, last *uint64, fill func(*Event, *T)) ([]Event, error) {
	subject, err := topic.Filter(runID)
	if err != nil {
		return nil, err
	}
	var (
		out  []Event
		vals []T
	)
	err = bus.ReadStored(ctx, b, topic.Spec().Stream, subject, func(m *nats.Msg, at bus.StoredMeta) error {
		if out == nil {
			n := int(min(at.Pending+1, 1<<20)) // a size hint, not a promise
			out, vals = make([]Event, 0, n), make([]T, 0, n)
		}
		*last = max(*last, at.Seq)
		if err := topic.CheckHeaders(m); err != nil {
			b.Logger().Warn("timeline: skipped undecodable event", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "err", err)
			return nil
		}
		first := len(out)
		err := topic.EachPayload(m.Data, func(data []byte, index int) {
			if len(vals) == cap(vals) {
				// The entries so far point into the full slice, which
				// stays theirs; later ones go into a new one.
				vals = make([]T, 0, max(len(out), 1024))
			}
			vals = append(vals, *new(T))
			v := &vals[len(vals)-1]
			if err := topic.DecodePayload(m.Subject, data, v); err != nil {
				vals = vals[:len(vals)-1]
				b.Logger().Warn("timeline: skipped undecodable event", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "index", index, "err", err)
				return
			}
			e := Event{Stream: topic.Spec().Stream, Seq: at.Seq, Index: index, Subject: m.Subject, Type: topic.Spec().TypeName(), Event: data}
			fill(&e, v)
			out = append(out, e)
		})
		if err != nil {
			b.Logger().Warn("timeline: skipped the unreadable rest of a stored message", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "err", err)
		}
		// Every event read from the message but its last has more after
		// it: a cursor at the last one has passed the whole message.
		for i := first; i < len(out)-1; i++ {
			out[i].more = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("timeline of %s: %w", runID, err)
	}
	return out, nil
}

// followBuffer is how many events a follow holds for a reader that has
// not taken them yet; beyond it the consumers wait (each holds a few
// pulled messages, see bus.FollowStored). It is what the run page's stream
// held between the follow and its writer.
const followBuffer = 256

// Follow streams a run's stored events that come after the cursor, then
// every new one as it is stored, until ctx ends or the stream is closed
// (Err is then nil); the consumers recreate themselves after a connection
// hiccup, so it does not end on its own. Events of different streams
// arrive in the order they are read, each stream in its own order.
// Back-pressure: a reader that does not read holds the consumers, nothing
// is dropped. It writes nothing and keeps no state on the server beyond
// ephemeral consumers, which end with the stream. A context that ends
// while Follow sets up gives a stream that has ended, not an error.
func Follow(ctx context.Context, b *bus.Bus, runID string, after Cursor, opts ...Option) (*bus.Stream[Event], error) {
	var o followOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	s, send, end := bus.NewStream[Event](followBuffer, cancel)
	// A send waits for the reader or for Close: the context's end closes
	// the stream, which stops the sends waiting.
	context.AfterFunc(ctx, s.Close)
	g := &senders{send: send}
	var stops []func()
	finish := func(err error) {
		cancel()
		g.close()
		for _, stop := range stops {
			stop()
		}
		end(err)
	}
	start := func(stop func(), err error) error {
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		return nil
	}
	err := start(follow(ctx, b, bus.RunEvents, runID, after.Runs, 0, false, g, func(e *Event, ev *bus.RunEvent) { e.At, e.Run = ev.At, ev }))
	if err == nil {
		err = start(follow(ctx, b, bus.TurnEvents, runID, after.Turns, after.TurnsPart, o.rawTurns, g, func(e *Event, ev *bus.TurnEvent) { e.At, e.Turn = ev.At, ev }))
	}
	if err == nil {
		err = start(follow(ctx, b, bus.WorkspaceHookEvents, runID, after.Hooks, 0, false, g, func(e *Event, ev *bus.HookEvent) { e.At, e.Hook = ev.At, ev }))
	}
	switch {
	case err != nil && ctx.Err() != nil:
		finish(nil) // ended while setting up: not a failure
	case err != nil:
		finish(err)
		return nil, err
	default:
		go func() {
			<-ctx.Done()
			finish(nil)
		}()
	}
	return s, nil
}

// senders lets the consumers' callbacks send on a followed run's stream
// until it ends: close turns later callbacks away and waits for those in
// flight (their sends return once the stream is stopping), so nothing
// sends on a stream that has ended.
type senders struct {
	send func(Event) bool

	mu     sync.Mutex
	closed bool
	busy   sync.WaitGroup
}

// enter reports whether a callback may send; leave must follow a true.
func (g *senders) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.busy.Add(1)
	return true
}

func (g *senders) leave() { g.busy.Done() }

func (g *senders) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.busy.Wait()
}

// Option changes what Follow delivers.
type Option func(*followOptions)

type followOptions struct{ rawTurns bool }

// RawTurns makes Follow deliver agent events undecoded: Turn stays nil,
// Event and At are set and Event is checked to be JSON. A reader that only
// passes the stored payload on (the API's event stream) would otherwise
// decode every agent event for nothing.
func RawTurns() Option { return func(o *followOptions) { o.rawTurns = true } }

// follow starts an ordered consumer on one topic of a run from the message
// after seq and sends decoded events through out (raw: only checked, with
// the time read off, and fill not called). Back-pressure: the consumer
// callback blocks while the stream is full, so nothing is dropped.
func follow[T any](ctx context.Context, b *bus.Bus, topic bus.Topic[T], runID string, seq uint64, skip int, raw bool, out *senders, fill func(*Event, *T)) (func(), error) {
	subject, err := topic.Filter(runID)
	if err != nil {
		return nil, err
	}
	// skipSeq is the message whose first skip events were seen already.
	var from, skipSeq uint64
	switch {
	case skip > 0:
		from, skipSeq = seq, seq
	case seq > 0:
		from = seq + 1
	}
	stop, err := bus.FollowStored(ctx, b, topic.Spec().Stream, subject, from, func(nm *nats.Msg, at bus.StoredMeta) {
		if !out.enter() {
			return // the stream has ended
		}
		defer out.leave()
		seq := at.Seq
		// unreadable stands for a stored message of which nothing could be
		// delivered: it moves a reader's cursor past the message (a stream
		// waiting for the run's end would wait for it for ever) and is
		// itself shown nowhere.
		unreadable := Event{Stream: topic.Spec().Stream, Seq: seq, Subject: nm.Subject, Type: topic.Spec().TypeName(), Unreadable: true}
		if err := topic.CheckHeaders(nm); err != nil {
			b.Logger().Warn("follow: skipped undecodable event", "subject", nm.Subject, "seq", seq, "err", err)
			out.send(unreadable)
			return
		}
		// The message's events are decoded first, so that only the last
		// one delivered says no more follow (see Cursor.Advance).
		var evs []Event
		failed := false // an event of the message could not be decoded
		if n, err := strconv.Atoi(nm.Header.Get(bus.HeaderEvents)); err == nil && n > 1 {
			evs = make([]Event, 0, min(n, maxTurnBatch))
		}
		perr := topic.EachPayload(nm.Data, func(data []byte, index int) {
			if seq == skipSeq && index < skip {
				return // seen before the cursor
			}
			e := Event{Stream: topic.Spec().Stream, Seq: seq, Index: index, Subject: nm.Subject, Type: topic.Spec().TypeName(), Event: data}
			if raw {
				at, err := topic.PayloadAt(nm.Subject, data)
				if err != nil {
					b.Logger().Warn("follow: skipped undecodable event", "subject", nm.Subject, "seq", seq, "index", index, "err", err)
					failed = true
					return
				}
				e.At = at
			} else {
				var v T
				if err := topic.DecodePayload(nm.Subject, data, &v); err != nil {
					b.Logger().Warn("follow: skipped undecodable event", "subject", nm.Subject, "seq", seq, "index", index, "err", err)
					failed = true
					return
				}
				fill(&e, &v)
			}
			evs = append(evs, e)
		})
		if perr != nil {
			b.Logger().Warn("follow: skipped the unreadable rest of a stored message", "subject", nm.Subject, "seq", seq, "err", perr)
		}
		if len(evs) == 0 && (perr != nil || failed) {
			evs = append(evs, unreadable)
		}
		for i, e := range evs {
			e.more = i < len(evs)-1
			if !out.send(e) {
				return
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", subject, err)
	}
	return stop, nil
}

// End is the cursor of a run's last stored event in each stream (zero
// where it has none): a reader that has reached it has seen everything
// stored so far.
func End(ctx context.Context, b *bus.Bus, runID string) (Cursor, error) {
	var c Cursor
	for _, target := range []struct {
		stream string
		filter func(...string) (string, error)
		seq    *uint64
	}{{bus.StreamRuns, bus.RunEvents.Filter, &c.Runs}, {bus.StreamTurns, bus.TurnEvents.Filter, &c.Turns}, {bus.StreamHooks, bus.WorkspaceHookEvents.Filter, &c.Hooks}} {
		subject, err := target.filter(runID)
		if err != nil {
			return c, err
		}
		s, err := b.JetStream().Stream(ctx, target.stream)
		if err != nil {
			return c, fmt.Errorf("run end %s: %w", runID, err)
		}
		m, err := s.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return c, fmt.Errorf("run end %s: %w", runID, err)
		default:
			*target.seq = m.Sequence
		}
	}
	return c, nil
}

// Covers reports whether the cursor has reached other in every stream.
func (c Cursor) Covers(other Cursor) bool {
	return c.Runs >= other.Runs && c.Hooks >= other.Hooks && !turnsBefore(c.Turns, c.TurnsPart, other.Turns, other.TurnsPart)
}
