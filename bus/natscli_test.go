package bus

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// natsCLI runs the real nats CLI (the go.mod tool, built once by
// `go tool -n nats`) with a bound on its time and a private config home, so
// the operator's nats contexts play no part.
func natsCLI(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.CommandContext(ctx, "go", "tool", "-n", "nats").Output()
	if err != nil {
		t.Fatalf("go tool -n nats: %v", err)
	}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(path)), args...)
	cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "XDG_CONFIG_HOME="+t.TempDir())
	return cmd
}

// TestNatsCLIThroughListener subscribes with the real `nats` CLI through the
// opt-in listener using the token, and sees a typed message published by the
// kernel on a symphony subject, headers included. Without the token, or with
// a wrong one, the CLI is refused.
func TestNatsCLIThroughListener(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0"})
	raw, err := os.ReadFile(b.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))

	// The first `go tool nats` compiles the CLI; allow for it.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	for name, args := range map[string][]string{
		"no token":    {"--server", b.ListenURL(), "pub", "symphony.component.x", "hi"},
		"wrong token": {"--server", b.ListenURL(), "--user", "not-the-token", "pub", "symphony.component.x", "hi"},
	} {
		out, err := natsCLI(t, ctx, args...).CombinedOutput()
		if err == nil {
			t.Errorf("%s: nats CLI was let in: %s", name, out)
		} else if !strings.Contains(strings.ToLower(string(out)), "authorization violation") {
			t.Errorf("%s: expected an authorization violation, got: %s", name, out)
		}
	}

	// The subscription is the printed hint itself, run by a shell: the
	// token reaches the CLI through NATS_USER, never its arguments.
	hint := b.ConnectHint()
	if strings.Contains(hint, token) || !strings.HasPrefix(hint, "NATS_USER=") || !strings.Contains(hint, "go tool nats ") {
		t.Fatalf("hint %q: want the token read from its file into NATS_USER for go tool nats", hint)
	}
	cli := natsCLI(t, ctx)
	var out bytes.Buffer
	sub := exec.CommandContext(ctx, "bash", "-c", strings.Replace(hint, "go tool nats ", shellQuote(cli.Path)+" ", 1)+" --count 1")
	sub.Env = cli.Env
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()

	// The CLI gives no signal when its subscription is live, so publish
	// until it has received one message and exited (--count 1).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	ev := ComponentEvent{Component: "tracker", State: ComponentStarted, At: time.Now().UTC()}
	for done := false; !done; {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("nats sub: %v\n%s", err, out.String())
			}
			done = true
		case <-tick.C:
			if err := Publish(b, ComponentEvents, ev, "tracker"); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("nats sub saw nothing: %s", out.String())
		}
	}
	got := out.String()
	for _, want := range []string{"symphony.component.tracker", HeaderType + ": ComponentEvent", HeaderSchema + ": 1", `"component":"tracker"`, `"state":"started"`} {
		if !strings.Contains(got, want) {
			t.Errorf("nats sub output lacks %q:\n%s", want, got)
		}
	}
}

