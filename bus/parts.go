package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// A payload that grows with the tracker (a poll's candidates, a listing of
// issues, the runs in flight) crosses the bus in parts when it is larger
// than PartBytes: Publish and Serve cut it, Subscribe and Ask put it back
// together, so components see one value as before. Every part is a
// complete payload of the same type, carrying some of the items; the
// headers below say which part of which message it is. A value that fits
// in one part is sent as one message without them.
const (
	// HeaderPart is "<index>/<count>" (index from 1) on a part.
	HeaderPart = "Symphony-Part"
	// HeaderPartsID names the message the part belongs to.
	HeaderPartsID = "Symphony-Parts-Id"
)

// PartBytes is the most one part takes (less on a server whose max payload
// is under twice this: half of it).
const PartBytes = 256 << 10

// maxParts bounds how many parts a receiver accepts for one message.
const maxParts = 1 << 16

// parted is a payload that can be sent in parts.
type parted[T any] interface {
	// partition cuts the value into about n pieces of similar size (n ≥
	// 2); ok is false when it holds fewer than two items.
	partition(n int) (pieces []T, ok bool)
	// joined is the value with the items of the other pieces appended.
	joined(rest []T) T
}

// ErrPartTooLarge is returned when one item alone is larger than a part.
var ErrPartTooLarge = errors.New("an item is larger than a message part")

// partLimit is the size of a part on this bus's server.
func (b *Bus) partLimit() int {
	return partLimitFor(b.nc.MaxPayload())
}

func partLimitFor(maxPayload int64) int {
	if maxPayload <= 0 || maxPayload/2 >= PartBytes {
		return PartBytes
	}
	return int(max(maxPayload/2, 1<<10))
}

