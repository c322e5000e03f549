package ui

import (
	"context"
	"sync"

	"github.com/symphony-oss/symphony/bus"
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
	Timeline(ctx context.Context, runID string, raw bool, fn func(bus.StoredEvent) error) (bus.RunCursor, error)
	// Stored is the cursor of the run's events so far (stored, or played
	// in a replay), without reading them.
	Stored(ctx context.Context, runID string) (bus.RunCursor, error)
	// Follow delivers the run's events after the cursor, waiting for new
	// ones, until ctx ends (nil) or deliver fails (its error). With raw,
	// agent events may come undecoded (Turn nil; Event and At set).
	Follow(ctx context.Context, runID string, after bus.RunCursor, raw bool, deliver func(bus.StoredEvent) error) error
	// End is the cursor of the run's last stored event.
	End(ctx context.Context, runID string) (bus.RunCursor, error)
}

// liveFeed reads the RUNS, TURNS and HOOKS streams.
type liveFeed struct{ b *bus.Bus }

func (f liveFeed) Timeline(ctx context.Context, runID string, raw bool, fn func(bus.StoredEvent) error) (bus.RunCursor, error) {
	if raw {
		return bus.EachRunEvent(ctx, f.b, runID, fn, bus.RawTurns())
	}
	return bus.EachRunEvent(ctx, f.b, runID, fn)
}

func (f liveFeed) Stored(ctx context.Context, runID string) (bus.RunCursor, error) {
	return bus.RunEnd(ctx, f.b, runID)
}

func (f liveFeed) Follow(ctx context.Context, runID string, after bus.RunCursor, raw bool, deliver func(bus.StoredEvent) error) error {
	if raw {
		return bus.FollowRun(ctx, f.b, runID, after, deliver, bus.RawTurns())
	}
	return bus.FollowRun(ctx, f.b, runID, after, deliver)
}

func (f liveFeed) End(ctx context.Context, runID string) (bus.RunCursor, error) {
	return bus.RunEnd(ctx, f.b, runID)
}

// replayFeed holds a recorded run and how much of it has been played. The
// recording is one copy shared by every reader.
type replayFeed struct {
	runID  string
	events []bus.StoredEvent

	mu      sync.Mutex
	played  int
	changed chan struct{}
}

func newReplayFeed(runID string, events []bus.StoredEvent) *replayFeed {
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

func (f *replayFeed) Timeline(_ context.Context, runID string, _ bool, fn func(bus.StoredEvent) error) (bus.RunCursor, error) {
	var cur bus.RunCursor
	if runID != f.runID {
		return cur, nil
	}
	n, _ := f.state()
	for _, ev := range f.events[:n] {
		cur.Advance(ev)
		if err := fn(ev); err != nil {
			return bus.RunCursor{}, err
		}
	}
	return cur, nil
}

func (f *replayFeed) Stored(_ context.Context, runID string) (bus.RunCursor, error) {
	var cur bus.RunCursor
	if runID == f.runID {
		n, _ := f.state()
		for _, ev := range f.events[:n] {
			cur.Advance(ev)
		}
	}
	return cur, nil
}

func (f *replayFeed) Follow(ctx context.Context, runID string, after bus.RunCursor, _ bool, deliver func(bus.StoredEvent) error) error {
	if runID != f.runID {
		<-ctx.Done()
		return nil
	}
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
			if err := deliver(f.events[next]); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// End is the cursor after the whole recording.
func (f *replayFeed) End(_ context.Context, runID string) (bus.RunCursor, error) {
	var cur bus.RunCursor
	if runID == f.runID {
		for _, ev := range f.events {
			cur.Advance(ev)
		}
	}
	return cur, nil
}
