package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/symphony-oss/symphony/bus"
)

// foldKey folds change into the value under k with a compare-and-set:
// it reads the value (absent when the key has none), lets change alter it
// (false: leave it as it is) and stores it only if nobody wrote the key
// meanwhile, reading afresh and trying again otherwise. It returns the
// value as stored (or as read, when change left it). what names the value
// in errors. The lifetime and the daily spends are kept this way: only
// the scheduler writes them, so a conflict is rare, but a restart's
// recovery and the live handling may meet.
func foldKey[T any](ctx context.Context, ep bus.Endpoint, k bus.Key[T], what string, absent T, change func(*T) bool) (T, error) {
	for range spendTries {
		v, rev := absent, uint64(0)
		e, err := bus.Get(ctx, ep, k)
		switch {
		case err == nil:
			v, rev = e.Value, e.Revision
		case !errors.Is(err, bus.ErrKeyNotFound):
			return absent, fmt.Errorf("read %s: %w", what, err)
		}
		if !change(&v) {
			return v, nil
		}
		if rev == 0 {
			_, err = bus.Create(ctx, ep, k, v)
		} else {
			_, err = bus.Update(ctx, ep, k, v, rev)
		}
		if errors.Is(err, bus.ErrKeyExists) || errors.Is(err, bus.ErrRevisionChanged) {
			continue
		}
		if err != nil {
			return absent, fmt.Errorf("store %s: %w", what, err)
		}
		return v, nil
	}
	return absent, fmt.Errorf("store %s: it kept changing", what)
}
