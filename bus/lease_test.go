package bus

import (
	"errors"
	"testing"
	"time"
)

// TestLease: the first holder gets token 1; a second waits (told who
// holds it) as long as the holder renews; once renewals stop it takes over
// within about a TTL with token 2, and the first holder's next check fails
// as lost; a released lease is taken at once, with token 3.
func TestLease(t *testing.T) {
	b := openTest(t, Options{})
	const ttl = 400 * time.Millisecond
	one := NewLease(b, SchedulerLease, "one", ttl)
	if tok, err := one.Acquire(t.Context(), nil); err != nil || tok != 1 {
		t.Fatalf("first acquisition: token %d, %v; want 1", tok, err)
	}
	standby := make(chan string, 1)
	got := make(chan uint64, 1)
	two := NewLease(b, SchedulerLease, "two", ttl)
	go func() {
		tok, err := two.Acquire(t.Context(), func(h string) { standby <- h })
		if err != nil {
			t.Error(err)
		}
		got <- tok
	}()
	if h := <-standby; h != "one" {
		t.Fatalf("the standby was told %q holds the lease, want one", h)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sbs, err := All(t.Context(), b, Standbys)
		if err == nil && sbs["two"].Name == "two" && !sbs["two"].SeenAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standby's entry never appeared: %v, %v", sbs, err)
		}
	}
	// Renewed for three TTLs: the standby never takes over.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(ttl / RenewEvery) {
		if _, err := one.Check(t.Context()); err != nil {
			t.Fatalf("renewal while held: %v", err)
		}
		select {
		case tok := <-got:
			t.Fatalf("the standby took a renewed lease over (token %d)", tok)
		default:
		}
	}
	stoppedAt := time.Now()
	var tok uint64
	select {
	case tok = <-got:
	case <-time.After(10 * ttl):
		t.Fatal("the standby did not take over an unrenewed lease")
	}
	if tok != 2 {
		t.Fatalf("takeover token %d, want 2", tok)
	}
	if sbs, err := All(t.Context(), b, Standbys); err != nil || len(sbs) != 0 {
		t.Fatalf("standby entries after the takeover: %v, %v; want none", sbs, err)
	}
	if took := time.Since(stoppedAt); took < ttl*holdNum/holdDen {
		t.Fatalf("taken over %s after the last renewal, before the holder's hold ran out", took)
	}
	if _, err := one.Check(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old holder's check after the takeover: %v, want ErrLeaseLost", err)
	}
	if _, err := two.Check(t.Context()); err != nil {
		t.Fatalf("the new holder's check: %v", err)
	}
	if err := two.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	three := NewLease(b, SchedulerLease, "three", time.Hour)
	began := time.Now()
	if tok, err := three.Acquire(t.Context(), nil); err != nil || tok != 3 {
		t.Fatalf("after a release: token %d, %v; want 3", tok, err)
	}
	if time.Since(began) > 5*time.Second {
		t.Fatal("a released lease was not taken at once")
	}
	if _, err := two.Check(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a released holder's check: %v, want ErrLeaseLost", err)
	}
}

// TestLeaseHoldRunsOut: a holder that could not renew for two thirds of a
// TTL (cut off, paused) treats the lease as lost before a standby may
// take it over, even if nobody took it yet.
func TestLeaseHoldRunsOut(t *testing.T) {
	b := openTest(t, Options{})
	const ttl = 300 * time.Millisecond
	l := NewLease(b, SchedulerLease, "one", ttl)
	if _, err := l.Acquire(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl)
	if _, err := l.Check(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("check after a TTL without renewal: %v, want ErrLeaseLost", err)
	}
	if err := l.Keep(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Keep on a lost lease: %v", err)
	}
}
