package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestListenerRepliesCannotWrite: NATS checks a publish permission on the
// subject, never on the reply subject, and the server publishes its answer
// to the reply subject. A listener client may ask an allowed JetStream API
// question ($JS.API.INFO, a direct get of an old config revision) with the
// reply aimed at a KV key or a run event subject; the answer must not be
// stored: the config keeps its revision and value (no rollback to an old
// config), no claim appears, RUNS keeps its one message. The answers do
// arrive — in the listener account, where the client's own subscription
// on the aimed subjects sees them, which is how the test knows the server
// answered before it looks at the store.
func TestListenerRepliesCannotWrite(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0", AllowControls: true})
	ctx := t.Context()
	if _, err := Put(ctx, b, ConfigCurrent, ConfigSnapshot{Version: 1, Checksum: "old", PromptTemplate: "old hook"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Put(ctx, b, ConfigCurrent, ConfigSnapshot{Version: 2, Checksum: "new"}); err != nil {
		t.Fatal(err)
	}
	before, err := Get(ctx, b, ConfigCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := storeRunEvent(ctx, b, RunEvent{RunID: "r1", Event: RunDispatched, At: time.Now().UTC(), Issue: IssueRef{ID: "i1", Identifier: "P-1"}}, ""); err != nil {
		t.Fatal(err)
	}
	// The control token's own request, to the scheduler's control.
	if _, err := Serve(ctx, b, SchedulerControl, func(context.Context, string, Control) (ControlResult, error) {
		return ControlResult{Message: "paused", Paused: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	configKey := "$KV." + BucketConfig + ".current"
	claimKey := "$KV." + BucketState + ".claim.i1"
	runSubject := "symphony.run.r1." + string(RunFinished)
	for _, token := range []string{readToken(t, b.TokenFile()), readToken(t, b.ControlTokenFile())} {
		c := dialListener(t, b, token)
		got := make(chan *nats.Msg, 64)
		for _, subj := range []string{configKey, claimKey, runSubject} {
			if _, err := c.nc.ChanSubscribe(subj, got); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		aimed := []struct{ subj, reply, body string }{
			{"$JS.API.INFO", configKey, ""},
			{"$JS.API.DIRECT.GET.KV_" + BucketConfig, configKey, `{"seq":1}`},
			{"$JS.API.INFO", claimKey, ""},
			{"$JS.API.STREAM.INFO." + StreamRuns, runSubject, ""},
		}
		if token == readToken(t, b.ControlTokenFile()) {
			aimed = append(aimed, struct{ subj, reply, body string }{SchedulerControl.spec.Pattern, configKey, `{"action":"pause"}`})
		}
		for _, a := range aimed {
			if err := c.nc.PublishRequest(a.subj, a.reply, []byte(a.body)); err != nil {
				t.Fatal(err)
			}
		}
		for range aimed {
			select {
			case <-got:
			case err := <-c.errs:
				t.Fatalf("aimed request refused: %v", err)
			case <-time.After(testTimeout):
				t.Fatal("the server did not answer the aimed requests")
			}
		}
	}
	after, err := Get(ctx, b, ConfigCurrent)
	if err != nil {
		t.Fatalf("config after the aimed replies: %v", err)
	}
	if after.Revision != before.Revision || after.Value.Checksum != "new" {
		t.Errorf("config changed by an aimed reply: revision %d → %d, checksum %q", before.Revision, after.Revision, after.Value.Checksum)
	}
	if _, err := Get(ctx, b, mustKey(t, Claims, "i1")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("claim written by an aimed reply: %v", err)
	}
	if n := streamMsgs(t, b, StreamRuns); n != 1 {
		t.Errorf("RUNS holds %d messages, want 1", n)
	}
	if n := streamMsgs(t, b, "KV_"+BucketConfig); n != 2 {
		t.Errorf("KV_%s holds %d messages, want 2", BucketConfig, n)
	}
}

// TestNatsCLIAimedRepliesCannotWrite is TestListenerRepliesCannotWrite with
// the real nats CLI over TCP and the read token: `nats pub --reply` sends
// an allowed JetStream API request whose answer is aimed at the config
// key and at a run event subject. The answers arrive (a listener client of
// the test's own sees them on those subjects), and nothing is stored.
func TestNatsCLIAimedRepliesCannotWrite(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	ctx := t.Context()
	if _, err := Put(ctx, b, ConfigCurrent, ConfigSnapshot{Version: 1, Checksum: "good"}); err != nil {
		t.Fatal(err)
	}
	before, err := Get(ctx, b, ConfigCurrent)
	if err != nil {
		t.Fatal(err)
	}
	token := readToken(t, b.TokenFile())
	watch := dialListener(t, b, token)
	got := make(chan *nats.Msg, 16)
	configKey := "$KV." + BucketConfig + ".current"
	runSubject := "symphony.run.r1." + string(RunFinished)
	for _, subj := range []string{configKey, runSubject} {
		if _, err := watch.nc.ChanSubscribe(subj, got); err != nil {
			t.Fatal(err)
		}
	}
	if err := watch.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, reply := range []string{configKey, runSubject} {
		out, err := natsCLI(t, ctx, "--server", b.ListenURL(), "--user", token, "--timeout", "3s",
			"pub", "$JS.API.INFO", "", "--reply", reply).CombinedOutput()
		if err != nil {
			t.Fatalf("nats pub --reply %s: %v\n%s", reply, err, out)
		}
		select {
		case m := <-got:
			if m.Subject != reply {
				t.Fatalf("answer on %s, want %s", m.Subject, reply)
			}
		case <-time.After(testTimeout):
			t.Fatalf("no answer on %s", reply)
		}
	}
	after, err := Get(ctx, b, ConfigCurrent)
	if err != nil {
		t.Fatalf("config after the aimed replies: %v", err)
	}
	if after.Revision != before.Revision || after.Value.Checksum != "good" {
		t.Errorf("config changed by an aimed reply: revision %d → %d, checksum %q", before.Revision, after.Revision, after.Value.Checksum)
	}
	if n := streamMsgs(t, b, StreamRuns); n != 0 {
		t.Errorf("RUNS holds %d messages, want 0", n)
	}
}

// TestListenerConsumersAreBounded: a read token sends the raw requests the
// review used, creating durable consumers by name. A durable without an
// inactive threshold (it would stay, across restarts) and one above
// MaxListenerInactivity are refused; of those that expire, at most
// MaxListenerConsumers exist at once. Symphony's own reads keep working,
// and deleting a listener consumer frees its place.
func TestListenerConsumersAreBounded(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	ctx := t.Context()
	if err := storeRunEvent(ctx, b, RunEvent{RunID: "r1", Event: RunDispatched, At: time.Now().UTC(), Issue: IssueRef{ID: "i1", Identifier: "P-1"}}, ""); err != nil {
		t.Fatal(err)
	}
	c := dialListener(t, b, readToken(t, b.TokenFile()))
	create := func(name string, inactive time.Duration) error {
		body := fmt.Sprintf(`{"stream_name":%q,"config":{"durable_name":%q,"ack_policy":"none","inactive_threshold":%d}}`, StreamRuns, name, inactive)
		m, err := c.nc.Request("$JS.API.CONSUMER.CREATE."+StreamRuns+"."+name, []byte(body), testTimeout)
		if err != nil {
			return err
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("answer %q: %w", m.Data, err)
		}
		if resp.Error != nil {
			return errors.New(resp.Error.Description)
		}
		return nil
	}
	if err := create("forever", 0); err == nil || !strings.Contains(err.Error(), "inactive threshold") {
		t.Errorf("durable without an inactive threshold: %v, want refused", err)
	}
	if err := create("long", MaxListenerInactivity+time.Second); err == nil || !strings.Contains(err.Error(), "inactive threshold") {
		t.Errorf("durable above the inactivity bound: %v, want refused", err)
	}
	for i := range MaxListenerConsumers {
		if err := create(fmt.Sprintf("d%d", i), time.Hour); err != nil {
			t.Fatalf("consumer %d of %d: %v", i+1, MaxListenerConsumers, err)
		}
	}
	if err := create("one-too-many", time.Hour); err == nil || !strings.Contains(err.Error(), "most allowed") {
		t.Errorf("consumer %d: %v, want refused", MaxListenerConsumers+1, err)
	}
	// Symphony's reads create consumers of their own: unaffected.
	n := 0
	for _, err := range History(ctx, b, RunEvents) {
		if err != nil {
			t.Fatalf("Symphony's read with the listener at its bound: %v", err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("history read %d events, want 1", n)
	}
	if _, err := c.nc.Request("$JS.API.CONSUMER.DELETE."+StreamRuns+".d0", nil, testTimeout); err != nil {
		t.Fatal(err)
	}
	if err := create("after-a-delete", time.Hour); err != nil {
		t.Errorf("consumer after a delete: %v", err)
	}
	info, err := b.js.Stream(ctx, StreamRuns)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Consumers; got > MaxListenerConsumers+1 {
		t.Errorf("RUNS holds %d consumers, want at most %d", got, MaxListenerConsumers+1)
	}
}
