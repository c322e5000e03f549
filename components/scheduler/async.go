package scheduler

import (
	"context"
	"sync"
	"time"
)

// The scheduler's loop must never wait on a hook, an agent or a slow
// tracker: everything else it owns (dispatch, retries, reconciliation,
// operator commands) would wait behind it. A request that can take long
// (a workspace removal runs before_remove, up to hooks.timeout_ms; the
// start-up sweep lists every terminal issue) is made in a goroutine of its
// own, and its answer comes back into the loop as a follow-up (a closure
// run there), so the state still changes only in the actor's goroutine.

// followUp is what to do with an answer, run in the actor's goroutine.
type followUp func(ctx context.Context)

// asyncs are the requests in flight off the actor's goroutine.
type asyncs struct {
	// done carries each answer's follow-up into Run's loop.
	done chan followUp
	// wg owns the goroutines: Run waits for them after its context ends.
	wg sync.WaitGroup
	// n counts the follow-ups not yet run (actor's goroutine only).
	n int
}

func newAsyncs() asyncs { return asyncs{done: make(chan followUp)} }

// goAsk makes one request in its own goroutine, bounded by timeout and by
// ctx (Run's context), and hands its answer to then in the actor's
// goroutine. then never runs once ctx has ended: nothing is left to own
// the state.
func goAsk[T any](ctx context.Context, a *actor, timeout time.Duration, ask func(context.Context) (T, error), then func(ctx context.Context, res T, err error)) {
	a.async.n++
	a.async.wg.Go(func() {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := ask(rctx)
		cancel()
		select {
		case a.async.done <- func(ctx context.Context) { then(ctx, res, err) }:
		case <-ctx.Done():
		}
	})
}

// settle runs one answer's follow-up (from Run's loop). The last answer a
// Once scheduler waited for may be the end of its work.
func (a *actor) settle(ctx context.Context, f followUp) {
	a.async.n--
	f(ctx)
	a.checkOnce()
}
