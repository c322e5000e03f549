package bus

import (
	"crypto/subtle"

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
	case same(tok, a.reader):
		c.RegisterUser(&server.User{Username: roleReader, Permissions: readerPermissions()})
	case a.control != "" && same(tok, a.control):
		c.RegisterUser(&server.User{Username: roleOperator, Permissions: operatorPermissions()})
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
// symphony runs/replay, need both. Every stream keeps its messages by
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
		"$JS.API.CONSUMER.CREATE.*",   // ephemeral, legacy form: a durable name is refused
		"$JS.API.CONSUMER.CREATE.*.>", // named (ordered and ephemeral), optional filter
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
