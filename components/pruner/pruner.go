// Package pruner bounds the store: it deletes runs — their lifecycle and
// every turn event — that finished longer ago than the retention. A run
// still running, or with no recorded end, is never deleted. The same Prune
// serves `symphony prune` and the component, which applies WORKFLOW.md's
// `retention` every hour.
package pruner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/runlog"
)

// Interval is how often the component applies the retention.
const Interval = time.Hour

// Result says what a prune did (or would do, dry).
type Result struct {
	Deleted []bus.RunSummary
	// Kept counts runs kept: newer than the cutoff, running, or without a
	// recorded end.
	Kept       int
	BytesFreed uint64
	DryRun     bool
}

// Prune deletes the runs that finished before now−olderThan. olderThan
// must be positive (a zero or negative age would delete everything that
// ever finished: refused). Running again deletes nothing more: idempotent.
func Prune(ctx context.Context, b *bus.Bus, olderThan time.Duration, dryRun bool, now time.Time) (Result, error) {
	if olderThan <= 0 {
		return Result{}, fmt.Errorf("prune: the age must be positive, got %s", olderThan)
	}
	cutoff := now.Add(-olderThan)
	runs, err := runlog.Summaries(ctx, b)
	if err != nil {
		return Result{}, fmt.Errorf("prune: read runs: %w", err)
	}
	slices.SortFunc(runs, func(x, y bus.RunSummary) int { return strings.Compare(x.RunID, y.RunID) })
	res := Result{DryRun: dryRun}
	for _, r := range runs {
		if r.Ended == nil || !r.Ended.Before(cutoff) {
			res.Kept++
			continue
		}
		if !dryRun {
			freed, err := runlog.Purge(ctx, b, r.RunID)
			res.BytesFreed += freed
			if err != nil {
				return res, err
			}
		}
		res.Deleted = append(res.Deleted, r)
	}
	return res, nil
}

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
}

// Component applies the workflow's retention every Interval.
type Component struct {
	opts      Options
	log       *slog.Logger
	retention atomic.Int64
	// pruning serializes the scheduled prune and requested ones.
	pruning sync.Mutex
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("pruner: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompPruner)}, nil
}

// Name is "pruner".
func (c *Component) Name() string { return bus.CompPruner }

// Run prunes on schedule, and when asked (bus.PruneRuns: `symphony prune`
// against this running instance), until ctx ends.
func (c *Component) Run(ctx context.Context) error {
	// A prune in flight ends, and has returned, once the client is closed.
	cl := c.opts.Bus.Client(bus.CompPruner)
	defer cl.Close()
	if _, err := bus.Serve(ctx, cl, bus.PruneRuns, c.serve); err != nil {
		return components.Stopped(ctx, err)
	}
	configs, err := bus.Watch(ctx, cl, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-configs.C():
			if !ok {
				return components.Stopped(ctx, fmt.Errorf("config watch ended: %w", configs.Err()))
			}
			c.retention.Store(e.Value.Config.RetentionMS)
		case <-tick.C:
			ms := c.retention.Load()
			if ms <= 0 {
				continue
			}
			res, err := c.prune(ctx, time.Duration(ms)*time.Millisecond, false)
			if err != nil {
				c.log.Error("scheduled prune failed", "err", err)
				continue
			}
			if len(res.Deleted) > 0 {
				c.log.Info("pruned old runs", "runs", len(res.Deleted), "bytes", res.BytesFreed, "kept", res.Kept)
			}
		}
	}
}

func (c *Component) prune(ctx context.Context, olderThan time.Duration, dryRun bool) (Result, error) {
	c.pruning.Lock()
	defer c.pruning.Unlock()
	return Prune(ctx, c.opts.Bus, olderThan, dryRun, time.Now())
}

// serve answers one prune request. What was deleted before an error is
// lost to the asker (the error says which run failed); asking again
// finishes the job, as Prune is idempotent.
func (c *Component) serve(ctx context.Context, _ string, req bus.PruneRequest) (bus.PruneResult, error) {
	// An age past what a Duration holds would wrap around, possibly to a
	// small one that deletes almost everything.
	if req.OlderThanMS <= 0 || req.OlderThanMS > int64(math.MaxInt64/time.Millisecond) {
		return bus.PruneResult{}, fmt.Errorf("prune: older_than_ms must be between 1 and %d, got %d", int64(math.MaxInt64/time.Millisecond), req.OlderThanMS)
	}
	res, err := c.prune(ctx, time.Duration(req.OlderThanMS)*time.Millisecond, req.DryRun)
	if err != nil {
		return bus.PruneResult{}, err
	}
	if !req.DryRun {
		c.log.Info("pruned old runs on request", "runs", len(res.Deleted), "bytes", res.BytesFreed, "kept", res.Kept)
	}
	out := bus.PruneResult{DeletedCount: len(res.Deleted), Kept: res.Kept, BytesFreed: res.BytesFreed, DryRun: req.DryRun}
	out.Deleted = res.Deleted[:min(len(res.Deleted), bus.MaxPruneListed)]
	return out, nil
}
