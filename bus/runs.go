package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PurgeRun deletes every stored event of a run (lifecycle, turns, hooks) and
// its summary, and returns how many bytes the streams shrank by.
func PurgeRun(ctx context.Context, b *Bus, runID string) (uint64, error) {
	runs, err := RunEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	turns, err := TurnEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	hooks, err := WorkspaceHookEvents.Filter(runID)
	if err != nil {
		return 0, err
	}
	var freed uint64
	for _, target := range []struct{ stream, subject string }{{StreamRuns, runs}, {StreamTurns, turns}, {StreamHooks, hooks}} {
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
	k, err := RunSummaries.Key(runID)
	if err != nil {
		return freed, err
	}
	kv, err := b.kv(ctx, BucketRuns)
	if err != nil {
		return freed, err
	}
	if err := kv.Purge(ctx, k.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return freed, fmt.Errorf("purge summary of %s: %w", runID, err)
	}
	return freed, nil
}

// RunSummary is the compact record of one run, kept current in KV
// symphony_runs as its lifecycle events are recorded, so listing runs reads
// one small value per run instead of every event.
type RunSummary struct {
	RunID         string     `json:"run_id"`
	Issue         IssueRef   `json:"issue"`
	Attempt       *int       `json:"attempt"`
	Status        string     `json:"status"` // a RunStatus, or "running"
	Error         string     `json:"error,omitempty"`
	Started       time.Time  `json:"started"`
	Ended         *time.Time `json:"ended,omitempty"`
	Turns         int        `json:"turns"`
	SessionID     string     `json:"session_id,omitempty"`
	Workspace     string     `json:"workspace,omitempty"`
	Agent         string     `json:"agent,omitempty"`
	Command       []string   `json:"command,omitempty"`
	Usage         Usage      `json:"usage"`
	CostUSD       *float64   `json:"cost_usd"`
	ConfigVersion int64      `json:"config_version,omitempty"`
}

// Apply folds one lifecycle event into the summary.
func (s *RunSummary) Apply(ev RunEvent) {
	if s.RunID == "" {
		*s = RunSummary{RunID: ev.RunID, Issue: ev.Issue, Attempt: ev.Attempt, Status: "running", Started: ev.At}
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
	if ev.Event == RunTurnFinished && ev.Usage != nil {
		// Per turn while the run is live; run_finished replaces these
		// running sums with the run's totals.
		s.Usage = s.Usage.Add(*ev.Usage)
		if ev.CostUSD != nil {
			s.CostUSD = ptr(deref(s.CostUSD) + *ev.CostUSD)
		}
	}
	if ev.Event == RunFinished {
		at := ev.At
		s.Ended, s.Status, s.Error = &at, string(ev.Status), ev.Error
		if ev.Usage != nil {
			s.Usage = *ev.Usage
		}
		s.CostUSD = ev.CostUSD
	}
}

// RecordRunEvent stores a lifecycle event durably (msgID de-duplicates a
// retried publish) and folds it into the run's summary with
// compare-and-set, so two recorders never lose each other's update.
func RecordRunEvent(ctx context.Context, b *Bus, ev RunEvent, msgID string) error {
	ack, err := PublishDurable(ctx, b, RunEvents, ev, msgID, ev.RunID, string(ev.Event))
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return nil
	}
	return updateSummary(ctx, b, ev, nil, nil)
}

// RunRecorder records the lifecycle events of one run, in order, as
// RecordRunEvent does, and remembers the run's summary as it last wrote it:
// the next event's compare-and-set then starts from that revision instead of
// reading the summary first, one round trip less per event. The first event
// of a new run creates the summary directly. When anyone else changed the
// summary meanwhile (the scheduler recording an end, say), the
// compare-and-set fails and the recorder reads the summary and tries again,
// as RecordRunEvent does. A RunRecorder is not safe for concurrent use: it
// belongs to the one goroutine that records the run's events.
type RunRecorder struct {
	b *Bus
	// last is the summary as this recorder last stored it, at revision rev
	// (0: there was none); valid only while known.
	last  RunSummary
	rev   uint64
	known bool
}

// NewRunRecorder returns the recorder of a new run, one whose summary does
// not exist yet (if it does, the first compare-and-set finds it).
func NewRunRecorder(b *Bus) *RunRecorder { return &RunRecorder{b: b, known: true} }

// Record stores ev durably (msgID de-duplicates a retried publish) and folds
// it into the run's summary with compare-and-set.
func (r *RunRecorder) Record(ctx context.Context, ev RunEvent, msgID string) error {
	ack, err := PublishDurable(ctx, r.b, RunEvents, ev, msgID, ev.RunID, string(ev.Event))
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return nil
	}
	return updateSummary(ctx, r.b, ev, nil, r)
}

// EnsureSummaryEnded applies a stored run_finished event to the run's
// summary unless the summary already shows an end. RecordRunEvent stores
// the event, then updates the summary: a crash between the two leaves a
// finished run listed as running, and whoever finds the stored end (the
// scheduler, at start-up) repairs it with this.
func EnsureSummaryEnded(ctx context.Context, b *Bus, ev RunEvent) error {
	if ev.Event != RunFinished {
		return fmt.Errorf("ensure run %s ended: %s is not %s", ev.RunID, ev.Event, RunFinished)
	}
	return updateSummary(ctx, b, ev, func(s RunSummary) bool { return s.Ended == nil }, nil)
}

