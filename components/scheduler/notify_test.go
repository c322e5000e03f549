package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// TestNotificationsPublishedOnce: each event the scheduler notifies is
// published once, in the NOTIFY stream, with the id its doc names: built
// from the event, the issue, the run and the cap, nothing else.
func TestNotificationsPublishedOnce(t *testing.T) {
	for _, c := range []struct {
		name    string
		event   bus.NotifyEvent
		outcome bus.RunStatus
		config  func(*bus.Config)
		// id is the notification's id given the issue's dispatches.
		id  func(ds []bus.Dispatch) string
		cap string
	}{
		{"run blocked", bus.NotifyRunBlocked, bus.RunBlocked, nil,
			func(ds []bus.Dispatch) string { return "run_blocked/" + ds[0].RunID }, ""},
		{"budget exceeded by a run", bus.NotifyBudgetExceeded, bus.RunBudgetExceeded, nil,
			func(ds []bus.Dispatch) string { return "budget_exceeded/" + ds[0].RunID }, bus.CapRunTokens},
		{"budget exceeded before a dispatch", bus.NotifyBudgetExceeded, bus.RunSucceeded, func(c *bus.Config) { c.Budget.PerIssue.Runs = 2 },
			func(ds []bus.Dispatch) string { return "budget_exceeded/N-1/budget.per_issue.runs/" + ds[1].RunID }, bus.CapIssueRuns},
		{"max runs reached", bus.NotifyMaxRuns, bus.RunSucceeded, func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 2 },
			func(ds []bus.Dispatch) string { return "max_runs_reached/N-1/" + ds[1].RunID }, bus.CapMaxRuns},
		{"retries exhausted", bus.NotifyRetriesExhausted, bus.RunFailed, func(c *bus.Config) { c.Agent.MaxRunsPerIssue = 2 },
			func(ds []bus.Dispatch) string { return "retries_exhausted/N-1/" + ds[1].RunID }, bus.CapMaxRuns},
	} {
		t.Run(c.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				w := newBubbleWorld(t, t.TempDir(), iss("N-1", 1, "", "Todo"))
				w.outcome = func(bus.Dispatch) bus.RunStatus { return c.outcome }
				w.capOf = func(bus.Dispatch) (string, float64) { return bus.CapRunTokens, 500 }
				w.configure(func(cfg *bus.Config) {
					cfg.Budget.PerRun.Tokens = 500
					if c.config != nil {
						c.config(cfg)
					}
				})
				w.pollUntil("parked", func() bool {
					_, ok := storedBlock(t, w.b, "N-1")
					return ok
				})
				w.eventually("notified", func() bool { return len(storedNotes(t, w.b, c.event)) > 0 })
				// Another tick notifies nothing more.
				w.tickNow()
				w.mu.Lock()
				ds := append([]bus.Dispatch(nil), w.dispatches...)
				w.mu.Unlock()
				notes := storedNotes(t, w.b, c.event)
				if len(notes) != 1 {
					t.Fatalf("%d notifications %+v, want one", len(notes), notes)
				}
				n := notes[0]
				if n.ID != c.id(ds) || n.Event != c.event || n.IssueID != "N-1" || n.Identifier != "N-1" || n.Cap != c.cap {
					t.Errorf("notification %+v, want id %q, cap %q", n, c.id(ds), c.cap)
				}
				bl, _ := storedBlock(t, w.b, "N-1")
				if bl.Cap != c.cap {
					t.Errorf("parked with cap %q, want %q", bl.Cap, c.cap)
				}
				for _, other := range bus.NotifyEvents() {
					if got := storedNotes(t, w.b, other); other != c.event && len(got) != 0 {
						t.Errorf("also notified %s: %+v", other, got)
					}
				}
			})
		})
	}
}

// TestNotificationIDsSurviveARestart: a run's end followed up again by a
// restarted scheduler (two in turn recovering the same stored end) yields
// the same notification id, so the notifier delivers it once.
func TestNotificationIDsSurviveARestart(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		issue := iss("Q-1", 1, "", "In Progress")
		cl := bus.Claim{RunID: "Q-1-run", IssueID: "Q-1", Identifier: "Q-1", At: time.Now()}
		end := bus.RunEvent{RunID: cl.RunID, Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Status: bus.RunBlocked, Error: "the agent asked for a human"}
		if err := runlog.Record(t.Context(), w.b, end, ""); err != nil {
			t.Fatal(err)
		}
		k, _ := bus.Claims.Key("Q-1")
		var ids []string
		for range 2 {
			putKV(t, w.b, k, cl)
			a := newTestActor(w)
			a.interrupted(t.Context(), "Q-1", cl)
			select {
			case n := <-a.notes.q:
				ids = append(ids, n.ID)
			default:
				t.Fatal("no notification queued")
			}
		}
		if ids[0] != "run_blocked/Q-1-run" || ids[1] != ids[0] {
			t.Errorf("ids %q, want run_blocked/Q-1-run twice", ids)
		}
	})
}

