package ui

import (
	"context"
	"sync"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// Feed gives a run page its events: those recorded so far, then each new
// one. Live it reads JetStream; in replay it hands out the events played so
// far, so the same pages serve both.
type Feed interface {
	// Timeline hands fn the run's events so far, in time order, one at a
	// time, and returns the cursor after them (fn's error ends it and is
	// returned). A reader never holds the whole run: each browser tab and
	// API client reads its own, and 150 readers holding a copy of a 22 MB
	// run each held 460 MB. With raw, agent events may come undecoded as
	// in Follow.
	Timeline(ctx context.Context, runID string, raw bool, fn func(runlog.Event) error) (runlog.Cursor, error)
	// Stored is the cursor of the run's events so far (stored, or played
	// in a replay), without reading them.
	Stored(ctx context.Context, runID string) (runlog.Cursor, error)
	// Follow streams the run's events after the cursor, waiting for new
	// ones, until ctx ends or the stream is closed (see runlog.Follow).
	// With raw, agent events may come undecoded (Turn nil; Event and At
	// set).
	Follow(ctx context.Context, runID string, after runlog.Cursor, raw bool) (*bus.Stream[runlog.Event], error)
	// End is the cursor of the run's last stored event.
	End(ctx context.Context, runID string) (runlog.Cursor, error)
}

// liveFeed reads the RUNS, TURNS and HOOKS streams.
type liveFeed struct{ b *bus.Bus }

func (f liveFeed) Timeline(ctx context.Context, runID string, raw bool, fn func(runlog.Event) error) (runlog.Cursor, error) {
	if raw {
		return runlog.Each(ctx, f.b, runID, fn, runlog.RawTurns())
	}
	return runlog.Each(ctx, f.b, runID, fn)
}

func (f liveFeed) Stored(ctx context.Context, runID string) (runlog.Cursor, error) {
	return runlog.End(ctx, f.b, runID)
}

func (f liveFeed) Follow(ctx context.Context, runID string, after runlog.Cursor, raw bool) (*bus.Stream[runlog.Event], error) {
	if raw {
		return runlog.Follow(ctx, f.b, runID, after, runlog.RawTurns())
	}
	return runlog.Follow(ctx, f.b, runID, after)
}

func (f liveFeed) End(ctx context.Context, runID string) (runlog.Cursor, error) {
	return runlog.End(ctx, f.b, runID)
}

// replayFeed holds a recorded run and how much of it has been played. The
// recording is one copy shared by every reader.
type replayFeed struct {
	runID  string
	events []runlog.Event

	mu      sync.Mutex
	played  int
	changed chan struct{}
}

func newReplayFeed(runID string, events []runlog.Event) *replayFeed {
	return &replayFeed{runID: runID, events: events, changed: make(chan struct{})}
}

// advance shows one more event.
func (f *replayFeed) advance() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.played < len(f.events) {
		f.played++
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *replayFeed) state() (int, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.played, f.changed
}

func (f *replayFeed) Timeline(_ context.Context, runID string, _ bool, fn func(runlog.Event) error) (runlog.Cursor, error) {
	var cur runlog.Cursor
	if runID != f.runID {
		return cur, nil
	}
	n, _ := f.state()
	for _, ev := range f.events[:n] {
		cur.Advance(ev)
		if err := fn(ev); err != nil {
			return runlog.Cursor{}, err
		}
	}
	return cur, nil
}

func (f *replayFeed) Stored(_ context.Context, runID string) (runlog.Cursor, error) {
	var cur runlog.Cursor
	if runID == f.runID {
		n, _ := f.state()
		for _, ev := range f.events[:n] {
			cur.Advance(ev)
		}
	}
	return cur, nil
}

func (f *replayFeed) Follow(ctx context.Context, runID string, after runlog.Cursor, _ bool) (*bus.Stream[runlog.Event], error) {
	ctx, cancel := context.WithCancel(ctx)
	// As much room as a live follow has (runlog's followBuffer), so a
	// burst of played events is written out at once, as live.
	st, send, end := bus.NewStream[runlog.Event](256, cancel)
	// A send waits for the reader or for Close: the context's end closes
	// the stream, which stops the send waiting.
	context.AfterFunc(ctx, st.Close)
	go func() {
		defer end(nil)
		if runID == f.runID {
			f.play(ctx, after, send)
		}
		<-ctx.Done()
	}()
	return st, nil
}

// play sends the events played after the cursor, then each one played
// later, until ctx ends or the stream stops taking them.
func (f *replayFeed) play(ctx context.Context, after runlog.Cursor, send func(runlog.Event) bool) {
	next := -1
	for {
		n, changed := f.state()
		if next < 0 {
			// Resume after the last event the cursor covers.
			next = 0
			for i, ev := range f.events[:n] {
				if after.Includes(ev) {
					next = i + 1
				}
			}
		}
		for ; next < n; next++ {
			if !send(f.events[next]) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// End is the cursor after the whole recording.
func (f *replayFeed) End(_ context.Context, runID string) (runlog.Cursor, error) {
	var cur runlog.Cursor
	if runID == f.runID {
		for _, ev := range f.events {
			cur.Advance(ev)
		}
	}
	return cur, nil
}
