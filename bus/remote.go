package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RemoteOptions configures Dial: a NATS deployment Symphony does not run
// (a cluster with replicated JetStream, usually), reached with NATS's own
// authentication and TLS. Secrets come from files or from the caller
// (which reads them from its environment), never from a command line.
type RemoteOptions struct {
	// URLs are the servers' URLs (nats:// or tls://); the client fails
	// over between them.
	URLs []string
	// CredsFile is a NATS credentials file (a user JWT and its nkey seed).
	CredsFile string
	// NKeyFile is an nkey seed file (the user's public key is derived).
	NKeyFile string
	// User and Password authenticate by name (empty: not used).
	User, Password string
	// TLSCA, TLSCert and TLSKey are PEM files: the CA that signed the
	// servers' certificates, and the client's certificate and key when
	// the servers ask for one.
	TLSCA, TLSCert, TLSKey string
	// Declare declares the catalogue's streams and buckets (the scheduler
	// host does; a reader or a worker relies on them existing).
	Declare bool
	// Replicas is how many servers hold each stream and bucket when they
	// are declared; 0 means 3 when the server reports a cluster, else 1.
	Replicas int
	// StreamMaxAge is the backstop age of stored run history (0: the
	// default).
	StreamMaxAge time.Duration
	// DataDir is a local directory for files beside the store (the
	// dashboard's URL, runs' MCP configs); it holds no store and no lock.
	DataDir string
	// ClientName names the connection (visible in the servers' connz).
	ClientName string
	// Logger receives the client's logs; nil discards.
	Logger *slog.Logger
}

// remoteDialer is what a bus on an outside deployment keeps to open more
// connections (Connection) with the same servers, credentials and TLS.
type remoteDialer struct {
	url  string
	opts []nats.Option
}

// ClusterReplicas is the default replica count of a clustered deployment:
// a stream survives the loss of one server of three.
const ClusterReplicas = 3

// Dial connects to an outside NATS deployment with JetStream and, with
// o.Declare, declares every stream and bucket with o.Replicas replicas.
// The bus it returns behaves as the embedded kernel's for every
// component: same subjects, streams and buckets. It has no server, no
// store lock and no tool listener (runs get no tracker tools over it).
func Dial(ctx context.Context, o RemoteOptions) (*Bus, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("bus: --nats needs at least one server URL")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, u := range o.URLs {
		if pu, err := url.Parse(u); err != nil || pu.User != nil {
			return nil, fmt.Errorf("bus: NATS server URL %q: want nats://host:port or tls://host:port, credentials not in the URL (a command line is readable by every local user): use a creds or nkey file, or SYMPHONY_NATS_USER and SYMPHONY_NATS_PASSWORD", redactURL(u))
		}
	}
	opts, err := remoteOptions(o)
	if err != nil {
		return nil, err
	}
	d := &remoteDialer{url: strings.Join(o.URLs, ","), opts: opts}
	name := o.ClientName
	if name == "" {
		name = "symphony"
	}
	b := &Bus{log: log, drops: newDropLog(log), dataDir: o.DataDir, closed: make(chan struct{}), remote: d}
	if err := b.dial(d.url, "to "+d.url, append(d.options(name), nats.Timeout(5*time.Second))...); err != nil {
		return nil, err
	}
	if !o.Declare {
		return b, nil
	}
	if err := b.declareRemote(ctx, o); err != nil {
		_ = b.teardown(context.Background())
		return nil, err
	}
	return b, nil
}

// redactURL is u without what may be a secret: its user information.
func redactURL(u string) string {
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return scheme + "://…@" + rest[at+1:]
		}
	}
	if at := strings.LastIndex(u, "@"); at >= 0 {
		return "…@" + u[at+1:]
	}
	return u
}

// declareRemote declares the catalogue on the deployment with o's
// replicas (the default decided by whether the server is clustered).
func (b *Bus) declareRemote(ctx context.Context, o RemoteOptions) error {
	replicas := o.Replicas
	if replicas == 0 {
		replicas = 1
		if b.nc.ConnectedClusterName() != "" {
			replicas = ClusterReplicas
		}
	}
	maxAge := o.StreamMaxAge
	if maxAge == 0 {
		maxAge = DefaultStreamMaxAge
	}
	// A cluster that just started, or lost a server, may be electing its
	// leaders: its JetStream answers nothing for a few seconds. The
	// declaration is tried again until declareWindow has passed.
	var changed []string
	var err error
	for deadline := time.Now().Add(declareWindow); ; {
		changed, err = declare(ctx, b.js, maxAge, replicas)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil || !Unavailable(err) {
			break
		}
		b.log.Warn("bus: declaring the streams failed; trying again", "err", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("%w (replicas %d; pass --replicas to change it)", err, replicas)
	}
	b.log.Info("bus: streams and buckets declared", "replicas", replicas, "changed", len(changed))
	return nil
}

// declareWindow bounds how long Dial tries to declare the catalogue on a
// cluster that does not answer yet.
const declareWindow = 30 * time.Second

// Unavailable reports whether a request to the servers failed for want of
// an answer (a timeout, no responders, JetStream unavailable while a
// cluster elects its leaders) rather than for a refusal that another try
// would get again (a full store, a wrong revision).
func Unavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		strings.Contains(err.Error(), "temporarily unavailable")
}

// Replicas reports how many replicas the deployment keeps of the state
// bucket (1 for the embedded server).
func (b *Bus) Replicas(ctx context.Context) (int, error) {
	s, err := b.js.Stream(ctx, "KV_"+BucketState)
	if err != nil {
		return 0, fmt.Errorf("bus: state bucket: %w", err)
	}
	return max(1, s.CachedInfo().Config.Replicas), nil
}

// Remote reports whether the bus is on an outside deployment (Dial).
func (b *Bus) Remote() bool { return b.remote != nil }

// remoteOptions turns o's authentication and TLS into client options. It
// refuses two ways of authenticating at once: which one the server would
// see is not obvious, and a forgotten one is a secret left lying about.
func remoteOptions(o RemoteOptions) ([]nats.Option, error) {
	var opts []nats.Option
	ways := 0
	if o.CredsFile != "" {
		ways++
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		ways++
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed file %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" || o.Password != "" {
		ways++
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if ways > 1 {
		return nil, errors.New("bus: give one way of authenticating to NATS: a creds file, an nkey seed file, or a user and password")
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("bus: a TLS client certificate needs its key, and a key its certificate (--nats-tls-cert and --nats-tls-key)")
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	return opts, nil
}

// options are a connection's options: the deployment's, a name, the
// inbox prefix of Symphony's own connections, and reconnection without
// end (a cluster loses a server; the client moves to another).
func (d *remoteDialer) options(name string) []nats.Option {
	return append(append([]nats.Option(nil), d.opts...),
		nats.Name(name), nats.CustomInboxPrefix(internalInboxPrefix),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
}

// connection opens another connection to the deployment for b, as
// Connection does on the embedded server.
func (d *remoteDialer) connection(b *Bus, name string) (*Bus, error) {
	c := &Bus{log: b.log, drops: b.drops, dataDir: b.dataDir, closed: make(chan struct{}), remote: d}
	if err := c.dial(d.url, "to "+d.url+" ("+name+")", append(d.options(name), nats.Timeout(5*time.Second))...); err != nil {
		return nil, err
	}
	return c, nil
}
