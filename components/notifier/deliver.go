package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/shellrun"
)

// LogOutput is how much of a failed command's output goes into the log:
// its end, where the error is.
const LogOutput = 4 << 10

// defaultTimeout stands in for a notify.timeout_ms the loader would have
// refused (a snapshot from an older build).
const defaultTimeout = 60 * time.Second

// deliverer handles the notifications of one Run, one at a time, on the
// follow's goroutine; st is its state, written to KV after each step.
type deliverer struct {
	c  *Component
	cl *bus.Client
	st bus.NotifyStatus
	// broken is set once storing the state failed: Run returns the error
	// (failed) and the supervisor restarts it from what KV holds.
	broken bool
	failed chan error
	// busy is held while a notification is handled, so that Run can wait
	// for the one in flight.
	busy sync.Mutex
}

// wait returns once no notification is being handled.
func (d *deliverer) wait() {
	d.busy.Lock()
	defer d.busy.Unlock()
}

// handle is the follow's callback.
func (d *deliverer) handle(ctx context.Context, m bus.Message[bus.Notification], derr error) {
	d.busy.Lock()
	defer d.busy.Unlock()
	if d.broken || ctx.Err() != nil || m.Seq <= d.st.Seq {
		return // broken, stopping, or read again after a consumer hiccup
	}
	if err := d.step(ctx, m, derr); err != nil && ctx.Err() == nil {
		d.broken = true
		d.failed <- err
	}
}

// step handles one stored notification: an invalid one or a duplicate is
// counted and passed over; otherwise the command runs (or the event is
// skipped without one) and the outcome is recorded with the sequence.
func (d *deliverer) step(ctx context.Context, m bus.Message[bus.Notification], derr error) error {
	n := m.Data
	if derr == nil && n.ID == "" {
		derr = fmt.Errorf("notification on %s has no id", m.Subject)
	}
	if derr != nil {
		d.c.log.Warn("passed over a notification that cannot be read", "seq", m.Seq, "subject", m.Subject, "err", derr)
		d.st.Invalid++
		return d.finish(ctx, m.Seq, nil)
	}
	log := d.c.log.With("event", n.Event, "event_id", n.ID, "issue_id", n.IssueID, "issue_identifier", n.Identifier, "run_id", n.RunID)
	digest := bus.NotifyDigest(n.ID)
	attempts := 0
	if r := d.st.Running; r != nil && r.Digest == digest {
		attempts = r.Attempts // the process ended while the command ran
	} else if d.handled(digest) {
		log.Info("notification handled before; not delivered again", "seq", m.Seq)
		d.st.Duplicates++
		return d.finish(ctx, m.Seq, nil)
	}
	rec := bus.NotifyHandled{Digest: digest, Event: n.Event, Seq: m.Seq, Attempts: attempts}
	snap := d.c.cfg.Load()
	if snap.Config.Notify.Command == "" {
		log.Debug("no notify.command; notification skipped")
		d.st.Skipped++
		rec.Outcome = bus.NotifySkipped
		return d.finish(ctx, m.Seq, &rec)
	}
	if attempts >= bus.MaxNotifyAttempts {
		err := fmt.Errorf("the process ended %d times while the command ran; not started again", attempts)
		d.failure(log, n, &rec, err, "")
		return d.finish(ctx, m.Seq, &rec)
	}
	rec.Attempts++
	rec.Outcome, rec.At = bus.NotifyRunning, time.Now().UTC()
	d.st.Running = &rec
	if err := d.save(ctx); err != nil {
		return err
	}
	out, dur, err := d.run(ctx, snap, n, rec.Attempts)
	if ctx.Err() != nil {
		// Stopping: the command was killed, and Running stays stored, so
		// the next start delivers the notification again.
		return ctx.Err()
	}
	rec = *d.st.Running
	if err != nil {
		d.failure(log, n, &rec, err, out)
	} else {
		log.Info("notification delivered", "attempt", rec.Attempts, "duration_ms", dur.Milliseconds())
		d.st.Delivered++
		rec.Outcome = bus.NotifyDelivered
	}
	return d.finish(ctx, m.Seq, &rec)
}

// run runs notify.command for n.
func (d *deliverer) run(ctx context.Context, snap *bus.ConfigSnapshot, n bus.Notification, attempt int) (string, time.Duration, error) {
	stdin, err := json.Marshal(n)
	if err != nil {
		return "", 0, fmt.Errorf("encode the notification: %w", err)
	}
	timeout := snap.Config.Notify.Timeout()
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	dir := ""
	if snap.Path != "" {
		dir = filepath.Dir(snap.Path)
	}
	env := Env(d.c.opts.Environ(), *snap, n, attempt)
	return shellrun.Run(ctx, shellrun.Spec{Script: snap.Config.Notify.Command, Dir: dir, Env: env, Stdin: stdin, Timeout: timeout})
}

// failure counts and logs a failed command and records it as the last
// failure.
func (d *deliverer) failure(log *slog.Logger, n bus.Notification, rec *bus.NotifyHandled, err error, out string) {
	msg := "notify.command " + err.Error()
	var se *shellrun.Error
	if !errors.As(err, &se) {
		msg = "notify.command: " + err.Error()
	}
	msg = shellrun.Cut(msg, bus.MaxNotifyError, func(k int) string { return fmt.Sprintf("…[cut: %d more bytes]", k) })
	log.Error("notification failed", "attempt", rec.Attempts, "err", msg, "output", shellrun.Truncate(out, LogOutput))
	d.st.Failed++
	rec.Outcome = bus.NotifyFailed
	d.st.LastFailure = &bus.NotifyFailure{ID: n.ID, Event: n.Event, IssueID: n.IssueID, Identifier: n.Identifier, Error: msg, At: time.Now().UTC()}
}

// handled reports whether the id with this digest is remembered as
// handled.
func (d *deliverer) handled(digest string) bool {
	for _, h := range d.st.Handled {
		if h.Digest == digest {
			return true
		}
	}
	return false
}

// finish records the message at seq as handled (rec, if any, remembered
// among the ids), forgets what is too old or too many, and stores it all
// in one write.
func (d *deliverer) finish(ctx context.Context, seq uint64, rec *bus.NotifyHandled) error {
	now := time.Now().UTC()
	d.st.Seq, d.st.Running = seq, nil
	if rec != nil {
		rec.At = now
		d.st.Handled = append(d.st.Handled, *rec)
	}
	d.trim(now)
	return d.save(ctx)
}

// trim forgets the handled ids past MaxNotifyHandled and those older than
// NotifyKeepHandled (oldest first).
func (d *deliverer) trim(now time.Time) {
	cutoff := now.Add(-bus.NotifyKeepHandled)
	drop := max(len(d.st.Handled)-bus.MaxNotifyHandled, 0)
	for drop < len(d.st.Handled) && d.st.Handled[drop].At.Before(cutoff) {
		drop++
	}
	if drop > 0 {
		d.st.Handled = append([]bus.NotifyHandled(nil), d.st.Handled[drop:]...)
	}
}

func (d *deliverer) save(ctx context.Context) error {
	d.st.Updated = time.Now().UTC()
	if _, err := bus.Put(ctx, d.cl, bus.NotifyState, d.st); err != nil {
		return fmt.Errorf("store the notifier's status: %w", err)
	}
	return nil
}
