package runlog

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus"
)

// TestConnectionIsItsOwn: a second in-process connection (the dashboard's)
// reads what the kernel's connection stores, with the listener's token
// when there is one, and its loss or close leaves the kernel's connection
// storing: the server closes a connection that falls behind, and a slow
// reader must not take the agents' writes with it.
func TestConnectionIsItsOwn(t *testing.T) {
	for _, opts := range []bus.Options{{}, {Listen: "127.0.0.1:0"}} {
		b := openTest(t, opts)
		ctx := t.Context()
		c, err := b.Connection("test dashboard")
		if err != nil {
			t.Fatal(err)
		}
		w := NewWriter(b, 0)
		write := func(seq int) {
			t.Helper()
			ev := bus.TurnEvent{RunID: "own", Turn: 1, Seq: int64(seq), Kind: bus.TurnText, Text: fmt.Sprint(seq)}
			if err := WriteDurable(ctx, w, bus.TurnEvents, ev, fmt.Sprint("own-", seq), "own", "1"); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		write(1)
		if events, _, err := Timeline(ctx, c, "own"); err != nil || len(events) != 1 {
			t.Fatalf("listen=%q: the second connection read %d events, %v", opts.Listen, len(events), err)
		}
		// The server dropping the second connection (as it does a slow
		// consumer) and its owner closing it: the kernel's goes on.
		c.Conn().Close()
		if err := c.Close(ctx); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("close: %v", err)
		}
		write(2)
		if events, _, err := Timeline(ctx, b, "own"); err != nil || len(events) != 2 {
			t.Errorf("listen=%q: after the second connection closed the kernel's stored %d events, %v", opts.Listen, len(events), err)
		}
	}
}
