package bus

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestClientCloseEndsEverythingItOpened: a component's client owns its
// subscriptions, responders and watchers; Close ends them all and returns
// only once a handler in flight has returned.
func TestClientCloseEndsEverythingItOpened(t *testing.T) {
	b := openTest(t, Options{})
	c := b.Client("tester")
	if c.Name() != "tester" || c.Bus() != b {
		t.Fatalf("client = %q on %p", c.Name(), c.Bus())
	}
	ctx := t.Context()
	sub, err := Subscribe(ctx, c, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := Watch(ctx, c, DispatchPause)
	if err != nil {
		t.Fatal(err)
	}
	set, err := WatchSet(ctx, c, Blocks)
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	var returned atomic.Bool
	served, err := Serve(ctx, c, testEcho, func(ctx context.Context, _ string, req echoReq) (echoResp, error) {
		if req.Text == "slow" {
			close(entered)
			<-ctx.Done() // the client's Close ends the handler's context
			time.Sleep(50 * time.Millisecond)
			returned.Store(true)
			return echoResp{}, ctx.Err()
		}
		return echoResp{Text: req.Text}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Ask(ctx, b, testEcho, echoReq{Text: "hi"}, "x"); err != nil || got.Text != "hi" {
		t.Fatalf("Ask through the client's responder = %+v, %v", got, err)
	}
	go func() { _, _ = Ask(ctx, b, testEcho, echoReq{Text: "slow"}, "x") }()
	select {
	case <-entered:
	case <-time.After(testTimeout):
		t.Fatal("slow handler not entered")
	}

	c.Close()
	if !returned.Load() {
		t.Error("Close returned before the handler in flight had returned")
	}
	for name, done := range map[string]<-chan struct{}{"subscription": sub.Done(), "watch": watch.Done(), "watch set": set.Done(), "responder": served} {
		select {
		case <-done:
		default:
			t.Errorf("%s still open after Close", name)
		}
	}
	if _, ok := <-sub.C(); ok {
		t.Error("subscription channel not closed")
	}
	if err := sub.Err(); err != nil {
		t.Errorf("a stopped stream has no error of its own: %v", err)
	}
	if _, err := Ask(ctx, b, testEcho, echoReq{}, "x"); !errors.Is(err, ErrNoResponder) {
		t.Errorf("responder still answering after Close: %v", err)
	}
	// A closed client opens nothing more; Close is idempotent.
	if _, err := Subscribe(ctx, c, ComponentEvents); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Subscribe on a closed client: %v", err)
	}
	if _, err := Watch(ctx, c, DispatchPause); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Watch on a closed client: %v", err)
	}
	if _, err := Serve(ctx, c, testEcho, nil); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Serve on a closed client: %v", err)
	}
	c.Close()
	// The bus itself is untouched: another client works.
	c2 := b.Client("other")
	defer c2.Close()
	sub2, err := Subscribe(ctx, c2, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := Publish(c2, ComponentEvents, ComponentEvent{Component: "x"}, "x"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub2); m.Data.Component != "x" {
		t.Errorf("got %+v", m.Data)
	}
}

// TestStreamCloseAndContext: a stream ends with its context or with Close,
// and either way without an error of its own.
func TestStreamCloseAndContext(t *testing.T) {
	b := openTest(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	byCtx, err := Watch(ctx, b, DispatchPause)
	if err != nil {
		t.Fatal(err)
	}
	byClose, err := Subscribe(t.Context(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-byCtx.Done():
	case <-time.After(testTimeout):
		t.Fatal("watch did not end with its context")
	}
	byClose.Close()
	byClose.Close()
	for _, err := range []error{byCtx.Err(), byClose.Err()} {
		if err != nil {
			t.Errorf("stopped stream reports %v", err)
		}
	}
}

// TestNewStreamForProducersAbove: a package above the kernel (the run log)
// makes its live results a Stream too: send stops once the reader closes.
func TestNewStreamForProducersAbove(t *testing.T) {
	stopped := make(chan struct{})
	s, send, end := NewStream[int](0, func() { close(stopped) })
	go func() {
		for i := 0; send(i); i++ {
		}
		end(nil)
	}()
	if v := <-s.C(); v != 0 {
		t.Fatalf("first = %d", v)
	}
	s.Close()
	<-stopped
	if s.Err() != nil {
		t.Errorf("err = %v", s.Err())
	}
	failed := errors.New("source failed")
	s2, _, end2 := NewStream[int](1, nil)
	end2(failed)
	if _, ok := <-s2.C(); ok || !errors.Is(s2.Err(), failed) {
		t.Errorf("ended stream: ok=%v err=%v", ok, s2.Err())
	}
}

// TestStreamEndsWithTheConnection: a subscription that ended because the
// bus went away says so (Err), unlike one its owner stopped.
func TestStreamEndsWithTheConnection(t *testing.T) {
	b, err := Open(t.Context(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := Subscribe(t.Context(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	case <-time.After(testTimeout):
		t.Fatal("subscription outlived its bus")
	}
	if err := sub.Err(); err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Errorf("Err after the bus closed = %v, want connection closed", err)
	}
}

// TestStoredFollowEndsWithItsClient: a follow of a stream's stored
// messages opened through a client ends when the client closes, like
// everything else it opened.
func TestStoredFollowEndsWithItsClient(t *testing.T) {
	b := openTest(t, Options{})
	ctx := t.Context()
	c := b.Client("reader")
	var seen atomic.Int64
	got := make(chan struct{}, 16)
	stop, err := FollowStored(ctx, c, StreamRuns, "", 0, func(*nats.Msg, StoredMeta) {
		seen.Add(1)
		got <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ev := RunEvent{RunID: "r1", Event: RunDispatched, At: time.Now()}
	if err := storeRunEvent(ctx, b, ev, "m1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(testTimeout):
		t.Fatal("stored message not followed")
	}
	c.Close()
	ev.Event = RunWorkspaceReady
	if err := storeRunEvent(ctx, b, ev, "m2"); err != nil {
		t.Fatal(err)
	}
	// A stored read through the closed client is refused at once.
	if err := ReadStored(ctx, c, StreamRuns, "", func(*nats.Msg, StoredMeta) error { return nil }); !errors.Is(err, ErrClientClosed) {
		t.Errorf("ReadStored through a closed client: %v", err)
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("followed %d messages, want 1: the follow outlived its client", n)
	}
	// Its consumer is gone from the server by the time Close returned.
	st, err := b.JetStream().Stream(ctx, StreamRuns)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s after the client closed", info.State.Consumers, StreamRuns)
	}
}

// TestSendAfterEndIsRefused: a producer that sends after it ended its
// stream is told no instead of panicking on a closed channel.
func TestSendAfterEndIsRefused(t *testing.T) {
	_, send, end := NewStream[int](1, nil)
	end(nil)
	if send(1) {
		t.Error("send after end accepted")
	}
}
