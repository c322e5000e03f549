package bus

import (
	"slices"
	"testing"
	"time"
)

// TestRedeclareChangesNothing: declaring the catalogue over a store that
// already has it sends no update (an update rewrites a stream's metadata
// on disk); a stream or bucket changed behind Symphony's back is put back.
func TestRedeclareChangesNothing(t *testing.T) {
	b := openTest(t, Options{})
	changed, err := declare(t.Context(), b.js, DefaultStreamMaxAge, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 0 {
		t.Fatalf("a second declaration updated %v", changed)
	}

	turns, err := b.js.Stream(t.Context(), StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	cfg := turns.CachedInfo().Config
	cfg.MaxAge = time.Hour
	if _, err := b.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	state, err := b.js.Stream(t.Context(), "KV_"+BucketState)
	if err != nil {
		t.Fatal(err)
	}
	kcfg := state.CachedInfo().Config
	kcfg.MaxMsgsPerSubject = 5
	if _, err := b.js.UpdateStream(t.Context(), kcfg); err != nil {
		t.Fatal(err)
	}

	changed, err = declare(t.Context(), b.js, DefaultStreamMaxAge, 1)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	if want := []string{"KV_" + BucketState, StreamTurns}; !slices.Equal(changed, want) {
		t.Fatalf("declaration updated %v, want %v", changed, want)
	}
	if info, err := turns.Info(t.Context()); err != nil || info.Config.MaxAge != DefaultStreamMaxAge {
		t.Errorf("turns max age after declaring: %v %v", info.Config.MaxAge, err)
	}
	if info, err := state.Info(t.Context()); err != nil || info.Config.MaxMsgsPerSubject != 1 {
		t.Errorf("state history after declaring: %v %v", info.Config.MaxMsgsPerSubject, err)
	}
	if changed, err := declare(t.Context(), b.js, DefaultStreamMaxAge, 1); err != nil || len(changed) != 0 {
		t.Fatalf("a third declaration updated %v (%v)", changed, err)
	}
}

// TestStreamMaxAgeFollowsRetention: the history streams' backstop outlasts
// a long prune retention by a week, so the pruner, not JetStream, bounds
// the store; a short one keeps the default.
func TestStreamMaxAgeFollowsRetention(t *testing.T) {
	day := 24 * time.Hour
	for retention, want := range map[time.Duration]time.Duration{0: DefaultStreamMaxAge, 30 * day: DefaultStreamMaxAge, 180 * day: 187 * day} {
		if got := StreamMaxAgeFor(retention); got != want {
			t.Errorf("retention %v: backstop %v, want %v", retention, got, want)
		}
	}
	b := openTest(t, Options{StreamMaxAge: StreamMaxAgeFor(180 * day)})
	turns, err := b.js.Stream(t.Context(), StreamTurns)
	if err != nil {
		t.Fatal(err)
	}
	if got := turns.CachedInfo().Config.MaxAge; got != 187*day {
		t.Errorf("TURNS MaxAge %v with a 180-day retention, want 187 days", got)
	}
}
