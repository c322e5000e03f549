package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// TestFence: with a lease (Options.Fence), the fence is asked before every
// dispatch; while it answers, each claim records its token; once it says
// the lease is lost, nothing more is dispatched and no claim is made.
func TestFence(t *testing.T) {
	var mu sync.Mutex
	token, lost, asked := uint64(7), false, 0
	fence := func(context.Context) (uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if lost {
			return 0, bus.ErrLeaseLost
		}
		return token, nil
	}
	w := newWorldOpts(t, t.TempDir(), Options{Fence: fence}, iss("A-1", 1, "", "Todo"))
	w.configure(func(c *bus.Config) { c.Agent.MaxConcurrentAgents = 5 })
	w.pollUntil("dispatched", func() bool { return len(w.dispatches) == 1 })
	k, _ := bus.Claims.Key("A-1")
	cl, err := bus.Get(t.Context(), w.b, k)
	if err != nil || cl.Value.Fence != 7 {
		t.Fatalf("claim %+v, %v; want fence 7", cl.Value, err)
	}
	mu.Lock()
	lost = true
	before := asked
	mu.Unlock()
	w.mu.Lock()
	w.iss["A-2"] = iss("A-2", 2, "", "Todo")
	w.mu.Unlock()
	w.pollUntil("the fence asked again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asked > before
	})
	w.settle()
	if n := w.dispatchCount(); n != 1 {
		t.Fatalf("%d dispatches after the lease was lost, want 1", n)
	}
	k2, _ := bus.Claims.Key("A-2")
	if _, err := bus.Get(t.Context(), w.b, k2); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("a claim was made without the lease: %v", err)
	}
}
