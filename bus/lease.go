package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// LeaseState is the value of a lease key: who holds it and the fencing
// token of its holding, which grows by one with every acquisition, so a
// claim made under an older holding can always be told from a newer one.
type LeaseState struct {
	Holder string `json:"holder"`
	Token  uint64 `json:"token"`
	TTLMS  int64  `json:"ttl_ms"`
	// At is when the holder last renewed, by its clock: for people; no
	// process compares it with its own clock.
	At time.Time `json:"at"`
	// Released is set by a holder that let go on its way out: a standby
	// takes over at once instead of after the TTL.
	Released bool `json:"released,omitempty"`
}

// SchedulerLease is the lease of the one `symphony run` that schedules
// when several share a cluster (--nats).
var SchedulerLease = kvKey[LeaseState](BucketState, "lease.scheduler")

// StandbyState is a standby's entry (KV symphony_state, standby.<name>):
// who waits to take the lease over, renewed while it waits, so the
// dashboard can list the standbys and when each was last heard of.
type StandbyState struct {
	Name   string    `json:"name"`
	Since  time.Time `json:"since"`
	SeenAt time.Time `json:"seen_at"`
	TTLMS  int64     `json:"ttl_ms"`
}

// Standbys are the entries of the processes standing by for the scheduler
// lease.
var Standbys = keySet[StandbyState](BucketState, "standby")

// standbyKey is the key of holder's standby entry: its name with every
// character a key may not hold replaced by '_' ("host:pid" → "host_pid").
func standbyKey(holder string) (Key[StandbyState], error) {
	id := []byte(holder)
	for i, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			id[i] = '_'
		}
	}
	if len(id) == 0 {
		id = []byte("_")
	}
	return Standbys.Key(string(id))
}

// ErrLeaseLost is returned by Lease.Check once the lease has passed to
// another holder or could not be renewed in time.
var ErrLeaseLost = errors.New("the scheduler lease is lost")

// Lease is one process's hold on a lease key, made and kept with
// compare-and-set on the key's revision; no two processes' clocks are
// ever compared. A standby takes the lease over when the key's revision
// has not changed for a whole TTL by its own clock; the holder treats the
// lease as lost once half a TTL has passed since it sent its
// last successful renewal, well before any standby may take over (the
// standby's wait starts only when it sees that renewal). Renewals come
// every TTL/RenewEvery, and with every Check.
type Lease struct {
	ep     Endpoint
	key    Key[LeaseState]
	holder string
	ttl    time.Duration

	mu    sync.Mutex
	rev   uint64
	token uint64
	// validUntil is when the holding ends without a renewal (zero: not
	// held).
	validUntil time.Time
}

// Lease timing, as fractions of the TTL.
const (
	// RenewEvery: the holder renews RenewEvery times per TTL.
	RenewEvery = 6
	// holdNum/holdDen: the holder stops trusting its hold half a TTL
	// after sending its last successful renewal. Keep notices within two
	// renewal periods more (a renewal that hangs until its timeout, then
	// the next), 5/6 of a TTL at worst: a sixth of a TTL before any
	// standby may take over, for the holder to kill its agents.
	holdNum, holdDen = 1, 2
)

// NewSchedulerLease returns holder's (not yet acquired) hold on
// SchedulerLease with ttl: what `symphony run --nats` holds to schedule.
func NewSchedulerLease(ep Endpoint, holder string, ttl time.Duration) *Lease {
	return NewLease(ep, SchedulerLease, holder, ttl)
}

// NewLease returns holder's (not yet acquired) hold on key with ttl.
func NewLease(ep Endpoint, key Key[LeaseState], holder string, ttl time.Duration) *Lease {
	return &Lease{ep: ep, key: key, holder: holder, ttl: ttl}
}

