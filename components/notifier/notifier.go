// Package notifier is the component that tells the operator: for each
// notification on the bus (symphony.notify.{event}, stored in the NOTIFY
// stream) it runs the live configuration's notify.command the way the
// workspace runs a hook — bash -lc in the directory of WORKFLOW.md, in a
// process group of its own killed whole at notify.timeout_ms, output
// bounded, the tracker's secret removed from its environment — with the
// event in SYMPHONY_* variables (see Env) and as one JSON object on its
// standard input. Symphony opens no connection for it: what the command
// does (post to a webhook, send mail) is the operator's.
//
// # Once per occurrence
//
// The notifier reads the NOTIFY stream from where it left off and keeps,
// in one value (KV symphony_notify/status, bus.NotifyStatus) written after
// each step, the stream sequence it has handled, the digests of the
// notification ids it handled in the last 30 days (at most 4096), the
// command in flight and its counts. So:
//
//   - a notification stored while the notifier (or Symphony) was down is
//     delivered when it comes back;
//   - a restart does not deliver again what was handled: the read resumes
//     after the stored sequence;
//   - the same id published again (a publisher re-handling an event after
//     a restart, hours later, beyond JetStream's 2-minute duplicate
//     window) is counted as a duplicate and not delivered again, for as
//     long as the id is remembered;
//   - a process that ends while the command runs (kill -9, a crash, a
//     stop) delivers that notification again at its next start: at least
//     once, the command seeing SYMPHONY_ATTEMPT=2, up to
//     bus.MaxNotifyAttempts starts (a command that kills Symphony cannot
//     loop). Losing a notification about money or a blocked issue is
//     worse than a second message, and a command can deduplicate on
//     SYMPHONY_EVENT_ID.
//
// A failed command (non-zero exit, timeout, spawn error) is logged with
// the event id and issue, counted, and not retried; the next notification
// is delivered as usual. Commands run one at a time on the notifier's own
// goroutine: a slow one delays only later notifications (each by at most
// notify.timeout_ms) and never a publisher, which only stores the event.
// Without notify.command a notification is acknowledged and counted as
// skipped.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
)

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Environ is the parent environment the command inherits (default
	// os.Environ), before the tracker's secret is removed.
	Environ func() []string
}

// Component is the notifier.
type Component struct {
	opts Options
	log  *slog.Logger
	cfg  atomic.Pointer[bus.ConfigSnapshot]
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("notifier: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompNotifier)}, nil
}

// Name is "notifier".
func (c *Component) Name() string { return bus.CompNotifier }

// Run delivers notifications until ctx ends. It waits for the first
// configuration before it reads any (a notification read before it would
// be skipped as if no command were configured).
func (c *Component) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl := c.opts.Bus.Client(bus.CompNotifier)
	defer cl.Close()
	configs, err := bus.Watch(ctx, cl, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	select {
	case <-ctx.Done():
		return nil
	case e, ok := <-configs.C():
		if !ok {
			return components.Stopped(ctx, fmt.Errorf("config watch ended: %w", configs.Err()))
		}
		c.cfg.Store(&e.Value)
	}
	st, err := loadStatus(ctx, cl)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	d := &deliverer{c: c, cl: cl, st: st, failed: make(chan error, 1)}
	stop, err := bus.Follow(ctx, cl, bus.Notifications, st.Seq+1, func(m bus.Message[bus.Notification], derr error) {
		d.handle(ctx, m, derr)
	})
	if err != nil {
		return components.Stopped(ctx, fmt.Errorf("follow notifications: %w", err))
	}
	defer func() {
		// The command in flight is killed, and its handling has returned,
		// before Run does.
		cancel()
		stop()
		d.wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-d.failed:
			return components.Stopped(ctx, err)
		case e, ok := <-configs.C():
			if !ok {
				return components.Stopped(ctx, fmt.Errorf("config watch ended: %w", configs.Err()))
			}
			c.cfg.Store(&e.Value)
		}
	}
}

// loadStatus reads the notifier's state; none yet is the zero state.
func loadStatus(ctx context.Context, cl *bus.Client) (bus.NotifyStatus, error) {
	e, err := bus.Get(ctx, cl, bus.NotifyState)
	switch {
	case errors.Is(err, bus.ErrKeyNotFound):
		return bus.NotifyStatus{}, nil
	case err != nil:
		return bus.NotifyStatus{}, fmt.Errorf("read the notifier's status: %w", err)
	}
	return e.Value, nil
}
