package runlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/symphony-oss/symphony/bus"
)

// Purge deletes every stored event of a run (lifecycle, turns, hooks) and
// its summary, and returns how many bytes the streams shrank by.
func Purge(ctx context.Context, b *bus.Bus, runID string) (uint64, error) {
	runs, err := bus.RunEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	turns, err := bus.TurnEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	hooks, err := bus.WorkspaceHookEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	var freed uint64
	for _, target := range []struct{ stream, subject string }{{bus.StreamRuns, runs}, {bus.StreamTurns, turns}, {bus.StreamHooks, hooks}} {
		s, err := b.JetStream().Stream(ctx, target.stream)
		if err != nil {
			return freed, fmt.Errorf("purge %s: %w", runID, err)
		}
		before, err := s.Info(ctx)
		if err != nil {
			return freed, fmt.Errorf("purge %s: %w", runID, err)
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(target.subject)); err != nil {
			return freed, fmt.Errorf("purge %s from %s: %w", runID, target.stream, err)
		}
		after, err := s.Info(ctx)
		if err != nil {
			return freed, fmt.Errorf("purge %s: %w", runID, err)
		}
		if before.State.Bytes > after.State.Bytes {
			freed += before.State.Bytes - after.State.Bytes
		}
	}
	k, err := bus.RunSummaries.Key(runID)
	if err != nil {
		return freed, err
	}
	if err := bus.Purge(ctx, b, k); err != nil {
		return freed, fmt.Errorf("purge summary of %s: %w", runID, err)
	}
	return freed, nil
}

// Apply folds one lifecycle event into the summary s.
func Apply(s *bus.RunSummary, ev bus.RunEvent) {
	if s.RunID == "" {
		*s = bus.RunSummary{RunID: ev.RunID, Issue: ev.Issue, Attempt: ev.Attempt, Status: bus.RunRunning, Started: ev.At}
	}
	if ev.Workspace != "" {
		s.Workspace = ev.Workspace
	}
	if ev.Agent != "" {
		s.Agent = ev.Agent
	}
	if len(ev.Command) > 0 {
		s.Command = ev.Command
	}
	if ev.SessionID != "" {
		s.SessionID = ev.SessionID
	}
	if ev.ConfigVersion != 0 {
		s.ConfigVersion = ev.ConfigVersion
	}
	s.Turns = max(s.Turns, ev.Turn)
	if ev.BudgetEstimated && (ev.Event == bus.RunTurnFinished || ev.Event == bus.RunFinished) {
		s.BudgetEstimated = true
	}
	if ev.Event == bus.RunTurnFinished && ev.Usage != nil {
		// Per turn while the run is live; run_finished replaces these
		// running sums with the run's totals.
		s.Usage = s.Usage.Add(*ev.Usage)
		if ev.CostUSD != nil {
			s.CostUSD = ptr(deref(s.CostUSD) + *ev.CostUSD)
		}
		if ev.BudgetUSD != nil {
			s.BudgetUSD = ptr(deref(s.BudgetUSD) + *ev.BudgetUSD)
		}
	}
	if ev.Event == bus.RunFinished {
		at := ev.At
		s.Ended, s.Status, s.Error = &at, ev.Status, ev.Error
		if ev.Usage != nil {
			s.Usage = *ev.Usage
		}
		s.CostUSD = ev.CostUSD
		if ev.BudgetUSD != nil {
			// The run's total replaces the turns' running sum; an end
			// without one (a runner before budgets) keeps that sum.
			s.BudgetUSD = ev.BudgetUSD
		}
	}
}

// Record stores a lifecycle event durably (msgID de-duplicates a
// retried publish) and folds it into the run's summary with
// compare-and-set, so two recorders never lose each other's update.
func Record(ctx context.Context, b *bus.Bus, ev bus.RunEvent, msgID string) error {
	ack, err := bus.PublishDurable(ctx, b, bus.RunEvents, ev, msgID, ev.RunID, string(ev.Event))
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return nil
	}
	return updateSummary(ctx, b, ev, nil, nil)
}

