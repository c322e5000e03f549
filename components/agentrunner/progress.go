package agentrunner

import (
	"context"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// progress coalesces one run's agent events into bus.RunProgress messages:
// the first event after a quiet period goes out at once (a stall check or
// the overview sees activity without delay), later ones at most once a
// period, the latest winning. Every event is stored in TURNS regardless;
// this only spares the live readers from decoding each of them.
type progress struct {
	b      *bus.Bus
	period time.Duration

	mu     sync.Mutex
	p      bus.RunProgress
	dirty  bool
	sentAt time.Time
	// sent is the event count of the previous message.
	sent int64
}

// progressPeriod is ProgressPeriod, or a quarter of the stall timeout when
// that is shorter, so stall detection never waits on coalescing.
func progressPeriod(stall time.Duration) time.Duration {
	p := bus.ProgressPeriod
	if stall > 0 {
		p = min(p, max(stall/4, 10*time.Millisecond))
	}
	return p
}

func newProgress(b *bus.Bus, runID string, period time.Duration) *progress {
	return &progress{b: b, period: period, p: bus.RunProgress{RunID: runID}}
}

// rateLimitRawBytes bounds the codex rate-limit snapshot a progress
// message carries (a few hundred bytes in practice).
const rateLimitRawBytes = 4 << 10

// note records an event; it publishes at once when the last message is a
// period old.
func (pr *progress) note(ev bus.TurnEvent, now time.Time) {
	if pr == nil {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.p.Turn, pr.p.Events, pr.p.Last = ev.Turn, max(pr.p.Events, ev.Seq), ev.Brief()
	if ev.Totals != nil {
		t := *ev.Totals
		pr.p.Totals = &t
	}
	if ev.IsRateLimit() {
		rl := ev.Brief()
		if ev.Kind == bus.TurnRateLimit && len(ev.Raw) <= rateLimitRawBytes {
			// codex's own rate-limit snapshot, which the dashboard's API
			// gives as the reference gives it (rate_limits): small, and
			// at most one a progress message.
			rl.Raw = ev.Raw
		}
		pr.p.RateLimit = &rl
	}
	pr.dirty = true
	if now.Sub(pr.sentAt) >= pr.period {
		pr.sendLocked(now)
	}
}

// flush publishes what is not published yet.
func (pr *progress) flush(now time.Time) {
	if pr == nil {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.dirty {
		pr.sendLocked(now)
	}
}

// sendLocked publishes under the lock, so messages leave in order.
func (pr *progress) sendLocked(now time.Time) {
	pr.p.New = pr.p.Events - pr.sent
	_ = bus.Publish(pr.b, bus.AgentProgress, pr.p, pr.p.RunID)
	pr.p.RateLimit = nil
	pr.dirty, pr.sentAt, pr.sent = false, now, pr.p.Events
}

// run publishes the latest progress every period while events come, until
// ctx ends; then it publishes what is left.
func (pr *progress) run(ctx context.Context) {
	t := time.NewTicker(pr.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			pr.flush(time.Now())
			return
		case now := <-t.C:
			pr.mu.Lock()
			if pr.dirty && now.Sub(pr.sentAt) >= pr.period {
				pr.sendLocked(now)
			}
			pr.mu.Unlock()
		}
	}
}