// Acquire waits until the lease is this holder's and returns its fencing
// token. It takes a missing or released lease at once, and a held one
// when its revision has stood still for a TTL. onStandby is called once
// if the lease is held by another when Acquire starts (nil: not called).
func (l *Lease) Acquire(ctx context.Context, onStandby func(holder string)) (uint64, error) {
	var seenRev uint64
	var seenAt time.Time
	told := false
	poll := max(l.ttl/(2*RenewEvery), 10*time.Millisecond)
	sb := l.standby()
	defer sb.leave()
	for {
		sent := time.Now()
		e, err := Get(ctx, l.ep, l.key)
		switch {
		case errors.Is(err, ErrKeyNotFound):
			if rev, err := Create(ctx, l.ep, l.key, l.state(1)); err == nil {
				return l.held(rev, 1, sent), nil
			}
		case err != nil:
			// The cluster may be electing a leader: try again.
		case e.Value.Released || (e.Revision == seenRev && time.Since(seenAt) >= l.ttl):
			token := e.Value.Token + 1
			if rev, err := Update(ctx, l.ep, l.key, l.state(token), e.Revision); err == nil {
				return l.held(rev, token, sent), nil
			}
		case e.Revision != seenRev:
			seenRev, seenAt = e.Revision, time.Now()
			if !told && onStandby != nil {
				onStandby(e.Value.Holder)
			}
			told = true
		}
		if told {
			sb.beat(ctx)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// standbyEntry writes a waiting holder's StandbyState every half TTL and
// removes it when the wait ends.
type standbyEntry struct {
	l      *Lease
	key    Key[StandbyState]
	ok     bool
	since  time.Time
	last   time.Time
	joined bool
}

func (l *Lease) standby() *standbyEntry {
	k, err := standbyKey(l.holder)
	return &standbyEntry{l: l, key: k, ok: err == nil, since: time.Now().UTC()}
}

// beat renews the entry when half a TTL has passed since the last write;
// a failed write is left to the next beat (the entry is for people).
func (s *standbyEntry) beat(ctx context.Context) {
	if !s.ok || time.Since(s.last) < s.l.ttl/2 {
		return
	}
	st := StandbyState{Name: s.l.holder, Since: s.since, SeenAt: time.Now().UTC(), TTLMS: s.l.ttl.Milliseconds()}
	if _, err := Put(ctx, s.l.ep, s.key, st); err == nil {
		s.last, s.joined = time.Now(), true
	}
}

// leave removes the entry (best effort, bounded by a TTL).
func (s *standbyEntry) leave() {
	if !s.joined {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(s.l.ttl, time.Second))
	defer cancel()
	_ = Delete(ctx, s.l.ep, s.key)
}

func (l *Lease) state(token uint64) LeaseState {
	return LeaseState{Holder: l.holder, Token: token, TTLMS: l.ttl.Milliseconds(), At: time.Now().UTC()}
}

func (l *Lease) held(rev, token uint64, sent time.Time) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev, l.token, l.validUntil = rev, token, sent.Add(l.ttl*holdNum/holdDen)
	return token
}

// Check renews the lease with compare-and-set on the revision this holder
// last wrote, and returns the fencing token: nil error means that at the
// moment the server stored the renewal, the lease was this holder's. It is
// what the scheduler calls before every dispatch. Once it fails with
// ErrLeaseLost the lease stays lost (Acquire again for a new holding).
func (l *Lease) Check(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.validUntil.IsZero() {
		return 0, ErrLeaseLost
	}
	sent := time.Now()
	if sent.After(l.validUntil) {
		l.validUntil = time.Time{}
		return 0, fmt.Errorf("%w: not renewed for %s", ErrLeaseLost, l.ttl*holdNum/holdDen)
	}
	rev, err := Update(ctx, l.ep, l.key, l.state(l.token), l.rev)
	if errors.Is(err, ErrRevisionChanged) {
		l.validUntil = time.Time{}
		return 0, fmt.Errorf("%w: another process holds it", ErrLeaseLost)
	}
	if err != nil {
		return 0, fmt.Errorf("renew the lease: %w", err)
	}
	l.rev, l.validUntil = rev, sent.Add(l.ttl*holdNum/holdDen)
	return l.token, nil
}

// Keep renews the lease every TTL/RenewEvery until ctx ends or the lease
// is lost; it returns the reason (ctx's error when ctx ended). A failed
// renewal (the cluster between leaders) is tried again at the next beat;
// the hold runs out on its own if none succeeds in time.
func (l *Lease) Keep(ctx context.Context) error {
	t := time.NewTicker(l.ttl / RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, l.ttl/RenewEvery)
		_, err := l.Check(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
	}
}

// Release gives the lease up (a clean stop): a standby takes over at once.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.validUntil.IsZero() {
		return nil
	}
	l.validUntil = time.Time{}
	st := l.state(l.token)
	st.Released = true
	_, err := Update(ctx, l.ep, l.key, st, l.rev)
	return err
}
