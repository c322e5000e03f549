package bus

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
