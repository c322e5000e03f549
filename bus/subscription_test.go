package bus

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestIdleSubscriptionsPreallocateNothing: a subscription's pending queue
// grows with what is pending. (nats.go's SubscribeSync preallocated a
// 65,536-slot channel, 512 KiB, per subscription: most of an idle
// process's heap, and scanned by every GC.)
func TestIdleSubscriptionsPreallocateNothing(t *testing.T) {
	b := openTest(t, Options{})
	const n = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := Subscribe(t.Context(), b, ComponentEvents); err != nil {
			t.Fatal(err)
		}
		if _, err := Serve(t.Context(), b, testEcho, func(context.Context, string, echoReq) (echoResp, error) { return echoResp{}, nil }); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// 2n subscriptions with preallocated queues would be 2n × 512 KiB
	// = 50 MiB; list-backed ones are a few KiB each (more under -race).
	if got := after.TotalAlloc - before.TotalAlloc; got > 2*n*64<<10 {
		t.Errorf("%d idle subscriptions allocated %d KiB, want < %d KiB", 2*n, got>>10, 2*n*64)
	}
	// They all still work.
	if _, err := Ask(t.Context(), b, testEcho, echoReq{}, "x"); err != nil {
		t.Fatal(err)
	}
}

// TestSubscriptionEndsWhileItsReaderIsAway: a message is waiting to be
// handed to a reader that is not reading, and more are pending behind it;
// ending the context still ends the subscription at once and closes C.
func TestSubscriptionEndsWhileItsReaderIsAway(t *testing.T) {
	b := openTest(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := Subscribe(ctx, b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := Publish(b, ComponentEvents, ComponentEvent{Component: "c", Restarts: i}, "c"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, sub); got.Data.Restarts != 0 {
		t.Fatalf("first message %+v", got.Data)
	}
	cancel()
	select {
	case <-sub.Done():
	case <-time.After(testTimeout):
		t.Fatal("subscription did not end with its context")
	}
	// What was pending is discarded with the NATS subscription; C is
	// closed (at most the one message being handed over may come first).
	n := 0
	for range sub.C() {
		n++
	}
	if n > 1 {
		t.Errorf("%d messages delivered after the end", n)
	}
}

// TestSubscriptionsEndWithTheBus: closing the bus ends subscriptions and
// responders whose context is still live.
func TestSubscriptionsEndWithTheBus(t *testing.T) {
	b, err := Open(t.Context(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := Subscribe(context.Background(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	served, err := Serve(context.Background(), b, testEcho, func(context.Context, string, echoReq) (echoResp, error) { return echoResp{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan struct{}{"subscription": sub.Done(), "responder": served} {
		select {
		case <-ch:
		case <-time.After(testTimeout):
			t.Fatalf("%s did not end with the bus", name)
		}
	}
	if _, ok := <-sub.C(); ok {
		t.Error("C delivered after the bus closed")
	}
}