// TestNatsCLIListenerIsReadOnly drives the real nats CLI through the
// listener with the read token and the control token. The read token
// watches and reads (kv get, ls and watch; stream ls, info, get and view)
// and every write is refused by the server, with nothing changed: kv put of
// the configuration, stream purge, stream rm, a publish on a component
// subject, a control request. The control token's request is answered.
func TestNatsCLIListenerIsReadOnly(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0", AllowControls: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	token := func(file string) string {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(raw))
	}
	reader, operator := token(b.TokenFile()), token(b.ControlTokenFile())
	if reader == operator {
		t.Fatal("the two tokens are one")
	}
	global := func(tok string) []string {
		return []string{"--server", b.ListenURL(), "--user", tok, "--timeout", "3s"}
	}
	run := func(tok string, args ...string) (string, error) {
		out, err := natsCLI(t, ctx, append(global(tok), args...)...).CombinedOutput()
		return string(out), err
	}

	if _, err := Put(ctx, b, ConfigCurrent, ConfigSnapshot{Version: 1, Checksum: "good"}); err != nil {
		t.Fatal(err)
	}
	if err := storeRunEvent(ctx, b, RunEvent{RunID: "r1", Event: RunDispatched, At: time.Now().UTC(), Issue: IssueRef{ID: "i1", Identifier: "P-1"}}, ""); err != nil {
		t.Fatal(err)
	}
	var controls atomic.Int64
	if _, err := Serve(ctx, b, SchedulerControl, func(context.Context, string, Control) (ControlResult, error) {
		controls.Add(1)
		return ControlResult{Message: "paused", Paused: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	runsBefore := streamMsgs(t, b, StreamRuns)

	// Reads work, and nothing is refused on the way.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"kv", "get", BucketConfig, "current", "--raw"}, `"checksum":"good"`},
		{[]string{"kv", "ls", BucketConfig}, "current"},
		{[]string{"stream", "ls"}, StreamRuns},
		{[]string{"stream", "info", StreamRuns}, "Messages: 1"},
		{[]string{"stream", "get", StreamRuns, "1"}, `"identifier":"P-1"`},
	} {
		out, err := run(reader, c.args...)
		if err != nil || !strings.Contains(out, c.want) || strings.Contains(out, "Permissions Violation") {
			t.Errorf("nats %s: %v, want %q in:\n%s", strings.Join(c.args, " "), err, c.want, out)
		}
	}
	// kv watch runs until stopped: its first line is the current value.
	wctx, stop := context.WithCancel(ctx)
	w := natsCLI(t, wctx, append(global(reader), "kv", "watch", BucketConfig, "current")...)
	stdout, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Stderr = w.Stdout
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	stop()
	_ = w.Wait()
	if !strings.Contains(line, "PUT symphony_config > current") || !strings.Contains(line, `"checksum":"good"`) {
		t.Errorf("nats kv watch: %q", line)
	}
	// stream view pages only on a terminal: script gives it one.
	cli := natsCLI(t, ctx)
	view := exec.CommandContext(ctx, "script", "-qec", shellQuote(cli.Path)+" "+strings.Join(global(reader), " ")+" stream view "+StreamRuns, "/dev/null")
	view.Env = cli.Env
	out, err := view.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "symphony.run.r1.dispatched") || strings.Contains(string(out), "Permissions Violation") {
		t.Errorf("nats stream view: %v\n%s", err, out)
	}

	// Writes are refused by the server.
	for _, c := range []struct {
		args    []string
		subject string
	}{
		{[]string{"kv", "put", BucketConfig, "current", `{"type":"ConfigSnapshot","schema":1,"data":{"version":99}}`}, "$KV.symphony_config.current"},
		{[]string{"stream", "purge", StreamRuns, "-f"}, "$JS.API.STREAM.PURGE.RUNS"},
		{[]string{"stream", "rm", StreamRuns, "-f"}, "$JS.API.STREAM.DELETE.RUNS"},
		{[]string{"pub", TrackerSnapshots.spec.Pattern, "{}"}, TrackerSnapshots.spec.Pattern},
		{[]string{"req", SchedulerControl.spec.Pattern, `{"action":"pause"}`, "-H", HeaderType + ":Control", "-H", HeaderSchema + ":1"}, SchedulerControl.spec.Pattern},
	} {
		out, _ := run(reader, c.args...)
		if want := `Permissions Violation for Publish to "` + c.subject + `"`; !strings.Contains(out, want) {
			t.Errorf("nats %s: want %s, got:\n%s", strings.Join(c.args, " "), want, out)
		}
	}
	if e, err := Get(ctx, b, ConfigCurrent); err != nil || e.Value.Version != 1 {
		t.Errorf("configuration after the refused put: %+v %v", e.Value, err)
	}
	if n := streamMsgs(t, b, StreamRuns); n != runsBefore {
		t.Errorf("RUNS holds %d messages after the refused purge, had %d", n, runsBefore)
	}
	if controls.Load() != 0 {
		t.Errorf("the read token's control request reached the scheduler")
	}

	// The control token may send operator commands.
	out2, err := run(operator, "req", SchedulerControl.spec.Pattern, `{"action":"pause"}`, "-H", HeaderType+":Control", "-H", HeaderSchema+":1")
	if err != nil || !strings.Contains(out2, `"paused":true`) || controls.Load() != 1 {
		t.Errorf("control token's request: %v (%d handled)\n%s", err, controls.Load(), out2)
	}
}

func streamMsgs(t *testing.T, b *Bus, name string) uint64 {
	t.Helper()
	return streamState(t, b, name).Msgs
}

// streamState is the named stream's state (messages, consumers…).
func streamState(t *testing.T, b *Bus, name string) jetstream.StreamState {
	t.Helper()
	s, err := b.JetStream().Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}
