package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunEnd is what the RUNS stream says about a run's life: when it was first
// and last heard of, and whether (and when, and how) it finished.
type RunEnd struct {
	RunID    string
	Issue    IssueRef
	First    time.Time
	Finished bool
	EndedAt  time.Time
	Status   RunStatus
}

// RunEnds reads the lifecycle events of every stored run, in order.
func RunEnds(ctx context.Context, b *Bus) (map[string]*RunEnd, error) {
	out := map[string]*RunEnd{}
	for m, err := range History(ctx, b, RunEvents) {
		if err != nil {
			if errors.Is(err, ErrDecode) {
				continue
			}
			return nil, err
		}
		ev := m.Data
		r := out[ev.RunID]
		if r == nil {
			r = &RunEnd{RunID: ev.RunID, Issue: ev.Issue, First: ev.At}
			out[ev.RunID] = r
		}
		if ev.Event == RunFinished {
			r.Finished, r.EndedAt, r.Status = true, ev.At, ev.Status
		}
	}
	return out, nil
}

// PurgeRun deletes every stored event of a run (lifecycle and turns) and
// returns how many bytes the streams shrank by.
func PurgeRun(ctx context.Context, b *Bus, runID string) (uint64, error) {
	runs, err := RunEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	turns, err := TurnEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	var freed uint64
	for _, target := range []struct{ stream, subject string }{{StreamRuns, runs}, {StreamTurns, turns}} {
		s, err := b.js.Stream(ctx, target.stream)
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
	return freed, nil
}
