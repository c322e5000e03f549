package bus

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
)

// ControlTokenFileName is the file in the data directory holding the second
// listener token, written only with Options.AllowControls: its holder may
// also send operator commands and ask the pruner to prune. Like the read
// token it is written 0600 at every start and removed at a clean stop.
const ControlTokenFileName = "nats-control-token"

// internalInboxPrefix is the reply-subject prefix of Symphony's own
// connections. Listener clients use the usual _INBOX prefix and may
// subscribe to it; ours is out of their reach, so they never see the
// replies and consumer deliveries meant for the components (and with them
// the names of the components' consumers).
const internalInboxPrefix = "_SYMPHONY_INBOX"

// Roles of a connection, decided by the token it presents.
const (
	// roleInternal is Symphony's own in-process connections: every right.
	// Its token is made at start and lives only in memory.
	roleInternal = "symphony"
	// roleReader is the listener's default client (token file nats-token).
	roleReader = "listener-reader"
	// roleOperator is the listener's control client (nats-control-token).
	roleOperator = "listener-operator"
)

// listenerAuth admits a connection by the token it presents and gives it
// the rights of its role. It is used only when the listener is on; without
// it there is no socket and no authentication at all (the in-process
// connections are then the only clients). Authentication happens once per
// connection; permissions are checked by the server per subject, with a
// per-connection cache, and the internal role has none to check.
type listenerAuth struct {
	internal, reader, control string
	// readers is set for the operator's listener (reader and control
	// roles); the tool listener alone admits only internal and tool
	// credentials.
	readers bool
	// tools is the account of run tool credentials (toolAccount), set once
	// the server has started; grants are the credentials GrantTools made,
	// keyed by the token's hash (toolgrant.go).
	tools    atomic.Pointer[server.Account]
	grantsMu sync.Mutex
	grants   map[[32]byte]*toolGrant
	// log receives the refusals of a used tool credential presented again.
	log *slog.Logger
	// account is the listener clients' own NATS account, set once the
	// server has started (see listenerAccount); until then only the
	// internal token is admitted.
	account atomic.Pointer[server.Account]
}

// Check implements server.Authentication.
func (a *listenerAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	tok := o.Token
	if tok == "" && o.Password == "" {
		// The nats CLI sends a lone --user (NATS_USER) as a user name.
		tok = o.Username
	}
	switch {
	case tok == "":
		return false
	case same(tok, a.internal) && inProcess(c):
		c.RegisterUser(&server.User{Username: roleInternal})
	case a.tools.Load() != nil && a.admitTool(c, tok):
	case a.account.Load() == nil:
		return false
	case same(tok, a.reader):
		c.RegisterUser(&server.User{Username: roleReader, Account: a.account.Load(), Permissions: readerPermissions()})
	case a.control != "" && same(tok, a.control):
		c.RegisterUser(&server.User{Username: roleOperator, Account: a.account.Load(), Permissions: operatorPermissions()})
	default:
		return false
	}
	return true
}

func same(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// inProcess reports whether the connection is an in-process pipe, not a
// socket: the internal token is refused over TCP even if it leaked.
func inProcess(c server.ClientAuthentication) bool {
	addr := c.RemoteAddress()
	return addr == nil || addr.Network() == "pipe"
}

// readerPermissions are the listener's default client's: watch the Symphony
// events (not the requests between components), and read streams and
// buckets through the JetStream API
// subjects that only read. Everything else is refused by the server:
// publishing on any Symphony subject or $KV subject (config, state and run
// summaries are written with plain publishes there), the JetStream API
// subjects that change the store (stream create, update, delete, purge,
// message delete, snapshot, restore; consumer pause, unpin and the legacy
// durable create) and those that list the server's consumers, and queue
// subscriptions on Symphony subjects (a queue member would take requests
// meant for a component). Consumers can be created, and deleted by name:
// the ordered consumers of `nats kv watch/ls` and `nats stream view`, and
// symphony runs/replay, need both; a creation is checked by the bus first
// (checkListenerCreate: it expires once unused, delivers only to _INBOX,
// and the listener holds at most MaxListenerConsumers). These permissions
// are the per-client half; the listener account (ListenerAccountName) is
// the other: whatever a client's reply subject names, the server's answer
// stays in that account. Every stream keeps its messages by
// limits, so no consumer's acknowledgement removes anything. The names of
// Symphony's own consumers never reach a listener client: they travel only
// on the internal inbox, and listing consumers is refused.
func readerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: readerPublish()},
		Subscribe: &server.SubjectPermission{
			Allow: []string{Root + ".>", "_INBOX.>", "$KV.>"},
			Deny:  readerSubscribeDeny(),
		},
	}
}

// readerSubscribeDeny keeps the requests between components from listener
// clients (a `symphony.>` subscription is allowed; the server leaves these
// subjects out of what it delivers): a request's reply subject is where
// its answer is awaited, and a client that saw it could have a consumer
// deliver a stored message there as a forged answer while a slow request
// (a hook, a tracker fetch) waits. Queue subscriptions on Symphony subjects
// are refused: a queue member would take requests meant for a component.
func readerSubscribeDeny() []string {
	deny := []string{Root + ".> >"} // subject, then queue: every queue group
	for _, spec := range Catalogue() {
		if spec.Kind != KindRequest {
			continue
		}
		filter, _ := spec.build(nil, true) // no tokens given: cannot fail
		deny = append(deny, filter)
	}
	return deny
}

