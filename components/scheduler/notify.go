package scheduler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Notifications (bus.Notifications) the scheduler publishes: run_blocked
// (a run ended blocked), budget_exceeded (a park by a per-run or per-issue
// cap, and each run stopped by the daily cap), daily_cap_reached (once per
// day and cap), max_runs_reached and retries_exhausted (a park by
// agent.max_runs_per_issue: retries_exhausted when the issue's last run
// did not end succeeded — failed, timed out, stalled, interrupted — so the
// run refused would have been a retry; max_runs_reached when it ended
// succeeded, a continuation loop). Each id is built only from what
// happened — the event, the issue, the run, the day, the cap — never from
// when it was noticed, so the same occurrence handled again after a
// restart has the same id: the stream's duplicate window drops a copy
// published soon after, and the notifier drops any later one by its id.
//
// Publishing never delays the actor: a notification goes into a bounded
// queue (notifyQueue) that a goroutine of the scheduler's own publishes
// from, trying each a few times with backoff (publishTries); a full
// queue, or a publish that keeps failing, drops it, logged and counted
// (Component.NotificationsDropped, and KV symphony_state/notify_dropped
// for the dashboard, written by that goroutine). What is still queued
// when the scheduler stops is published within drainTimeout (a --once run
// ends right after its last run's end), and only then dropped, logged.

// notifyQueue bounds the notifications waiting to be published.
const notifyQueue = 256

// drainTimeout bounds the publishing of what is queued when the
// scheduler stops.
const drainTimeout = 5 * time.Second

// publishTries bounds the attempts at publishing one notification;
// publishBackoff is the first wait between two, doubled at each (the
// message id makes a repeat harmless: the stream drops a copy).
const (
	publishTries   = 4
	publishBackoff = 250 * time.Millisecond
)

// notifier publishes notifications off the actor's goroutine.
type notifier struct {
	c *Component
	q chan bus.Notification
	// pub stores one notification (bus.PublishDurable; a test's stand-in).
	pub func(ctx context.Context, b *bus.Bus, note bus.Notification) error
	// dropped is poked (never waiting) when the actor drops a
	// notification: the goroutine records the count.
	dropped chan struct{}
	// The publishing goroutine's own: the count last recorded, and the
	// stored count of earlier processes it adds to (read once, base).
	recorded, base int64
	based          bool
}

func newNotifier(c *Component) *notifier {
	return &notifier{c: c, q: make(chan bus.Notification, notifyQueue), dropped: make(chan struct{}, 1), pub: publishNote}
}

// publishNote stores one notification in the NOTIFY stream, its id as the
// message id.
func publishNote(ctx context.Context, b *bus.Bus, note bus.Notification) error {
	_, err := bus.PublishDurable(ctx, b, bus.Notifications, note, note.ID, string(note.Event))
	return err
}

// NotificationsDropped counts the notifications the scheduler dropped
// because its queue was full or their publish failed.
func (c *Component) NotificationsDropped() int64 { return c.dropped.Load() }

// start runs the publishing goroutine until ctx ends; stop waits for it.
func (n *notifier) start(ctx context.Context, b *bus.Bus) (stop func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				n.drain(ctx, b, nil)
				return
			case note := <-n.q:
				if ctx.Err() != nil {
					// Stopping already: the note is drained with the rest.
					n.drain(ctx, b, &note)
					return
				}
				if err := n.try(ctx, b, note); err != nil {
					if ctx.Err() != nil {
						// Stopped while trying: the drain tries again.
						n.drain(ctx, b, &note)
						return
					}
					n.failed(ctx, b, note, err)
				}
			case <-n.dropped:
				n.recordDrops(ctx, b)
			}
		}
	})
	return wg.Wait
}

// drain publishes what is queued when the scheduler stops, within
// drainTimeout; what is left then is dropped, logged and counted.
// first, if set, was taken from the queue already.
func (n *notifier) drain(ctx context.Context, b *bus.Bus, first *bus.Notification) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	// Whatever was dropped is recorded, in the time left (or a moment
	// more: the count is worth the wait).
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		n.recordDrops(rctx, b)
	}()
	if first != nil {
		n.publish(dctx, b, *first)
	}
	for {
		select {
		case note := <-n.q:
			if dctx.Err() != nil {
				n.c.dropped.Add(1)
				n.c.log.Warn("scheduler stopped before a notification was published; it is lost", "id", note.ID, "event", note.Event)
				continue
			}
			n.publish(dctx, b, note)
		default:
			return
		}
	}
}

// publish stores one notification (try), a failure dropped, logged and
// counted.
func (n *notifier) publish(ctx context.Context, b *bus.Bus, note bus.Notification) {
	if err := n.try(ctx, b, note); err != nil {
		n.failed(ctx, b, note, err)
	}
}

