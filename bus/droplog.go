package bus

import (
	"log/slog"
	"sync"
	"time"
)

// dropLogEvery is how often at most one kind of dropped message is logged.
const dropLogEvery = 10 * time.Second

// dropLog logs messages the bus drops (undecodable, delivered by a stream
// consumer, a request without a reply) at most once per dropLogEvery per
// kind, with how many were dropped since the last line. The drops come
// from outside (a listener client's consumer aimed at a component's
// subject delivers copies and idle heartbeats at will): a line each would
// flood the log and crowd out the lines that matter.
type dropLog struct {
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	kinds map[string]*dropKind
}

type dropKind struct {
	last    time.Time
	skipped int
}

func newDropLog(log *slog.Logger) *dropLog {
	return &dropLog{log: log, now: time.Now, kinds: map[string]*dropKind{}}
}

// warn logs msg with args unless a line of this msg was logged within
// dropLogEvery; then it only counts it.
func (d *dropLog) warn(msg string, args ...any) {
	d.mu.Lock()
	k := d.kinds[msg]
	if k == nil {
		k = &dropKind{}
		d.kinds[msg] = k
	}
	now := d.now()
	if !k.last.IsZero() && now.Sub(k.last) < dropLogEvery {
		k.skipped++
		d.mu.Unlock()
		return
	}
	skipped := k.skipped
	k.last, k.skipped = now, 0
	d.mu.Unlock()
	if skipped > 0 {
		args = append(args, "more_dropped_unlogged", skipped)
	}
	d.log.Warn(msg, args...)
}