// TestNotifyNeverWaits: a full queue drops the notification, counted,
// instead of holding the actor.
func TestNotifyNeverWaits(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		for range notifyQueue + 3 {
			a.notify(bus.Notification{ID: "x", Event: bus.NotifyRunBlocked})
		}
		if got := a.c.NotificationsDropped(); got != 3 {
			t.Errorf("dropped %d, want 3", got)
		}
	})
}

// TestNotificationsQueuedAtTheStopArePublished: what is still queued when
// the scheduler stops (a --once run ends right after its last run's end)
// is published before the publisher ends.
func TestNotificationsQueuedAtTheStopArePublished(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		a.notify(bus.Notification{ID: "run_blocked/late-run", Event: bus.NotifyRunBlocked, RunID: "late-run"})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		a.notes.start(ctx, w.b)()
		if notes := storedNotes(t, w.b, bus.NotifyRunBlocked); len(notes) != 1 || notes[0].ID != "run_blocked/late-run" {
			t.Errorf("stored %+v, want the queued notification", notes)
		}
		if got := a.c.NotificationsDropped(); got != 0 {
			t.Errorf("%d dropped", got)
		}
	})
}

// TestDroppedNotificationsRecorded: the publishing goroutine records the
// drops in KV (symphony_state/notify_dropped) for the dashboard, added to
// the count an earlier process stored.
func TestDroppedNotificationsRecorded(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		if _, err := bus.Put(t.Context(), w.b, bus.NotifyDropped, bus.NotifyDrops{Dropped: 5}); err != nil {
			t.Fatal(err)
		}
		for i := range notifyQueue + 3 {
			a.notify(bus.Notification{ID: fmt.Sprint("run_blocked/r", i), Event: bus.NotifyRunBlocked})
		}
		ctx, cancel := context.WithCancel(t.Context())
		stop := a.notes.start(ctx, w.b)
		synctest.Wait() // the queue published, the drops recorded
		e, err := bus.Get(t.Context(), w.b, bus.NotifyDropped)
		if err != nil || e.Value.Dropped != 8 || e.Value.At.IsZero() {
			t.Errorf("recorded %+v (%v), want 5 earlier + 3 now", e.Value, err)
		}
		cancel()
		stop()
		if notes := storedNotes(t, w.b, bus.NotifyRunBlocked); len(notes) != notifyQueue {
			t.Errorf("%d stored, want the %d queued", len(notes), notifyQueue)
		}
	})
}

// TestNotificationPublishRetried: a publish that fails (a NATS hiccup) is
// tried again with backoff: the notification is stored once, not dropped;
// one that keeps failing is dropped after publishTries, counted.
func TestNotificationPublishRetried(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		tries := map[string]int{}
		a.notes.pub = func(ctx context.Context, b *bus.Bus, note bus.Notification) error {
			tries[note.ID]++
			if note.ID == "run_blocked/never" || tries[note.ID] < 3 {
				return errors.New("nats: timeout")
			}
			return publishNote(ctx, b, note)
		}
		a.notify(bus.Notification{ID: "run_blocked/flaky", Event: bus.NotifyRunBlocked, RunID: "flaky"})
		a.notify(bus.Notification{ID: "run_blocked/never", Event: bus.NotifyRunBlocked, RunID: "never"})
		ctx, cancel := context.WithCancel(t.Context())
		stop := a.notes.start(ctx, w.b)
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		stop()
		if notes := storedNotes(t, w.b, bus.NotifyRunBlocked); len(notes) != 1 || notes[0].ID != "run_blocked/flaky" {
			t.Errorf("stored %+v, want the flaky one, once", notes)
		}
		if tries["run_blocked/flaky"] != 3 || tries["run_blocked/never"] != publishTries {
			t.Errorf("tries %v: want 3 for the flaky one, %d for the failing one", tries, publishTries)
		}
		if got := a.c.NotificationsDropped(); got != 1 {
			t.Errorf("%d dropped, want the one that kept failing", got)
		}
	})
}
