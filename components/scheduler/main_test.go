package scheduler

import (
	"os"
	"runtime"
	"testing"
	"testing/synctest"

	"github.com/nats-io/nats-server/v2/server/ats"
)

// TestMain registers with the NATS server's access-time service before any
// test runs, and never unregisters. The service runs one goroutine per
// process, started by the first file store and stopped with the last; one
// started inside a synctest bubble (inBubble) would wait there on a
// channel made outside it, which is not durably blocking: the bubble's
// clock would never move. Registered here, the goroutine lives outside
// every bubble for the whole run.
func TestMain(m *testing.M) {
	ats.Register()
	os.Exit(m.Run())
}

// inBubble runs f in a synctest bubble, where time is a fake clock that
// moves only when every goroutine in the bubble is durably blocked; the
// bus, its server and the world's stand-ins run in it too
// (newBubbleWorld). Afterwards it empties every sync.Pool (two garbage
// collections do): nats.go pools its timers in one, and a timer made in
// the bubble, taken from the pool by a later test, would be waited on
// outside its bubble, a fatal error.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
	runtime.GC()
	runtime.GC()
}
