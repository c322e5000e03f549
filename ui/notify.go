package ui

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/symphony-oss/symphony/bus"
)

// The notifier's status as the dashboard sees it (#23): KV
// symphony_notify/status, which only the notifier writes, after each
// notification it handles. The overview's notifications panel shows its
// counts and the last failure; /metrics exports them. The value is
// another component's, so it is taken as it may be: a negative count is
// zero, the failure's text is clipped. The model keeps only what it shows
// (not the record of handled ids, up to 4096 of them). Beside it, the
// count of notifications the scheduler dropped before storing them (KV
// symphony_state/notify_dropped): those no notifier ever saw.

// NotifyView is what the dashboard shows of the notifier's status.
type NotifyView struct {
	Delivered, Failed, Skipped, Duplicates, Invalid int64
	// LastFailure is the latest failed notify.command (nil: none).
	LastFailure *bus.NotifyFailure
	// Running is the notification whose command is in flight (nil: none).
	Running *bus.NotifyHandled
}

// notifyView is the shown part of a stored status, made safe to show.
func notifyView(s bus.NotifyStatus) *NotifyView {
	v := &NotifyView{Delivered: max(0, s.Delivered), Failed: max(0, s.Failed), Skipped: max(0, s.Skipped),
		Duplicates: max(0, s.Duplicates), Invalid: max(0, s.Invalid)}
	if f := s.LastFailure; f != nil {
		c := *f
		c.Error, c.ID, c.Identifier, c.IssueID = oneLine(c.Error, bus.MaxNotifyError), clip(c.ID, 200), clip(c.Identifier, 60), clip(c.IssueID, 100)
		v.LastFailure = &c
	}
	if r := s.Running; r != nil {
		c := *r
		v.Running = &c
	}
	return v
}

// SetNotifyStatus mirrors the notifier's status.
func (m *Model) SetNotifyStatus(s bus.NotifyStatus) {
	v := notifyView(s)
	m.update(func() { m.spend.notify = v })
}

// openNotifyStatus watches the notifier's status. Its first value (when
// there is one) comes with the rest of the state; the dashboard's
// readiness does not wait for it (the notifier may never have run).
func (f *follower) openNotifyStatus(ctx context.Context, b *bus.Client) (*bus.Stream[bus.Entry[bus.NotifyStatus]], error) {
	return bus.Watch(ctx, b, bus.NotifyState)
}

func (f *follower) onNotifyStatus(e bus.Entry[bus.NotifyStatus]) {
	f.s.model.SetNotifyStatus(e.Value)
}

// SetNotifyDropped mirrors the count of notifications the scheduler
// dropped.
func (m *Model) SetNotifyDropped(d bus.NotifyDrops) {
	m.update(func() { m.spend.dropped = max(0, d.Dropped) })
}

func (f *follower) onNotifyDropped(e bus.Entry[bus.NotifyDrops]) {
	f.s.model.SetNotifyDropped(e.Value)
}

var (
	descNotifications = prometheus.NewDesc("symphony_notifications_total",
		"Notifications the notifier handled, by outcome: delivered (notify.command exited 0), failed (non-zero, timed out or could not start), skipped (no notify.command configured), duplicate (an id handled before), invalid (a stored message without an id or unreadable). Counted since the symphony_notify bucket was created; absent until the notifier has written its status.",
		[]string{"outcome"}, nil)
	descNotifyLastFailure = prometheus.NewDesc("symphony_notify_last_failure_timestamp_seconds",
		"When notify.command last failed (Unix seconds); absent when it never has.", nil, nil)
	descNotifyRunning = prometheus.NewDesc("symphony_notify_command_running",
		"1 while notify.command runs for a notification.", nil, nil)
	descNotifyDropped = prometheus.NewDesc("symphony_scheduler_notifications_dropped_total",
		"Notifications the scheduler made but never stored (its queue was full, the publish failed, or it stopped first): no notifier saw them. Counted across restarts.", nil, nil)
)

// notifyCollector reports the notifier's status from the model at
// scrape time.
type notifyCollector struct{ m *Model }

func (c *notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNotifications
	ch <- descNotifyLastFailure
	ch <- descNotifyRunning
	ch <- descNotifyDropped
}

func (c *notifyCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	v, dropped := c.m.spend.notify, c.m.spend.dropped
	c.m.mu.RUnlock()
	// The scheduler writes its count only when it drops one: none is 0.
	ch <- prometheus.MustNewConstMetric(descNotifyDropped, prometheus.CounterValue, float64(dropped))
	if v == nil {
		return
	}
	for _, o := range []struct {
		outcome string
		n       int64
	}{{"delivered", v.Delivered}, {"failed", v.Failed}, {"skipped", v.Skipped}, {"duplicate", v.Duplicates}, {"invalid", v.Invalid}} {
		ch <- prometheus.MustNewConstMetric(descNotifications, prometheus.CounterValue, float64(o.n), o.outcome)
	}
	if f := v.LastFailure; f != nil && !f.At.IsZero() {
		ch <- prometheus.MustNewConstMetric(descNotifyLastFailure, prometheus.GaugeValue, float64(f.At.UnixNano())/1e9)
	}
	ch <- prometheus.MustNewConstMetric(descNotifyRunning, prometheus.GaugeValue, b2f(v.Running != nil))
}
