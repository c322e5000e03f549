package runlog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus"
)

// A run's stored timeline read piece by piece (Each) holds at most
// this much per stream at a time: each pull asks for eachReadBatch
// messages or eachReadMaxBytes, whichever comes first, and the decoded
// events wait for the merge in a queue of eachQueue. Timeline, which
// hands back the whole run, pulls 16,384 messages or 8 MiB at once; a
// dashboard serving one reader per browser tab or API client cannot hold
// a copy of a long run per reader (150 readers of a 22 MB run held 460 MB).
// 128 KiB takes a full message of agent events (64 KiB of them, see
// maxTurnBatchBytes) in one pull; 256 KiB doubled the dashboard's heap
// under 64 never-reading readers (BenchmarkNeverReadingClients in ui) for
// no gain in speed (BenchmarkReadRun).
const (
	eachReadBatch    = 64
	eachReadMaxBytes = 128 << 10
	eachQueue        = 16
)

// Each hands fn a run's stored events in the order Timeline
// returns them — time order, stream order within a stream — one at a time
// as they are read, and returns the cursor just past what it read. Unlike
// Timeline it never holds the run: each stream is read in bounded
// pieces (at most eachReadBatch messages, eachReadMaxBytes, plus
// eachQueue decoded events per stream), so a reader of a long run costs
// the same as a reader of a short one, and a reader that waits (fn blocks
// on a slow client) pins no more. The three streams are merged by the
// time of their next event: each stream's own order is kept even where
// its times go backwards (clock steps), where Timeline sorts them.
// With RawTurns, agent events come undecoded (Turn nil; Event and At set).
// It returns fn's error, or the read's.
func Each(ctx context.Context, b *bus.Bus, runID string, fn func(Event) error, opts ...Option) (Cursor, error) {
	var o followOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type source struct {
		ch   chan Event
		last uint64
		err  error
	}
	srcs := [3]*source{}
	for i := range srcs {
		srcs[i] = &source{ch: make(chan Event, eachQueue)}
	}
	var wg sync.WaitGroup
	start := func(src *source, read func(out chan<- Event, last *uint64) error) {
		wg.Go(func() {
			defer close(src.ch)
			src.err = read(src.ch, &src.last)
		})
	}
	start(srcs[0], func(out chan<- Event, last *uint64) error {
		return stream(ctx, b, bus.RunEvents, runID, false, out, last, func(e *Event, ev *bus.RunEvent) { e.At, e.Run = ev.At, ev })
	})
	start(srcs[1], func(out chan<- Event, last *uint64) error {
		return stream(ctx, b, bus.TurnEvents, runID, o.rawTurns, out, last, func(e *Event, ev *bus.TurnEvent) { e.At, e.Turn = ev.At, ev })
	})
	start(srcs[2], func(out chan<- Event, last *uint64) error {
		return stream(ctx, b, bus.WorkspaceHookEvents, runID, false, out, last, func(e *Event, ev *bus.HookEvent) { e.At, e.Hook = ev.At, ev })
	})
	// finish stops the readers and waits for them: every goroutine and
	// consumer of this call is gone when it returns.
	finish := func() {
		cancel()
		for _, src := range srcs {
			for range src.ch {
			}
		}
		wg.Wait()
	}
	var heads [3]Event
	var open [3]bool
	for i, src := range srcs {
		heads[i], open[i] = <-src.ch
	}
	for {
		best := -1
		for i := range heads {
			if open[i] && (best < 0 || compareTimeline(heads[i], heads[best]) < 0) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		if err := fn(heads[best]); err != nil {
			finish()
			return Cursor{}, err
		}
		select {
		case heads[best], open[best] = <-srcs[best].ch:
		case <-ctx.Done():
			finish()
			return Cursor{}, ctx.Err()
		}
	}
	finish()
	var errs []error
	for _, src := range srcs {
		errs = append(errs, src.err)
	}
	if err := errors.Join(errs...); err != nil {
		return Cursor{}, fmt.Errorf("timeline of %s: %w", runID, err)
	}
	return Cursor{Runs: srcs[0].last, Turns: srcs[1].last, Hooks: srcs[2].last}, nil
}

// stream reads one topic's stored events of a run in stream order into
// out, in bounded pieces, recording the last stream sequence in last.
// Decoding and skipping follow collect: an event this build cannot read is
// logged and skipped. It blocks while out is full.
func stream[T any](ctx context.Context, b *bus.Bus, topic bus.Topic[T], runID string, raw bool, out chan<- Event, last *uint64, fill func(*Event, *T)) error {
	subject, err := topic.Filter(runID)
	if err != nil {
		return err
	}
	read := func(m *nats.Msg, at bus.StoredMeta) error {
		*last = max(*last, at.Seq)
		if err := topic.CheckHeaders(m); err != nil {
			b.Logger().Warn("timeline: skipped undecodable event", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "err", err)
			return nil
		}
		// The message's events are decoded first, so that only the last
		// one handed on says no more follow (see Cursor.Advance).
		var evs []Event
		err := topic.EachPayload(m.Data, func(data []byte, index int) {
			e := Event{Stream: topic.Spec().Stream, Seq: at.Seq, Index: index, Subject: m.Subject, Type: topic.Spec().TypeName(), Event: data}
			if raw {
				t, err := topic.PayloadAt(m.Subject, data)
				if err != nil {
					b.Logger().Warn("timeline: skipped undecodable event", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "index", index, "err", err)
					return
				}
				e.At = t
			} else {
				v := new(T)
				if err := topic.DecodePayload(m.Subject, data, v); err != nil {
					b.Logger().Warn("timeline: skipped undecodable event", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "index", index, "err", err)
					return
				}
				fill(&e, v)
			}
			evs = append(evs, e)
		})
		if err != nil {
			b.Logger().Warn("timeline: skipped the unreadable rest of a stored message", "run_id", runID, "subject", m.Subject, "seq", at.Seq, "err", err)
		}
		for i, e := range evs {
			e.more = i < len(evs)-1
			select {
			case out <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	return bus.ReadStored(ctx, b, topic.Spec().Stream, subject, read, bus.ReadInPieces(eachReadBatch, eachReadMaxBytes))
}
