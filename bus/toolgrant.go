package bus

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Run tool credentials (issue #21). A run's MCP server is a child of the
// agent, so it runs with whatever the agent can read; what it holds must
// open nothing but that run's tools. GrantTools makes such a credential: a
// token that admits ONE connection, once, as a user whose only rights are
// to ask AgentTools and AgentToolCall for its own run and to receive the
// answers on an inbox of its own. The user lives in an account of its own
// (ToolAccountName), which imports just those two services, so the answers
// to whatever reply subject it names stay there, and it sees no other
// run's traffic. RevokeTools ends the run's credentials and closes their
// connections. The tracker key never leaves the tracker component: the
// credential only asks Symphony, which runs the tool host-side.
//
// Single use matters because agents run as the operator's user: another
// run's agent can read a run's MCP config. A credential is made for one
// agent start and is spent by the first connection (the run's own MCP
// server, started a moment after the config is written); a copy read
// later opens nothing, and a copy presented first leaves the run's own
// server refused — which the runner's record and this package's log show.

// ToolAccountName is the NATS account of run tool credentials.
const ToolAccountName = "TOOLS"

// The environment of a run's MCP server (`symphony mcp`): where to connect
// and with what. They are written into the run's MCP config, which only
// the agent's own user can read.
const (
	ToolEnvURL   = "SYMPHONY_TOOLS_URL"
	ToolEnvToken = "SYMPHONY_TOOLS_TOKEN"
	ToolEnvRun   = "SYMPHONY_TOOLS_RUN"
	ToolEnvInbox = "SYMPHONY_TOOLS_INBOX"
)

// ErrNoToolListener is returned by GrantTools on a bus opened without
// Options.ToolListener.
var ErrNoToolListener = errors.New("bus: no tool listener (open the bus with ToolListener)")

// ToolGrant is a run's tool credential, as its MCP server receives it.
type ToolGrant struct {
	URL   string
	Token string
	RunID string
	// Inbox is the credential's reply-subject prefix: the only subjects it
	// may subscribe to are below it.
	Inbox string
}

// Env is the grant as the MCP server's environment.
func (g ToolGrant) Env() map[string]string {
	return map[string]string{ToolEnvURL: g.URL, ToolEnvToken: g.Token, ToolEnvRun: g.RunID, ToolEnvInbox: g.Inbox}
}

// ToolGrantFromEnv reads a grant from the MCP server's environment.
func ToolGrantFromEnv(getenv func(string) string) (ToolGrant, error) {
	g := ToolGrant{URL: getenv(ToolEnvURL), Token: getenv(ToolEnvToken), RunID: getenv(ToolEnvRun), Inbox: getenv(ToolEnvInbox)}
	var missing []string
	for _, f := range [][2]string{{ToolEnvURL, g.URL}, {ToolEnvToken, g.Token}, {ToolEnvRun, g.RunID}, {ToolEnvInbox, g.Inbox}} {
		if f[1] == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) > 0 {
		return g, fmt.Errorf("the run's tool credential is incomplete: %v not set (symphony mcp is started by the agent from the MCP config Symphony writes for each run)", missing)
	}
	if !safeid.Valid(g.RunID) {
		return g, fmt.Errorf("%s %s must match %s", ToolEnvRun, safeid.Quote(g.RunID), safeid.Rule)
	}
	return g, nil
}

// toolGrant is what the listener's authentication keeps of a grant.
type toolGrant struct {
	runID, inbox string
	// used is set by the connection that spent the credential.
	used bool
}

// toolUser names a run's credential user: connz shows it, and Revoke finds
// the connections to close by it.
func toolUser(runID string) string { return "tools-" + runID }

// GrantTools makes the tool credential of run runID. The caller revokes it
// when the run ends (Revoke); a second grant for the same run is another
// credential, revoked with the first.
func (b *Bus) GrantTools(runID string) (ToolGrant, error) {
	if b.auth == nil || b.auth.tools.Load() == nil || b.toolURL == "" {
		return ToolGrant{}, ErrNoToolListener
	}
	if !safeid.Valid(runID) {
		return ToolGrant{}, fmt.Errorf("bus: tool grant: run id %s must match %s", safeid.Quote(runID), safeid.Rule)
	}
	tok, err := newToken()
	if err != nil {
		return ToolGrant{}, err
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return ToolGrant{}, fmt.Errorf("bus: tool grant inbox: %w", err)
	}
	g := ToolGrant{URL: b.toolURL, Token: tok, RunID: runID, Inbox: "_INBOX." + hex.EncodeToString(raw[:])}
	b.auth.grantsMu.Lock()
	defer b.auth.grantsMu.Unlock()
	if n := b.auth.grantsOf(runID); n >= maxGrantsPerRun {
		return ToolGrant{}, fmt.Errorf("bus: run %s holds %d tool credentials already (revoke them first)", runID, n)
	}
	b.auth.grants[sha256.Sum256([]byte(tok))] = &toolGrant{runID: runID, inbox: g.Inbox}
	return g, nil
}

// maxGrantsPerRun bounds the credentials of one run in force at once (a
// run holds one per agent start, revoked before the next).
const maxGrantsPerRun = 16

// grantsOf counts run's credentials; grantsMu is held.
func (a *listenerAuth) grantsOf(runID string) int {
	n := 0
	for _, g := range a.grants {
		if g.runID == runID {
			n++
		}
	}
	return n
}

// RevokeTools ends every tool credential of run runID: no new connection
// is admitted with them, and the connections made with them are closed.
// It reports how many connections it closed.
func (b *Bus) RevokeTools(runID string) int {
	if b.auth == nil {
		return 0
	}
	// An admission holds the lock until its user is registered, so once
	// the grants are gone every connection made with them is listed.
	b.auth.grantsMu.Lock()
	for k, g := range b.auth.grants {
		if g.runID == runID {
			delete(b.auth.grants, k)
		}
	}
	b.auth.grantsMu.Unlock()
	closed := 0
	for range 2 { // a second sweep for a connection listed late
		cz, err := b.ns.Connz(&server.ConnzOptions{User: toolUser(runID), Account: ToolAccountName, Username: true, Limit: 1 << 16})
		if err != nil {
			b.log.Warn("revoke tool credential: list its connections", "run_id", runID, "err", err)
			return closed
		}
		for _, c := range cz.Conns {
			if err := b.ns.DisconnectClientByID(c.Cid); err == nil {
				closed++
			}
		}
	}
	return closed
}

// ToolURL is where run tool credentials connect, "" without a tool
// listener.
func (b *Bus) ToolURL() string { return b.toolURL }

// ToolGrants is how many tool credentials are in force (for tests and the
// leak check of a run's end).
func (b *Bus) ToolGrants() int {
	if b.auth == nil {
		return 0
	}
	b.auth.grantsMu.Lock()
	defer b.auth.grantsMu.Unlock()
	return len(b.auth.grants)
}

// admitTool admits the first connection presenting a run tool credential,
// with the rights of that run alone, and spends the credential: a second
// presentation is refused and logged (someone else read the run's MCP
// config). The lock is held until the user is registered (see
// RevokeTools).
func (a *listenerAuth) admitTool(c server.ClientAuthentication, tok string) bool {
	a.grantsMu.Lock()
	defer a.grantsMu.Unlock()
	g, ok := a.grants[sha256.Sum256([]byte(tok))]
	if !ok {
		return false
	}
	if g.used {
		a.log.Warn("a run's tool credential was presented again and refused: it is spent by the run's own MCP server, so another process has read it", "run_id", g.runID, "remote", c.RemoteAddress())
		return false
	}
	g.used = true
	c.RegisterUser(&server.User{Username: toolUser(g.runID), Account: a.tools.Load(), Permissions: toolPermissions(*g)})
	return true
}

// toolPermissions are a run tool credential's: ask the run's two tool
// subjects, and receive on its own inbox. Nothing else: no other run's
// subjects, no JetStream API (the account has none), no Symphony event.
func toolPermissions(g toolGrant) *server.Permissions {
	list, _ := AgentTools.Subject(g.runID) // a valid run id: cannot fail
	call, _ := AgentToolCall.Subject(g.runID)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{list, call}},
		Subscribe: &server.SubjectPermission{Allow: []string{g.inbox + ".>"}},
	}
}