// encodeParts encodes v as one message, or, when it is larger than limit
// and T can be cut, as parts of at most limit bytes each.
func encodeParts[T any](subject string, spec Spec, typeName string, v T, limit int) ([]*nats.Msg, error) {
	m, err := encode(subject, spec, typeName, v)
	if err != nil {
		return nil, err
	}
	if _, ok := any(v).(parted[T]); !ok || len(m.Data) <= limit {
		return []*nats.Msg{m}, nil
	}
	var datas [][]byte
	var cut func(v T, size int) error
	cut = func(v T, size int) error {
		pieces, ok := any(v).(parted[T]).partition(size/limit + 1)
		if !ok {
			return fmt.Errorf("encode %s for %s: %w (%d bytes, a part is %d)", typeName, subject, ErrPartTooLarge, size, limit)
		}
		for _, p := range pieces {
			data, err := marshal(p)
			if err != nil {
				return fmt.Errorf("encode %s for %s: %w", typeName, subject, err)
			}
			if len(data) > limit {
				if err := cut(p, len(data)); err != nil {
					return err
				}
				continue
			}
			datas = append(datas, data)
		}
		return nil
	}
	if err := cut(v, len(m.Data)); err != nil {
		return nil, err
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	msgs := make([]*nats.Msg, len(datas))
	for i, data := range datas {
		p := nats.NewMsg(subject)
		p.Data = data
		p.Header.Set(HeaderType, typeName)
		p.Header.Set(HeaderSchema, strconv.Itoa(spec.Schema))
		p.Header.Set(HeaderPart, strconv.Itoa(i+1)+"/"+strconv.Itoa(len(datas)))
		p.Header.Set(HeaderPartsID, id)
		msgs[i] = p
	}
	return msgs, nil
}

// assembler puts the parts of a message back together. Parts of one
// message arrive in order (one publisher, one connection); a part missing
// or out of order drops the message being assembled, with an error.
type assembler[T any] struct {
	id    string
	count int
	got   []T
}

// add takes a decoded message. done is true when v completes a value
// (a message sent whole is complete by itself).
func (a *assembler[T]) add(h nats.Header, v T) (out T, done bool, err error) {
	spec := h.Get(HeaderPart)
	if spec == "" {
		return v, true, a.reset("a whole message arrived")
	}
	is, cs, _ := strings.Cut(spec, "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(cs)
	id := h.Get(HeaderPartsID)
	if err1 != nil || err2 != nil || i < 1 || i > n || n > maxParts {
		return out, false, errors.Join(a.reset("a bad part arrived"), fmt.Errorf("bad %s header %q", HeaderPart, spec))
	}
	if i == 1 {
		err = a.reset("a new message began")
		a.id, a.count = id, n
	} else if id != a.id || n != a.count || i != len(a.got)+1 {
		return out, false, errors.Join(a.reset("a part is missing"), fmt.Errorf("part %s of message %s arrived without the parts before it; it is dropped", spec, id))
	}
	a.got = append(a.got, v)
	if len(a.got) < a.count {
		return out, false, err
	}
	got := a.got
	a.got, a.id, a.count = nil, "", 0
	return any(got[0]).(parted[T]).joined(got[1:]), true, err
}

// reset drops an incomplete message, saying so.
func (a *assembler[T]) reset(why string) error {
	if len(a.got) == 0 {
		return nil
	}
	err := fmt.Errorf("message %s dropped after %d of %d parts: %s", a.id, len(a.got), a.count, why)
	a.got, a.id, a.count = nil, "", 0
	return err
}

// askParts is Ask for a reply that may come in parts: the reply inbox is
// its own subscription, read until the last part. It is a callback
// subscription handing messages over one at a time: a SubscribeSync one
// would allocate a channel of 65,536 slots (512 KiB) at every request,
// which cost the dispatch path about 2 ms.
func askParts[Req, Resp any](ctx context.Context, b *Bus, r Request[Req, Resp], subject string, m *nats.Msg) (Resp, error) {
	var zero Resp
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg)
	stop := make(chan struct{})
	sub, err := b.nc.Subscribe(inbox, func(m *nats.Msg) {
		select {
		case replies <- m:
		case <-stop:
		}
	})
	if err != nil {
		return zero, fmt.Errorf("request %s: %w", subject, err)
	}
	defer func() {
		close(stop)
		_ = sub.Unsubscribe()
	}()
	m.Reply = inbox
	if err := b.nc.PublishMsg(m); err != nil {
		return zero, fmt.Errorf("request %s: %w", subject, err)
	}
	var asm assembler[Resp]
	for {
		var reply *nats.Msg
		select {
		case reply = <-replies:
		case <-ctx.Done():
			return zero, fmt.Errorf("request %s: %w", subject, ctx.Err())
		}
		// The server's "no responders" status (nats.go reads it so for
		// its own requests).
		if len(reply.Data) == 0 && reply.Header.Get("Status") == "503" {
			return zero, fmt.Errorf("%w for %s (is the %s component running?)", ErrNoResponder, subject, strings.Join(r.spec.Consumers, "/"))
		}
		if code := reply.Header.Get(HeaderErrorCode); code != "" {
			return zero, &RemoteError{Subject: subject, Code: code, Message: reply.Header.Get(HeaderError)}
		}
		v, err := decode[Resp](reply, r.spec, r.spec.respType)
		if err != nil {
			return zero, err
		}
		out, done, err := asm.add(reply.Header, v)
		if err != nil {
			return zero, fmt.Errorf("request %s: %w", subject, err)
		}
		if done {
			return out, nil
		}
	}
}

// pieces cuts items into about n runs of similar length.
func pieces[E any](items []E, n int) [][]E {
	if len(items) < 2 {
		return nil
	}
	n = min(max(n, 2), len(items))
	out := make([][]E, 0, n)
	for k := range n {
		out = append(out, items[k*len(items)/n:(k+1)*len(items)/n])
	}
	return out
}

func (l IssueList) partition(n int) ([]IssueList, bool) {
	ps := pieces(l.Issues, n)
	out := make([]IssueList, len(ps))
	for k, p := range ps {
		out[k] = l
		out[k].Issues = p
	}
	return out, ps != nil
}

func (l IssueList) joined(rest []IssueList) IssueList {
	all := make([]Issue, 0, len(l.Issues)*(len(rest)+1))
	all = append(all, l.Issues...)
	for _, r := range rest {
		all = append(all, r.Issues...)
	}
	l.Issues = all
	return l
}

func (s CandidateSnapshot) partition(n int) ([]CandidateSnapshot, bool) {
	lists, ok := s.IssueList.partition(n)
	out := make([]CandidateSnapshot, len(lists))
	for k, l := range lists {
		out[k] = s
		out[k].IssueList = l
	}
	return out, ok
}

func (s CandidateSnapshot) joined(rest []CandidateSnapshot) CandidateSnapshot {
	lists := make([]IssueList, len(rest))
	for k, r := range rest {
		lists[k] = r.IssueList
	}
	s.IssueList = s.IssueList.joined(lists)
	return s
}

func (l LiveRuns) partition(n int) ([]LiveRuns, bool) {
	ps := pieces(l.Runs, n)
	out := make([]LiveRuns, len(ps))
	for k, p := range ps {
		out[k] = LiveRuns{Runs: p}
	}
	return out, ps != nil
}

func (l LiveRuns) joined(rest []LiveRuns) LiveRuns {
	all := append([]Dispatch(nil), l.Runs...)
	for _, r := range rest {
		all = append(all, r.Runs...)
	}
	return LiveRuns{Runs: all}
}

// IssueLimit is the bound of one issue on this bus (see IssueLimit).
func (b *Bus) IssueLimit() int { return IssueLimit(b.nc.MaxPayload()) }