// try stores one notification in the NOTIFY stream, its id as the
// message id, up to publishTries times with a doubling backoff (a
// NATS hiccup, a stream briefly unavailable), while ctx lasts. Each
// attempt is bounded by requestTimeout; the queue meanwhile fills and,
// full, drops (counted), so a publish that keeps failing delays only the
// notifications, never the scheduler.
func (n *notifier) try(ctx context.Context, b *bus.Bus, note bus.Notification) error {
	wait := publishBackoff
	for try := 1; ; try++ {
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := n.pub(pctx, b, note)
		cancel()
		if err == nil || try == publishTries || ctx.Err() != nil {
			return err
		}
		n.c.log.Warn("notification not published; trying again", "err", err, "id", note.ID, "event", note.Event, "try", try, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait *= 2
	}
}

// failed drops a notification that could not be published: logged and
// counted.
func (n *notifier) failed(ctx context.Context, b *bus.Bus, note bus.Notification, err error) {
	n.c.dropped.Add(1)
	n.c.log.Error("notification not published", "err", err, "id", note.ID, "event", note.Event, "issue_id", note.IssueID, "run_id", note.RunID)
	n.recordDrops(ctx, b)
}

// recordDrops writes the count of dropped notifications to KV
// (bus.NotifyDropped) when it changed since last written, added to what
// earlier processes stored. A failed write is logged and tried again at
// the next drop or at the stop.
func (n *notifier) recordDrops(ctx context.Context, b *bus.Bus) {
	cur := n.c.dropped.Load()
	if cur == n.recorded {
		return
	}
	if !n.based {
		e, err := bus.Get(ctx, b, bus.NotifyDropped)
		if err != nil && !errors.Is(err, bus.ErrKeyNotFound) {
			n.c.log.Warn("dropped notifications not recorded", "err", err, "dropped", cur)
			return
		}
		n.base, n.based = max(0, e.Value.Dropped), true
	}
	if _, err := bus.Put(ctx, b, bus.NotifyDropped, bus.NotifyDrops{Dropped: n.base + cur, At: time.Now().UTC()}); err != nil {
		n.c.log.Warn("dropped notifications not recorded", "err", err, "dropped", cur)
		return
	}
	n.recorded = cur
}

// notify queues a notification, never waiting: a full queue drops it.
func (a *actor) notify(note bus.Notification) {
	select {
	case a.notes.q <- note:
	default:
		a.c.dropped.Add(1)
		a.log.Error("notification dropped: the queue is full", "id", note.ID, "event", note.Event, "issue_id", note.IssueID, "run_id", note.RunID)
		select {
		case a.notes.dropped <- struct{}{}:
		default: // a poke is pending already
		}
	}
}

// notifyRun notifies about a run's end that parked its issue: id
// "<event>/<run_id>", or issueCapNoteID's for a per-issue cap.
func (a *actor) notifyRun(ev bus.NotifyEvent, iss bus.Issue, end bus.RunEvent, reason string, c bus.BlockedEntry) {
	at := end.At
	if at.IsZero() {
		at = time.Now().UTC()
	}
	id := string(ev) + "/" + end.RunID
	if ev == bus.NotifyBudgetExceeded && isIssueCap(c.Cap) {
		id = issueCapNoteID(iss.ID, c.Cap, end.RunID)
	}
	a.notify(bus.Notification{ID: id, Event: ev, At: at, IssueID: iss.ID, Identifier: iss.Identifier,
		State: iss.State, RunID: end.RunID, Reason: reason, Cap: c.Cap, Limit: c.Limit, Day: c.Day})
}

// issueCapNoteID is the id of a budget_exceeded by a per-issue cap:
// "budget_exceeded/<issue_id>/<cap>/<last run id>". The occurrence is the
// issue at that cap after its last counted run, whether the run's end
// parked it or a dispatch found it there (an operator cleared the park
// without raising the cap): the same id, so it is delivered once.
func issueCapNoteID(issueID, capKey, runID string) string {
	return string(bus.NotifyBudgetExceeded) + "/" + issueID + "/" + capKey + "/" + runID
}

// isIssueCap reports whether the cap key is a per-issue cap.
func isIssueCap(capKey string) bool {
	switch capKey {
	case bus.CapIssueUSD, bus.CapIssueTokens, bus.CapIssueRuns, bus.CapIssueTurns:
		return true
	}
	return false
}

// notifyMaxRuns notifies about a park by agent.max_runs_per_issue: id
// "<event>/<issue_id>/<last run id>". retries_exhausted when the last run
// did not end succeeded, max_runs_reached when it did (see above).
func (a *actor) notifyMaxRuns(ctx context.Context, iss bus.Issue, c bus.RunCount, limit int, reason string) {
	ev := bus.NotifyMaxRuns
	if st := a.lastRunStatus(ctx, iss.ID, c.LastRunID); st != "" && st != bus.RunSucceeded {
		ev = bus.NotifyRetriesExhausted
	}
	a.notify(bus.Notification{ID: string(ev) + "/" + iss.ID + "/" + c.LastRunID, Event: ev, At: time.Now().UTC(), IssueID: iss.ID,
		Identifier: iss.Identifier, State: iss.State, RunID: c.LastRunID, Reason: reason, Cap: bus.CapMaxRuns, Limit: float64(limit), Spent: float64(c.Runs)})
}

// lastRunStatus is how the issue's last run ended: as this process saw
// it, else as its summary says ("" when neither can tell).
func (a *actor) lastRunStatus(ctx context.Context, issueID, runID string) bus.RunStatus {
	if st, ok := a.lastStatus[issueID]; ok {
		return st
	}
	if runID == "" {
		return ""
	}
	k, err := bus.RunSummaries.Key(runID)
	if err != nil {
		return ""
	}
	if e, err := bus.Get(ctx, a.b, k); err == nil {
		return e.Value.Status
	}
	return ""
}