// toolAccount registers the account of run tool credentials on a started
// server: it imports the two tool services from Symphony's account and
// nothing else.
func toolAccount(ns *server.Server) (*server.Account, error) {
	sym := ns.GlobalAccount()
	acc, err := ns.RegisterAccount(ToolAccountName)
	if err != nil {
		return nil, fmt.Errorf("bus: register the tool account: %w", err)
	}
	for _, spec := range []Spec{AgentTools.spec, AgentToolCall.spec} {
		subj, _ := spec.build(nil, true) // no tokens given: cannot fail
		if err := sym.AddServiceExportWithResponse(subj, server.Singleton, []*server.Account{acc}); err != nil {
			return nil, fmt.Errorf("bus: export %s to the tool account: %w", subj, err)
		}
		if err := acc.AddServiceImport(sym, subj, ""); err != nil {
			return nil, fmt.Errorf("bus: import %s into the tool account: %w", subj, err)
		}
	}
	return acc, nil
}

// ConnectTools connects a run's MCP server with its grant. The connection
// can ask AgentTools and AgentToolCall for g.RunID and nothing else.
func ConnectTools(ctx context.Context, g ToolGrant, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{log: log, drops: newDropLog(log), closed: make(chan struct{})}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := b.dial(g.URL, "to "+g.URL, nats.Token(g.Token), nats.Name("symphony mcp "+g.RunID),
		nats.CustomInboxPrefix(g.Inbox), nats.Timeout(timeout), nats.NoReconnect()); err != nil {
		return nil, err
	}
	return b, nil
}
