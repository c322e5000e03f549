package bus

import (
	"testing"
	"time"
)

// TestWatchSetSeesPutsAndDeletes: initial values, Ready, then changes.
func TestWatchSetSeesPutsAndDeletes(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	k1, _ := Blocks.Key("i1")
	if _, err := Put(ctx, b, k1, BlockedEntry{IssueID: "i1", Identifier: "A-1"}); err != nil {
		t.Fatal(err)
	}
	// A key of another family in the same bucket is not seen.
	if _, err := Put(ctx, b, DispatchPause, PauseState{Paused: true}); err != nil {
		t.Fatal(err)
	}
	ch, err := WatchSet(ctx, b, Blocks)
	if err != nil {
		t.Fatal(err)
	}
	next := func() SetEvent[BlockedEntry] {
		select {
		case e := <-ch.C():
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no watch event")
		}
		return SetEvent[BlockedEntry]{}
	}
	if e := next(); e.ID != "i1" || e.Value.Identifier != "A-1" || e.Deleted {
		t.Fatalf("initial = %+v", e)
	}
	if e := next(); !e.Ready {
		t.Fatalf("want Ready, got %+v", e)
	}
	k2, _ := Blocks.Key("i2")
	if _, err := Put(ctx, b, k2, BlockedEntry{IssueID: "i2", Identifier: "A-2"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.ID != "i2" || e.Deleted {
		t.Fatalf("put = %+v", e)
	}
	if err := Delete(ctx, b, k1); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.ID != "i1" || !e.Deleted {
		t.Fatalf("delete = %+v", e)
	}
}
