package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// testTimeout is a generous bound for things that normally take
// milliseconds; it exists so a broken test fails instead of hanging.
const testTimeout = 30 * time.Second

func openTest(t *testing.T, opts Options) *Bus {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	b, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func recv[T any](t *testing.T, s *Subscription[T]) Message[T] {
	t.Helper()
	select {
	case m, ok := <-s.C():
		if !ok {
			t.Fatal("subscription closed")
		}
		return m
	case <-time.After(testTimeout):
		t.Fatal("no message")
	}
	panic("unreachable")
}

func TestPublishSubscribeTyped(t *testing.T) {
	b := openTest(t, Options{})
	sub, err := Subscribe(t.Context(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	want := ComponentEvent{Component: "scheduler", State: ComponentFailed, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Error: "boom", Restarts: 2}
	if err := Publish(b, ComponentEvents, want, "scheduler"); err != nil {
		t.Fatal(err)
	}
	got := recv(t, sub)
	if got.Subject != "symphony.component.scheduler" {
		t.Errorf("subject = %q", got.Subject)
	}
	if got.Data != want {
		t.Errorf("payload = %+v, want %+v", got.Data, want)
	}
}

func TestSubscribeFilterAndOwnership(t *testing.T) {
	b := openTest(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	sub, err := Subscribe(ctx, b, ComponentEvents, "tracker")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scheduler", "tracker"} {
		if err := Publish(b, ComponentEvents, ComponentEvent{Component: name, State: ComponentStarted}, name); err != nil {
			t.Fatal(err)
		}
	}
	if got := recv(t, sub); got.Data.Component != "tracker" {
		t.Errorf("filter let through %q", got.Data.Component)
	}
	cancel()
	select {
	case <-sub.Done():
	case <-time.After(testTimeout):
		t.Fatal("subscription did not end with its context")
	}
	if _, ok := <-sub.C(); ok {
		t.Error("channel not closed after context ended")
	}
}

func TestSubscribeSkipsUndecodable(t *testing.T) {
	b := openTest(t, Options{})
	sub, err := Subscribe(t.Context(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := ComponentEvents.Subject("x")
	bad := []*nats.Msg{
		{Subject: subject, Data: []byte(`{}`)}, // no headers at all
		{Subject: subject, Header: nats.Header{HeaderType: {"RunEvent"}, HeaderSchema: {"1"}}, Data: []byte(`{}`)},
		{Subject: subject, Header: nats.Header{HeaderType: {"ComponentEvent"}, HeaderSchema: {"99"}}, Data: []byte(`{}`)},
		{Subject: subject, Header: nats.Header{HeaderType: {"ComponentEvent"}, HeaderSchema: {"1"}}, Data: []byte(`{not json`)},
	}
	for _, m := range bad {
		if err := b.Conn().PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := Publish(b, ComponentEvents, ComponentEvent{Component: "ok"}, "x"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, sub); got.Data.Component != "ok" {
		t.Errorf("got %+v", got.Data)
	}
	if n := sub.Invalid(); n != int64(len(bad)) {
		t.Errorf("Invalid() = %d, want %d", n, len(bad))
	}
}

func TestDecodeErrorsNameTheProblem(t *testing.T) {
	spec := ComponentEvents.Spec()
	cases := map[string]*nats.Msg{
		`header is "RunEvent", want "ComponentEvent"`: {Subject: "s", Header: nats.Header{HeaderType: {"RunEvent"}, HeaderSchema: {"1"}}},
		`is newer than this build understands`:        {Subject: "s", Header: nats.Header{HeaderType: {"ComponentEvent"}, HeaderSchema: {"2"}}},
		`is not a positive integer`:                   {Subject: "s", Header: nats.Header{HeaderType: {"ComponentEvent"}, HeaderSchema: {"x"}}},
		`ComponentEvent body`:                         {Subject: "s", Header: nats.Header{HeaderType: {"ComponentEvent"}, HeaderSchema: {"1"}}, Data: []byte("[")},
	}
	for want, m := range cases {
		_, err := decode[ComponentEvent](m, spec, spec.TypeName())
		if !errors.Is(err, ErrDecode) || !contains(err.Error(), want) {
			t.Errorf("decode error %v, want one containing %q", err, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// Test-only request subjects: declared here, not in the catalogue.
type echoReq struct {
	Text  string `json:"text"`
	Fail  string `json:"fail,omitempty"`
	Panic bool   `json:"panic,omitempty"`
}
type echoResp struct {
	Text string `json:"text"`
}

type codedErr struct{}

func (codedErr) Error() string { return "no such issue\nsecond line" }
func (codedErr) Code() string  { return "not_found" }

var testEcho = request[echoReq, echoResp](Spec{Pattern: "symphony.test.echo.{id}", Consumers: []string{"tester"}})

func TestRequestReply(t *testing.T) {
	b := openTest(t, Options{})
	done, err := Serve(t.Context(), b, testEcho, func(ctx context.Context, subject string, req echoReq) (echoResp, error) {
		switch {
		case req.Panic:
			panic("handler bug")
		case req.Fail == "coded":
			return echoResp{}, codedErr{}
		case req.Fail != "":
			return echoResp{}, errors.New(req.Fail)
		}
		return echoResp{Text: subject + ":" + req.Text}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Ask(t.Context(), b, testEcho, echoReq{Text: "hi"}, "a1")
	if err != nil || got.Text != "symphony.test.echo.a1:hi" {
		t.Fatalf("Ask = %+v, %v", got, err)
	}

	var re *RemoteError
	_, err = Ask(t.Context(), b, testEcho, echoReq{Fail: "coded"}, "a1")
	if !errors.As(err, &re) || re.Code != "not_found" || re.Message != "no such issue second line" {
		t.Errorf("coded failure = %#v", err)
	}
	_, err = Ask(t.Context(), b, testEcho, echoReq{Fail: "plain"}, "a1")
	if !errors.As(err, &re) || re.Code != "error" || re.Message != "plain" {
		t.Errorf("plain failure = %#v", err)
	}
	_, err = Ask(t.Context(), b, testEcho, echoReq{Panic: true}, "a1")
	if !errors.As(err, &re) || !contains(re.Message, "panicked: handler bug") {
		t.Errorf("panic = %#v", err)
	}
	// The responder survived the panic.
	if _, err := Ask(t.Context(), b, testEcho, echoReq{Text: "again"}, "a1"); err != nil {
		t.Errorf("after panic: %v", err)
	}
	// A bad token never reaches the wire.
	if _, err := Ask(t.Context(), b, testEcho, echoReq{}, "a.b"); !errors.Is(err, ErrBadToken) {
		t.Errorf("bad token: %v", err)
	}
	// Bodies that are not the request type are refused as bad requests.
	reply, err := b.Conn().Request("symphony.test.echo.a1", []byte("{}"), testTimeout)
	if err != nil || reply.Header.Get(HeaderErrorCode) != "bad_request" {
		t.Errorf("headerless request: %v %v", reply, err)
	}
	_ = done
}

func TestAskWithoutResponderFailsFast(t *testing.T) {
	b := openTest(t, Options{})
	start := time.Now()
	_, err := Ask(t.Context(), b, testEcho, echoReq{}, "nobody")
	if !errors.Is(err, ErrNoResponder) {
		t.Fatalf("err = %v, want ErrNoResponder", err)
	}
	if !contains(err.Error(), "tester") {
		t.Errorf("error should name the expected responder: %v", err)
	}
	if time.Since(start) > DefaultRequestTimeout/2 {
		t.Errorf("no-responder took %v; it should not wait for the timeout", time.Since(start))
	}
}

func TestServeStopsWithContext(t *testing.T) {
	b := openTest(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	done, err := Serve(ctx, b, testEcho, func(context.Context, string, echoReq) (echoResp, error) { return echoResp{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("Serve did not stop")
	}
	if _, err := Ask(t.Context(), b, testEcho, echoReq{}, "x"); !errors.Is(err, ErrNoResponder) {
		t.Errorf("after stop: %v", err)
	}
}

func TestPublishDurableDedupAndHistory(t *testing.T) {
	b := openTest(t, Options{})
	ev := RunEvent{RunID: "r1", Event: RunTurnStarted, Issue: IssueRef{ID: "i1", Identifier: "ABC-1"}}
	a1, err := PublishDurable(t.Context(), b, RunEvents, ev, "r1-started", "r1", string(RunTurnStarted))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := PublishDurable(t.Context(), b, RunEvents, ev, "r1-started", "r1", string(RunTurnStarted))
	if err != nil {
		t.Fatal(err)
	}
	if a1.Stream != StreamRuns || a1.Duplicate || !a2.Duplicate || a2.Seq != a1.Seq {
		t.Fatalf("acks %+v %+v: the retried publish must be a duplicate of the first", a1, a2)
	}
	ended := ev
	ended.Event, ended.Status = RunFinished, RunSucceeded
	if _, err := PublishDurable(t.Context(), b, RunEvents, ended, "", "r1", string(RunFinished)); err != nil {
		t.Fatal(err)
	}
	if _, err := PublishDurable(t.Context(), b, RunEvents, RunEvent{RunID: "r2", Event: RunTurnStarted}, "", "r2", string(RunTurnStarted)); err != nil {
		t.Fatal(err)
	}
	var got []RunEventKind
	for m, err := range History(t.Context(), b, RunEvents, "r1") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Data.Event)
	}
	if fmt.Sprint(got) != "[turn_started run_finished]" {
		t.Errorf("history of r1 = %v", got)
	}
	// A topic without a stream cannot be published durably.
	if _, err := PublishDurable(t.Context(), b, ComponentEvents, ComponentEvent{}, "", "x"); err == nil {
		t.Error("durable publish on a core subject should fail")
	}
	// An empty filter match yields nothing and ends.
	for range History(t.Context(), b, RunEvents, "nope") {
		t.Error("unexpected message")
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	openTest(t, Options{DataDir: dir})
	_, err := Open(t.Context(), Options{DataDir: dir})
	var inUse *DataDirInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second Open: %v, want DataDirInUseError", err)
	}
	if inUse.PID != os.Getpid() || !contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Errorf("error should name the holder: %v", err)
	}
}

// TestLockWaitsForADeadHoldersChildren: the data directory's lock held by
// an open file whose recorded owner is dead (a child the killed process
// was starting, between its fork and its exec) is waited for, briefly,
// instead of failing a restart right after a crash; one whose owner lives
// is refused at once, naming it.
func TestLockWaitsForADeadHoldersChildren(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	hold := func(pid int) *os.File {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%d\n", pid)), 0); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Its owner is dead: the lock is taken once the holder lets go.
	first := hold(dead.Process.Pid)
	go func() {
		time.Sleep(200 * time.Millisecond)
		first.Close()
	}()
	l, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock held for a dead owner, then released: %v", err)
	}
	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	// Its owner lives (this process): refused at once.
	f := hold(os.Getpid())
	defer f.Close()
	began := time.Now()
	var inUse *DataDirInUseError
	if _, err := lockDataDir(dir); !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("lock held by a live owner: %v, want DataDirInUseError naming it", err)
	}
	if d := time.Since(began); d > lockWaitForOrphans/2 {
		t.Errorf("refusing a live owner took %v: it must not wait", d)
	}
}

func TestReopenAfterClose(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(t.Context(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PublishDurable(t.Context(), b, RunEvents, RunEvent{RunID: "r"}, "", "r", "started"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b2 := openTest(t, Options{DataDir: dir})
	n := 0
	for _, err := range History(t.Context(), b2, RunEvents) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("after reopen found %d messages, want 1", n)
	}
}

func TestSplitListen(t *testing.T) {
	cases := []struct {
		addr   string
		unsafe bool
		ok     bool
	}{
		{"127.0.0.1:4222", false, true},
		{"127.0.0.2:0", false, true},
		{"[::1]:4222", false, true},
		{"localhost:4222", false, true},
		{"0.0.0.0:4222", false, false},
		{":4222", false, false},
		{"192.168.1.10:4222", false, false},
		{"example.com:4222", false, false},
		{"0.0.0.0:4222", true, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1:99999", false, false},
		{"127.0.0.1:x", false, false},
	}
	for _, c := range cases {
		_, _, err := splitListen(c.addr, c.unsafe)
		if (err == nil) != c.ok {
			t.Errorf("splitListen(%q, unsafe=%v) err = %v", c.addr, c.unsafe, err)
		}
	}
	_, err := Open(t.Context(), Options{DataDir: t.TempDir(), Listen: "0.0.0.0:0"})
	if !errors.Is(err, ErrUnsafeListen) {
		t.Errorf("Open with 0.0.0.0: %v", err)
	}
}

func TestListenerRequiresToken(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	if b.ListenURL() == "" || b.ListenURL() == "nats://127.0.0.1:4222" {
		t.Fatalf("listen URL %q: port 0 must pick a free port", b.ListenURL())
	}
	st, err := os.Stat(b.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	token, _ := os.ReadFile(b.TokenFile())
	if _, err := nats.Connect(b.ListenURL()); err == nil {
		t.Error("connected without a token")
	}
	if _, err := nats.Connect(b.ListenURL(), nats.Token("wrong")); err == nil {
		t.Error("connected with a wrong token")
	}
	nc, err := nats.Connect(b.ListenURL(), nats.Token(string(token[:len(token)-1])))
	if err != nil {
		t.Fatalf("connect with token: %v", err)
	}
	nc.Close()
	if hint := b.ConnectHint(); contains(hint, string(token[:len(token)-1])) || !contains(hint, b.TokenFile()) {
		t.Errorf("hint %q must point at the token file, not spell the token", hint)
	}
	tokenFile := b.TokenFile()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("token file left after a clean stop: %v", err)
	}
}

// TestSubscriptionSurvivesOverflow: a burst beyond the pending buffer drops
// messages (core NATS) but the subscription goes on and counts it.
func TestSubscriptionSurvivesOverflow(t *testing.T) {
	b := openTest(t, Options{})
	sub, err := Subscribe(t.Context(), b, ComponentEvents)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 70_000 {
		if err := Publish(b, ComponentEvents, ComponentEvent{Component: "burst", Restarts: i}, "burst"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	// Messages published while the buffer is still full are dropped too, so
	// keep sending sentinels until one gets through.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(testTimeout)
	for {
		select {
		case m, ok := <-sub.C():
			if !ok {
				t.Fatal("the subscription ended after an overflow")
			}
			if m.Data.Component == "sentinel" {
				if sub.Overflows() == 0 {
					t.Error("the overflow was not counted")
				}
				return
			}
		case <-tick.C:
			if err := Publish(b, ComponentEvents, ComponentEvent{Component: "sentinel"}, "s"); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("sentinel never arrived")
		}
	}
}

func TestSecretRoundTrip(t *testing.T) {
	s := NewSecret("LINEAR_API_KEY", "v4lue")
	raw, err := json.Marshal(s)
	if err != nil || strings.Contains(string(raw), "v4lue") {
		t.Fatalf("marshal: %s %v", raw, err)
	}
	var back Secret
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !back.IsSet() || back.Env() != "LINEAR_API_KEY" || back.Value() != "" {
		t.Errorf("after a round trip: set=%v env=%q", back.IsSet(), back.Env())
	}
	if got := back.Resolve(func(k string) string { return map[string]string{"LINEAR_API_KEY": "fresh"}[k] }); got != "fresh" {
		t.Errorf("resolve = %q", got)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), s.String()} {
		if strings.Contains(out, "v4lue") {
			t.Errorf("leak: %s", out)
		}
	}
}

func TestClaimsAreCompareAndSet(t *testing.T) {
	b := openTest(t, Options{})
	k, err := Claims.Key("issue-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(t.Context(), b, k, Claim{RunID: "r1", IssueID: "issue-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(t.Context(), b, k, Claim{RunID: "r2", IssueID: "issue-1"}); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second claim: %v", err)
	}
	k2, _ := Claims.Key("issue-2")
	if _, err := Create(t.Context(), b, k2, Claim{RunID: "r3", IssueID: "issue-2"}); err != nil {
		t.Fatal(err)
	}
	all, err := All(t.Context(), b, Claims)
	if err != nil || len(all) != 2 || all["issue-1"].RunID != "r1" {
		t.Fatalf("All: %v %v", all, err)
	}
	if err := Delete(t.Context(), b, k); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(t.Context(), b, k, Claim{RunID: "r4", IssueID: "issue-1"}); err != nil {
		t.Errorf("claim after release: %v", err)
	}
	if _, err := Claims.Key("../x"); !errors.Is(err, ErrBadToken) {
		t.Errorf("unsafe key: %v", err)
	}
	if r, err := All(t.Context(), b, Retries); err != nil || len(r) != 0 {
		t.Errorf("empty family: %v %v", r, err)
	}
}