// updateSummary applies ev to the run's summary with compare-and-set,
// when need (nil: always) says the summary needs it. With a recorder that
// knows the summary, the first attempt starts from the recorder's copy
// instead of reading it; the recorder is kept up to date.
func updateSummary(ctx context.Context, b *Bus, ev RunEvent, need func(RunSummary) bool, rec *RunRecorder) error {
	k, err := RunSummaries.Key(ev.RunID)
	if err != nil {
		return err
	}
	kv, err := b.kv(ctx, BucketRuns)
	if err != nil {
		return err
	}
	for range 10 {
		var s RunSummary
		var rev uint64
		if rec != nil && rec.known {
			// Apply replaces the summary's pointers and slices rather than
			// writing through them, so the copy is the recorder's to keep.
			s, rev = rec.last, rec.rev
		} else {
			e, err := Get(ctx, b, k)
			switch {
			case err == nil:
				s, rev = e.Value, e.Revision
			case !errors.Is(err, ErrKeyNotFound):
				return err
			}
		}
		if need != nil && !need(s) {
			return nil
		}
		s.Apply(ev)
		raw, err := k.encode(s)
		if err != nil {
			return err
		}
		var stored uint64
		if rev == 0 {
			stored, err = kv.Create(ctx, k.key, raw)
		} else {
			stored, err = kv.Update(ctx, k.key, raw, rev)
		}
		if rec != nil {
			// After a failure the summary's state is unknown (the write may
			// even have happened): the next attempt reads it.
			rec.last, rec.rev, rec.known = s, stored, err == nil
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSequence(err) {
			return fmt.Errorf("update run summary %s: %w", ev.RunID, err)
		}
	}
	return fmt.Errorf("update run summary %s: too many concurrent updates", ev.RunID)
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Summaries reads every run summary: the last value of each key, read
// straight from the bucket's stream in large batches (a KV watcher would
// deliver them one flow-controlled push at a time). It reads the whole
// stream, unfiltered: the bucket holds nothing but run summaries, and a
// subject filter makes the server match every message against the
// subjects of its block (a third of the time for 10,000 runs). A later
// value of a key replaces an earlier one, and a delete or purge marker
// drops the key, so this stays right for any bucket history setting.
func Summaries(ctx context.Context, b *Bus) ([]RunSummary, error) {
	prefix := "$KV." + BucketRuns + "." + RunSummaries.prefix + "."
	var (
		out  []RunSummary
		gone []bool         // out[i] was replaced or deleted later
		at   map[string]int // key -> its entry in out
		k    = kvKey[RunSummary](BucketRuns, "")
	)
	err := readStored(ctx, b, "KV_"+BucketRuns, "", func(m *nats.Msg, meta storedMeta) error {
		if at == nil {
			n := int(min(meta.Pending+1, 1<<20)) // a size hint, not a promise
			out, gone, at = make([]RunSummary, 0, n), make([]bool, 0, n), make(map[string]int, n)
		}
		id, ok := strings.CutPrefix(m.Subject, prefix)
		if !ok {
			return nil
		}
		if i, seen := at[id]; seen {
			gone[i] = true
			delete(at, id)
		}
		// A delete or purge leaves a marker without a value.
		if len(m.Data) == 0 || m.Header.Get("KV-Operation") != "" {
			return nil
		}
		k.key = RunSummaries.prefix + "." + id
		s, err := k.decode(m.Data)
		if err != nil {
			b.log.Warn("skipped undecodable run summary", "key", k.key, "err", err)
			return nil
		}
		at[id] = len(out)
		out, gone = append(out, s), append(gone, false)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read run summaries: %w", err)
	}
	if len(at) == len(out) {
		return out, nil
	}
	kept := out[:0]
	for i := range out {
		if !gone[i] {
			kept = append(kept, out[i])
		}
	}
	return kept, nil
}

func ptr[T any](v T) *T { return &v }

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// PruneRequest asks the running pruner to delete the runs that ended
// longer ago than OlderThanMS (positive), or with DryRun only to say which.
type PruneRequest struct {
	OlderThanMS int64 `json:"older_than_ms"`
	DryRun      bool  `json:"dry_run,omitempty"`
}

// MaxPruneListed bounds the runs a PruneResult names: a reply stays small
// however many runs one prune deletes (DeletedCount counts them all).
const MaxPruneListed = 1000

// PruneResult says what the pruner did (or, dry, would do).
type PruneResult struct {
	// Deleted names the first MaxPruneListed deleted runs, in run id order.
	Deleted      []RunSummary `json:"deleted"`
	DeletedCount int          `json:"deleted_count"`
	Kept         int          `json:"kept"`
	BytesFreed   uint64       `json:"bytes_freed"`
	DryRun       bool         `json:"dry_run,omitempty"`
}
