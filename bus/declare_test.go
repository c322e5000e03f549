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
	changed, err := declare(t.Context(), b.js, DefaultStreamMaxAge)
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

	changed, err = declare(t.Context(), b.js, DefaultStreamMaxAge)
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
	if changed, err := declare(t.Context(), b.js, DefaultStreamMaxAge); err != nil || len(changed) != 0 {
		t.Fatalf("a third declaration updated %v (%v)", changed, err)
	}
}
