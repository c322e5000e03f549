package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// toolClient dials the tool listener with a grant as a plain nats.go
// client: every refusal the server sends arrives on errs.
func toolClient(t *testing.T, g ToolGrant) (*rawClient, error) {
	t.Helper()
	c := &rawClient{errs: make(chan error, 64)}
	nc, err := nats.Connect(g.URL, nats.Token(g.Token), nats.CustomInboxPrefix(g.Inbox), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c, nil
}

func serveRunTools(t *testing.T, b *Bus) {
	t.Helper()
	if _, err := Serve(t.Context(), b, AgentTools, func(_ context.Context, subject string, _ ListRunTools) (ToolSpecs, error) {
		return ToolSpecs{Tracker: subject}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A run's credential asks its own run's tools and nothing else: not
// another run's, not a Symphony subject, not another run's answers; and
// once revoked it is refused and its connection is closed. No file of the
// data directory names it, and without a listener of the operator's the
// tool listener admits no reader.
func TestToolGrantIsBoundToItsRun(t *testing.T) {
	b := openTest(t, Options{ToolListener: true})
	serveRunTools(t, b)
	if b.ListenURL() != "" {
		t.Fatalf("the tool listener alone advertises a listener: %q", b.ListenURL())
	}
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(g.URL, "nats://127.0.0.1:") {
		t.Fatalf("tool URL %q is not loopback", g.URL)
	}
	tb, err := ConnectTools(t.Context(), g, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close(context.Background())
	specs, err := Ask(t.Context(), tb, AgentTools, ListRunTools{}, "run-a")
	if err != nil || specs.Tracker != "symphony.agent.tools.run-a" {
		t.Fatalf("own run's tools: %+v, %v", specs, err)
	}

	// A credential is spent by its first connection: a copy is refused.
	if _, err := toolClient(t, g); err == nil {
		t.Fatal("a spent credential connects again")
	}
	g2, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	c, err := toolClient(t, g2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nc.Publish("symphony.agent.tools.run-b", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	c.refused(t, "symphony.agent.tools.run-b")
	for _, subj := range []string{"symphony.tracker.tool", "symphony.agent.dispatch", "$JS.API.INFO", "$KV.symphony_config.current"} {
		if err := c.nc.Publish(subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		c.refused(t, subj)
	}
	for _, subj := range []string{"_INBOX.>", "symphony.>", ">"} {
		if _, err := c.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		c.refused(t, subj)
	}

	other, err := b.GrantTools("run-b")
	if err != nil {
		t.Fatal(err)
	}
	if other.Token == g.Token || other.Inbox == g.Inbox {
		t.Fatal("two grants share a token or an inbox")
	}
	if n := b.RevokeTools("run-a"); n != 2 {
		t.Errorf("revoke closed %d connections, want 2", n)
	}
	if b.ToolGrants() != 1 {
		t.Errorf("%d grants left, want run-b's alone", b.ToolGrants())
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if _, err := Ask(ctx, tb, AgentTools, ListRunTools{}, "run-a"); err == nil {
		t.Error("a revoked credential's connection still asks")
	}
	if _, err := toolClient(t, g); err == nil || !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("a revoked credential connects: %v", err)
	}
	entries, err := os.ReadDir(b.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(b.DataDir(), e.Name()))
		if strings.Contains(string(raw), other.Token) {
			t.Errorf("%s names a tool token", e.Name())
		}
	}
}

// With the operator's listener on, the credentials use it, and the reader
// token still opens no tool subject.
func TestToolGrantOnTheOperatorsListener(t *testing.T) {
	b := openTest(t, Options{Listen: "127.0.0.1:0", ToolListener: true})
	serveRunTools(t, b)
	g, err := b.GrantTools("run-a")
	if err != nil {
		t.Fatal(err)
	}
	if g.URL != b.ListenURL() {
		t.Fatalf("tool URL %q, listener %q", g.URL, b.ListenURL())
	}
	tb, err := ConnectTools(t.Context(), g, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close(context.Background())
	if _, err := Ask(t.Context(), tb, AgentTools, ListRunTools{}, "run-a"); err != nil {
		t.Fatal(err)
	}
	reader := dialListener(t, b, readToken(t, filepath.Join(b.DataDir(), TokenFileName)))
	if err := reader.nc.Publish("symphony.agent.tools.run-a", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	reader.refused(t, "symphony.agent.tools.run-a")
}

func TestGrantToolsNeedsTheToolListener(t *testing.T) {
	b := openTest(t, Options{})
	if _, err := b.GrantTools("run-a"); !errors.Is(err, ErrNoToolListener) {
		t.Fatalf("grant without a tool listener: %v", err)
	}
	b2 := openTest(t, Options{ToolListener: true})
	if _, err := b2.GrantTools("../x"); err == nil {
		t.Fatal("a grant for an unsafe run id")
	}
}

func TestToolGrantFromEnv(t *testing.T) {
	g := ToolGrant{URL: "nats://127.0.0.1:1", Token: "t", RunID: "r1", Inbox: "_INBOX.x"}
	env := g.Env()
	got, err := ToolGrantFromEnv(func(k string) string { return env[k] })
	if err != nil || got != g {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	delete(env, ToolEnvToken)
	if _, err := ToolGrantFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), ToolEnvToken) {
		t.Fatalf("missing token: %v", err)
	}
}

// A connection admitted while its run's credentials are revoked is closed
// too: no connection of the run outlives RevokeTools.
func TestRevokeLeavesNoConnection(t *testing.T) {
	b := openTest(t, Options{ToolListener: true})
	for round := range 100 {
		g, err := b.GrantTools("run-a")
		if err != nil {
			t.Fatal(err)
		}
		connected := make(chan *nats.Conn, 1)
		go func() {
			nc, err := nats.Connect(g.URL, nats.Token(g.Token), nats.CustomInboxPrefix(g.Inbox), nats.NoReconnect())
			if err != nil {
				nc = nil
			}
			connected <- nc
		}()
		b.RevokeTools("run-a")
		nc := <-connected
		cz, err := b.ns.Connz(&server.ConnzOptions{User: toolUser("run-a"), Account: ToolAccountName, Username: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(cz.Conns) != 0 {
			t.Fatalf("round %d: %d connections of the run outlived its revocation", round, len(cz.Conns))
		}
		if nc != nil {
			nc.Close()
		}
	}
}
