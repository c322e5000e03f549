package bus

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawClient is a plain nats.go client of the listener with one token; every
// asynchronous error the server sends it (a refused publish or
// subscription) arrives on errs.
type rawClient struct {
	nc   *nats.Conn
	errs chan error
}

func dialListener(t *testing.T, b *Bus, token string) *rawClient {
	t.Helper()
	c := &rawClient{errs: make(chan error, 64)}
	nc, err := nats.Connect(b.ListenURL(), nats.Token(token), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case c.errs <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// refused waits for the server's refusal naming what (a publish or a
// subscription and its subject).
func (c *rawClient) refused(t *testing.T, what string) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return
			}
		case <-deadline:
			t.Errorf("the server did not refuse %s", what)
			return
		}
	}
}

func readToken(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// TestListenerPermissions checks the listener's roles at the Go level. The
// read token reads runs, history and KV (what symphony runs and replay do)
// but every write is refused by the server: KV writes, stream purge and
// delete, a run's purge, a durable consumer by the legacy subject, listing
// consumers, publishing and queue-subscribing on component subjects,
// subscribing to the internal inbox, operator requests. The control token
// adds exactly the two operator requests. Symphony's own token, were it to
// leak, is refused over TCP.
func TestListenerPermissions(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0", AllowControls: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*testTimeout)
	defer cancel()
	started := time.Now().UTC().Add(-time.Minute)
	if err := storeRunEvent(ctx, b, RunEvent{RunID: "r1", Event: RunDispatched, At: started, Issue: IssueRef{ID: "i1", Identifier: "P-1"}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := Put(ctx, b, ConfigCurrent, ConfigSnapshot{Version: 1}); err != nil {
		t.Fatal(err)
	}
	var prunes, controls int
	if _, err := Serve(ctx, b, PruneRuns, func(context.Context, string, PruneRequest) (PruneResult, error) {
		prunes++
		return PruneResult{Kept: 1}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(ctx, b, SchedulerControl, func(context.Context, string, Control) (ControlResult, error) {
		controls++
		return ControlResult{Paused: true}, nil
	}); err != nil {
		t.Fatal(err)
	}

	// Reads: what runs and replay do, through the bus's own client.
	rb, err := ConnectDataDir(ctx, b.DataDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close(context.Background())
	if runs, err := Values(ctx, rb, RunSummaries); err != nil || len(runs) != 1 || runs[0].RunID != "r1" {
		t.Errorf("summaries over the listener: %+v %v", runs, err)
	}
	n := 0
	for _, err := range History(ctx, rb, RunEvents, "r1") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("history over the listener: %d events, want 1", n)
	}
	if e, err := Get(ctx, rb, ConfigCurrent); err != nil || e.Value.Version != 1 {
		t.Errorf("kv get over the listener: %+v %v", e, err)
	}

	// Writes through the bus's client fail.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	wctx, wcancel := short()
	if _, err := Put(wctx, rb, ConfigCurrent, ConfigSnapshot{Version: 99}); err == nil {
		t.Error("the read token wrote the configuration")
	}
	wcancel()
	wctx, wcancel = short()
	if err := purgeRunEvents(wctx, rb, "r1"); err == nil {
		t.Error("the read token purged a run")
	}
	wcancel()
	wctx, wcancel = short()
	if _, err := Ask(wctx, rb, PruneRuns, PruneRequest{OlderThanMS: 1}); err == nil {
		t.Error("the read token asked for a prune")
	}
	wcancel()

	// Refusals, one by one, as the server reports them.
	r := dialListener(t, b, readToken(t, b.TokenFile()))
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{
		"$KV." + BucketState + ".paused",
		"$JS.API.STREAM.PURGE." + StreamRuns,
		"$JS.API.STREAM.DELETE." + StreamTurns,
		"$JS.API.STREAM.UPDATE." + StreamHooks,
		"$JS.API.STREAM.MSG.DELETE." + StreamRuns,
		"$JS.API.CONSUMER.DURABLE.CREATE." + StreamRuns + ".mine",
		"$JS.API.CONSUMER.NAMES." + StreamRuns,
		"$JS.API.CONSUMER.LIST." + StreamRuns,
		"symphony.tracker.snapshot",
		"symphony.agent.dispatch",
		"symphony.run.r1.run_finished",
	} {
		if err := r.nc.Publish(subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		r.refused(t, `Publish to "`+subject+`"`)
	}
	wctx, wcancel = short()
	if err := js.DeleteStream(wctx, StreamHooks); err == nil {
		t.Error("the read token deleted a stream")
	}
	wcancel()
	for _, sub := range []struct{ subject, queue string }{
		{SchedulerControl.spec.Pattern, "q." + SchedulerControl.spec.Pattern}, // would take the scheduler's requests
		{internalInboxPrefix + ".>", ""},
		{">", ""},
		{"$JS.EVENT.>", ""},
	} {
		if sub.queue != "" {
			_, err = r.nc.QueueSubscribeSync(sub.subject, sub.queue)
		} else {
			_, err = r.nc.SubscribeSync(sub.subject)
		}
		if err != nil {
			t.Fatal(err)
		}
		r.refused(t, `Subscription to "`+sub.subject+`"`)
	}
	// A symphony.> subscription gets the events, not the requests between
	// components (whose reply subjects are where answers are awaited): a
	// request published before an event never arrives before it.
	watch, err := r.nc.SubscribeSync(Root + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.nc.PublishMsg(&nats.Msg{Subject: "symphony.workspace.hook", Reply: internalInboxPrefix + ".x.1", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := Publish(b, ComponentEvents, ComponentEvent{Component: "tracker", State: ComponentStarted}, "tracker"); err != nil {
		t.Fatal(err)
	}
	if m, err := watch.NextMsg(testTimeout); err != nil || m.Subject != "symphony.component.tracker" {
		t.Errorf("symphony.> delivered %v (%v) first, want the component event", m, err)
	}
	if _, err := r.nc.SubscribeSync("symphony.workspace.hook"); err != nil {
		t.Fatal(err)
	}
	r.refused(t, `Subscription to "symphony.workspace.hook"`)

	if streamMsgs(t, b, StreamRuns) != 1 {
		t.Error("RUNS changed")
	}
	if _, err := b.js.Stream(ctx, StreamHooks); err != nil {
		t.Errorf("HOOKS: %v", err)
	}
	if e, err := Get(ctx, b, ConfigCurrent); err != nil || e.Value.Version != 1 {
		t.Errorf("configuration: %+v %v", e.Value, err)
	}
	if controls != 0 || prunes != 0 {
		t.Errorf("the read token reached a responder: %d controls, %d prunes", controls, prunes)
	}

	// The control token: the two operator requests, no writes.
	ob, err := ConnectDataDirControl(ctx, b.DataDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close(context.Background())
	if res, err := Ask(ctx, ob, PruneRuns, PruneRequest{OlderThanMS: 1}); err != nil || res.Kept != 1 {
		t.Errorf("prune with the control token: %+v %v", res, err)
	}
	if res, err := Ask(ctx, ob, SchedulerControl, Control{Action: ControlPause}); err != nil || !res.Paused {
		t.Errorf("control with the control token: %+v %v", res, err)
	}
	wctx, wcancel = short()
	if _, err := Put(wctx, ob, ConfigCurrent, ConfigSnapshot{Version: 99}); err == nil {
		t.Error("the control token wrote the configuration")
	}
	wcancel()

	// Symphony's own token is good in process only.
	if nc, err := nats.Connect(b.ListenURL(), nats.Token(b.token)); err == nil {
		nc.Close()
		t.Error("the internal token was accepted over TCP")
	}
}

// TestListenerControlsAreOptIn: without AllowControls there is no control
// token (a stale file from an earlier start is removed) and the prune
// command is told so; controls without a listener are refused; with no
// listener at all there is no authentication and no token file.
func TestListenerControlsAreOptIn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+ControlTokenFileName, []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, Options{DataDir: dir, Listen: "127.0.0.1:0"})
	if b.ControlTokenFile() != "" || b.ControlHint() != "" {
		t.Error("a control token without AllowControls")
	}
	if _, err := os.Stat(dir + "/" + ControlTokenFileName); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale control token kept: %v", err)
	}
	if _, err := ConnectDataDirControl(t.Context(), dir, nil); !errors.Is(err, ErrNoControls) {
		t.Errorf("ConnectDataDirControl: %v, want ErrNoControls", err)
	}
	if _, err := Open(t.Context(), Options{DataDir: t.TempDir(), AllowControls: true}); err == nil {
		t.Error("AllowControls without a listener was accepted")
	}
	quiet := openTest(t, Options{})
	if quiet.token != "" || quiet.TokenFile() != "" {
		t.Error("authentication without a listener")
	}
	if err := Publish(quiet, ComponentEvents, ComponentEvent{Component: "x", State: ComponentStarted}, "x"); err != nil {
		t.Error(err)
	}
}

// TestListenerConsumersCannotWrite pins what a listener client's push
// consumer can reach. The server does not check a deliver subject against
// the creator's permissions, and once any subscriber shows interest in it
// (a listener client's own, on the $KV.> and event subjects its account
// imports) the consumer is bound and delivers in Symphony's account, where
// the streams store what arrives on their subjects. So the bus refuses a
// listener client's consumer whose deliver subject is not an _INBOX
// subject; the store is unchanged.
func TestListenerConsumersCannotWrite(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	ctx := t.Context()
	if err := storeRunEvent(ctx, b, RunEvent{RunID: "r1", Event: RunDispatched, At: time.Now().UTC(), Issue: IssueRef{ID: "i1", Identifier: "P-1"}}, ""); err != nil {
		t.Fatal(err)
	}
	r := dialListener(t, b, readToken(t, b.TokenFile()))
	// A subscription on the very subject binds a push consumer aimed
	// there (before this check, RUNS's message was then stored in
	// KV_symphony_state); wildcards do not.
	for _, subj := range []string{"$KV.>", Root + ".>", "$KV." + BucketState + ".claim.i1"} {
		if _, err := r.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"$KV." + BucketState + ".claim.i1", "symphony.run.r1." + string(RunFinished), "$JS.API.STREAM.DELETE." + StreamTurns, "$JS.API.STREAM.PURGE." + StreamRuns} {
		_, err := js.CreateConsumer(ctx, StreamRuns, jetstream.ConsumerConfig{DeliverSubject: target, AckPolicy: jetstream.AckNonePolicy})
		if err == nil || !strings.Contains(err.Error(), "deliver subject") {
			t.Errorf("consumer delivering to %s: %v, want refused", target, err)
		}
	}
	if _, err := Get(ctx, b, mustKey(t, Claims, "i1")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("claim written by a delivery: %v", err)
	}
	if _, err := b.js.Stream(ctx, StreamTurns); err != nil {
		t.Errorf("TURNS: %v", err)
	}
	if n := streamMsgs(t, b, StreamRuns); n != 1 {
		t.Errorf("RUNS holds %d messages, want 1", n)
	}
	if n := streamMsgs(t, b, "KV_"+BucketState); n != 0 {
		t.Errorf("KV_%s holds %d messages, want 0", BucketState, n)
	}
}

func mustKey[T any](t *testing.T, s KeySet[T], id string) Key[T] {
	t.Helper()
	k, err := s.Key(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestConsumerCopiesAreNotEvents: a listener client may create a push
// consumer and aim it at a subject a component listens on; the server
// does not check the deliver subject against its permissions. The copies
// it delivers carry their original headers, so the type check alone
// would take a stored message of the right type as a new event. They are
// dropped because a consumer's delivery, unlike a publish, always has an
// acknowledgement subject as its reply.
func TestConsumerCopiesAreNotEvents(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	ctx := t.Context()
	// A stream holding a well-formed ComponentEvent (made here with the
	// internal connection: it stands for any stored message whose type a
	// component's subscription accepts).
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "COPIES", Subjects: []string{"copies.src"}}); err != nil {
		t.Fatal(err)
	}
	m, err := encode("copies.src", ComponentEvents.spec, ComponentEvents.spec.typeName, ComponentEvent{Component: "tracker", State: ComponentFailed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	sub, err := Subscribe(ctx, b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := ComponentEvents.Subject("tracker")
	r := dialListener(t, b, readToken(t, b.TokenFile()))
	// The server binds a push consumer when a subscriber of the listener's
	// own shows interest in its deliver subject; it then delivers to every
	// subscriber of that subject, the component's included.
	if _, err := r.nc.SubscribeSync(target); err != nil {
		t.Fatal(err)
	}
	// A listener client may no longer create such a consumer
	// (TestListenerConsumersCannotWrite); the internal connection stands
	// for any consumer that delivers there.
	if _, err := b.js.CreateConsumer(ctx, "COPIES", jetstream.ConsumerConfig{DeliverSubject: target, AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatalf("consumer delivering to %s: %v", target, err)
	}
	deadline := time.Now().Add(testTimeout)
	for sub.Invalid() == 0 && time.Now().Before(deadline) {
		select {
		case got := <-sub.C():
			t.Fatalf("a consumer's copy was taken as an event: %+v", got.Data)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if sub.Invalid() != 1 {
		t.Fatalf("copies refused = %d, want 1", sub.Invalid())
	}
	// A real publish still arrives.
	if err := Publish(b, ComponentEvents, ComponentEvent{Component: "tracker", State: ComponentStarted}, "tracker"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, sub); got.Data.State != ComponentStarted {
		t.Errorf("after the copy: %+v", got.Data)
	}
}

// storeRunEvent stores a run's lifecycle event and a summary of the run,
// as runlog.Record does for the first event of a run (runlog is above
// this package: its tests cannot be reached from here).
func storeRunEvent(ctx context.Context, b *Bus, ev RunEvent, msgID string) error {
	if _, err := PublishDurable(ctx, b, RunEvents, ev, msgID, ev.RunID, string(ev.Event)); err != nil {
		return err
	}
	k, err := RunSummaries.Key(ev.RunID)
	if err != nil {
		return err
	}
	_, err = Put(ctx, b, k, RunSummary{RunID: ev.RunID, Issue: ev.Issue, Attempt: ev.Attempt, Status: "running", Started: ev.At})
	return err
}

// purgeRunEvents purges a run's lifecycle events, the first write
// runlog.Purge makes.
func purgeRunEvents(ctx context.Context, b *Bus, runID string) error {
	subject, err := RunEvents.Filter(runID)
	if err != nil {
		return err
	}
	s, err := b.js.Stream(ctx, StreamRuns)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(subject))
}