// Recorder records the lifecycle events of one run, in order, as
// Record does, and remembers the run's summary as it last wrote it:
// the next event's compare-and-set then starts from that revision instead of
// reading the summary first, one round trip less per event. The first event
// of a new run creates the summary directly. When anyone else changed the
// summary meanwhile (the scheduler recording an end, say), the
// compare-and-set fails and the recorder reads the summary and tries again,
// as Record does. A Recorder is not safe for concurrent use: it
// belongs to the one goroutine that records the run's events.
type Recorder struct {
	b *bus.Bus
	// last is the summary as this recorder last stored it, at revision rev
	// (0: there was none); valid only while known.
	last  bus.RunSummary
	rev   uint64
	known bool
}

// NewRecorder returns the recorder of a new run, one whose summary does
// not exist yet (if it does, the first compare-and-set finds it).
func NewRecorder(b *bus.Bus) *Recorder { return &Recorder{b: b, known: true} }

// Record stores ev durably (msgID de-duplicates a retried publish) and folds
// it into the run's summary with compare-and-set.
func (r *Recorder) Record(ctx context.Context, ev bus.RunEvent, msgID string) error {
	ack, err := bus.PublishDurable(ctx, r.b, bus.RunEvents, ev, msgID, ev.RunID, string(ev.Event))
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return nil
	}
	return updateSummary(ctx, r.b, ev, nil, r)
}

// EnsureEnded applies a stored run_finished event to the run's
// summary unless the summary already shows an end. Record stores
// the event, then updates the summary: a crash between the two leaves a
// finished run listed as running, and whoever finds the stored end (the
// scheduler, at start-up) repairs it with this.
func EnsureEnded(ctx context.Context, b *bus.Bus, ev bus.RunEvent) error {
	if ev.Event != bus.RunFinished {
		return fmt.Errorf("ensure run %s ended: %s is not %s", ev.RunID, ev.Event, bus.RunFinished)
	}
	return updateSummary(ctx, b, ev, func(s bus.RunSummary) bool { return s.Ended == nil }, nil)
}

// updateSummary applies ev to the run's summary with compare-and-set,
// when need (nil: always) says the summary needs it. With a recorder that
// knows the summary, the first attempt starts from the recorder's copy
// instead of reading it; the recorder is kept up to date.
func updateSummary(ctx context.Context, b *bus.Bus, ev bus.RunEvent, need func(bus.RunSummary) bool, rec *Recorder) error {
	k, err := bus.RunSummaries.Key(ev.RunID)
	if err != nil {
		return err
	}
	for range 10 {
		var s bus.RunSummary
		var rev uint64
		if rec != nil && rec.known {
			// Apply replaces the summary's pointers and slices rather than
			// writing through them, so the copy is the recorder's to keep.
			s, rev = rec.last, rec.rev
		} else {
			e, err := bus.Get(ctx, b, k)
			switch {
			case err == nil:
				s, rev = e.Value, e.Revision
			case !errors.Is(err, bus.ErrKeyNotFound):
				return err
			}
		}
		if need != nil && !need(s) {
			return nil
		}
		Apply(&s, ev)
		var stored uint64
		if rev == 0 {
			stored, err = bus.Create(ctx, b, k, s)
		} else {
			stored, err = bus.Update(ctx, b, k, s, rev)
		}
		if rec != nil {
			// After a failure the summary's state is unknown (the write may
			// even have happened): the next attempt reads it.
			rec.last, rec.rev, rec.known = s, stored, err == nil
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, bus.ErrKeyExists) && !errors.Is(err, bus.ErrRevisionChanged) {
			return fmt.Errorf("update run summary %s: %w", ev.RunID, err)
		}
	}
	return fmt.Errorf("update run summary %s: too many concurrent updates", ev.RunID)
}

// Summaries reads every run summary (see bus.Values: straight from the
// bucket's stream in large batches, the last value of each run).
func Summaries(ctx context.Context, b *bus.Bus) ([]bus.RunSummary, error) {
	out, err := bus.Values(ctx, b, bus.RunSummaries)
	if err != nil {
		return nil, fmt.Errorf("read run summaries: %w", err)
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