// readerPublish are the subjects a reader may publish on: read-only
// JetStream API requests (their replies come back on its _INBOX), and the
// acknowledgements and flow-control answers of its consumers
// (`nats stream view` acknowledges what it shows).
func readerPublish() []string {
	return []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.STREAM.MSG.GET.*",
		"$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.CREATE.*",   // ephemeral, legacy form (the server refuses a durable name); checked by the bus
		"$JS.API.CONSUMER.CREATE.*.>", // named, optional filter; checked by the bus
		"$JS.API.CONSUMER.INFO.*.*",
		"$JS.API.CONSUMER.DELETE.*.*",
		"$JS.API.CONSUMER.MSG.NEXT.*.*",
		"$JS.ACK.>", // acknowledgements change a consumer's state, never a stream's (limits retention)
		"$JS.FC.>",
	}
}

// operatorPermissions are the reader's plus the two operator requests:
// scheduler controls (pause, resume, refresh, cancel, clear) and prune,
// which the running pruner carries out.
func operatorPermissions() *server.Permissions {
	p := readerPermissions()
	p.Publish.Allow = append(p.Publish.Allow, SchedulerControl.spec.Pattern, PruneRuns.spec.Pattern)
	return p
}

// ListenerAccountName is the NATS account of every listener client.
// Symphony's streams, buckets and own connections stay in the server's
// global account ($G); the listener account sees only what it imports
// from there. That is what keeps a listener client from writing: NATS
// checks a client's publish permission on the subject, never on the reply
// subject, and the server publishes its answer to a request on that reply
// subject in the account the request was made in. A listener client's
// reply subject is therefore always a subject of the listener account,
// whatever it names ($KV.symphony_config.current, a run event): the answer
// lands there, where no stream listens, and never in Symphony's account.
const ListenerAccountName = "LISTENER"

// listenerService is one service a listener client may call in Symphony's
// account, with the shape of its answer.
type listenerService struct {
	subject string
	resp    server.ServiceRespType
}

// listenerServices are the requests the listener account imports from
// Symphony's: the read-only JetStream API (the same list the reader may
// publish on; the permissions still decide per client), and with controls
// the two operator requests. The answers travel back through the import
// to the requester's reply subject in the listener account. Batched direct
// gets and pull requests answer with many messages (Streamed).
func listenerServices(controls bool) []listenerService {
	var out []listenerService
	for _, subj := range readerPublish() {
		if strings.HasPrefix(subj, jsConsumerCreate) {
			continue // imported from the bus's check instead
		}
		resp := server.Singleton
		switch subj {
		case "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.MSG.NEXT.*.*":
			resp = server.Streamed
		}
		out = append(out, listenerService{subj, resp})
	}
	if controls {
		out = append(out,
			listenerService{SchedulerControl.spec.Pattern, server.Singleton},
			listenerService{PruneRuns.spec.Pattern, server.Singleton})
	}
	return out
}

// listenerStreams are the subjects whose messages flow from Symphony's
// account into the listener account: the events of the catalogue (never
// the requests between components, whose reply subjects would tell a
// client where an answer is awaited), the bucket writes ($KV.>, for a raw
// watch), and the _INBOX.> deliveries of push consumers a listener client
// created (their deliver subject is taken in Symphony's account, where
// only such deliveries use _INBOX: Symphony's own replies use
// internalInboxPrefix).
func listenerStreams() []string {
	var out []string
	for _, spec := range Catalogue() {
		if spec.Kind == KindRequest {
			continue
		}
		filter, _ := spec.build(nil, true) // no tokens given: cannot fail
		out = append(out, filter)
	}
	return append(out, "$KV.>", "_INBOX.>")
}

// listenerAccount registers the listener account on a started server and
// wires its imports from the global account. It is called after start so
// that the server enables JetStream for the global account alone, exactly
// as without a listener: the store is not moved.
func listenerAccount(ns *server.Server, controls bool) (*server.Account, error) {
	sym := ns.GlobalAccount()
	lis, err := ns.RegisterAccount(ListenerAccountName)
	if err != nil {
		return nil, fmt.Errorf("bus: register the listener account: %w", err)
	}
	to := []*server.Account{lis}
	for _, subj := range listenerStreams() {
		if err := sym.AddStreamExport(subj, to); err != nil {
			return nil, fmt.Errorf("bus: export %s to the listener: %w", subj, err)
		}
		if err := lis.AddStreamImport(sym, subj, ""); err != nil {
			return nil, fmt.Errorf("bus: import %s into the listener: %w", subj, err)
		}
	}
	// Consumer creations go to the bus's check (listener_consumers.go),
	// not to the JetStream API.
	if err := sym.AddServiceExport(listenerCreatePrefix+">", to); err != nil {
		return nil, fmt.Errorf("bus: export the consumer check to the listener: %w", err)
	}
	if err := lis.AddServiceImport(sym, jsConsumerCreate+">", listenerCreatePrefix+">"); err != nil {
		return nil, fmt.Errorf("bus: import the consumer check into the listener: %w", err)
	}
	for _, svc := range listenerServices(controls) {
		if err := sym.AddServiceExportWithResponse(svc.subject, svc.resp, to); err != nil {
			return nil, fmt.Errorf("bus: export service %s to the listener: %w", svc.subject, err)
		}
		if err := lis.AddServiceImport(sym, svc.subject, ""); err != nil {
			return nil, fmt.Errorf("bus: import service %s into the listener: %w", svc.subject, err)
		}
	}
	return lis, nil
}
