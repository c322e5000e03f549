package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TokenFileName is the file in the data directory holding the token of the
// opt-in NATS listener's default client, which may watch and read but not
// write (see readerPermissions). It is written with mode 0600 at every
// start (a new token each time) and removed at a clean stop.
const TokenFileName = "nats-token"

// MaxPayload is the largest message the embedded server accepts.
const MaxPayload = 8 << 20

// ErrUnsafeListen is returned for a non-loopback --nats-listen address
// without the explicit unsafe opt-in.
var ErrUnsafeListen = errors.New("refusing a NATS listener on a non-loopback address")

// Options configures Open.
type Options struct {
	// DataDir holds the JetStream store, the lock and the token file. It is
	// created (0700) if missing.
	DataDir string
	// Listen is an optional host:port for a TCP listener (for the nats CLI).
	// Empty means in-process only: no socket at all.
	Listen string
	// ListenUnsafe allows a Listen address that is not loopback.
	ListenUnsafe bool
	// AllowControls, with Listen, writes a second token
	// (ControlTokenFileName) whose holder may also send operator commands
	// and prune requests over the listener.
	AllowControls bool
	// SyncAlways fsyncs every JetStream write (about 12x slower; an acked
	// message already survives kill -9 without it, not a power cut).
	SyncAlways bool
	// StreamMaxAge is the backstop age of stored run history; 0 means
	// DefaultStreamMaxAge.
	StreamMaxAge time.Duration
	// Logger receives the kernel's and the NATS server's logs; nil discards.
	Logger *slog.Logger
	// ClientName names the in-process connection (visible in connz).
	ClientName string
	// MaxStoreBytes caps the JetStream file store (0: the server's default,
	// a share of the disk). Past it every write is refused as the server
	// refuses one on a full disk.
	MaxStoreBytes int64
	// MaxPayload is the largest message the embedded server accepts (0:
	// MaxPayload, 8 MiB). Issues and parts of listings are cut to fit
	// (IssueLimit, PartBytes); tests lower it to check that.
	MaxPayload int32
	// AcceptStoreDamage opens a store that lost messages since the last
	// start or clean stop (a damaged block file truncated by the server):
	// the loss is logged as an error instead of failing the open.
	AcceptStoreDamage bool
	// ToolListener lets runs' MCP servers reach the tools of their run
	// (GrantTools). Without Listen it opens a loopback port of its own
	// (any free port) that admits nothing but the credentials GrantTools
	// makes; with Listen those credentials use that listener.
	ToolListener bool
}

// Bus is a running kernel: the embedded server, an in-process client and its
// JetStream context. It is safe for concurrent use.
type Bus struct {
	ns        *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	lock      *dirLock
	log       *slog.Logger
	drops     *dropLog
	dataDir   string
	listenURL string
	tokenFile string
	// controlFile is the control token's file, "" without AllowControls.
	controlFile string
	// token authenticates in-process connections when the listener is on
	// (see Connection). It is never written anywhere.
	token string
	// auth admits the listener's clients (nil without a listener); it
	// holds the tool credentials GrantTools makes. toolURL is where those
	// credentials connect ("" without ToolListener).
	auth      *listenerAuth
	toolURL   string
	closed    chan struct{}
	closeOnce sync.Once
	// ending is set when the bus's subscriptions are ended with it (its
	// Close): they report the closed connection as their end (Stream.Err).
	ending   atomic.Bool
	closeErr error

	// subs are the live subscriptions of Subscribe and Serve. Close ends
	// them before draining: a drain waits for pending messages to be read,
	// and nobody reads a subscription whose owner has stopped.
	subsMu sync.Mutex
	subs   map[*nats.Subscription]trackedSub

	// buckets caches KV handles: opening one asks the server for the
	// bucket's stream info, which is too slow to do on every read.
	bucketsMu sync.Mutex
	buckets   map[string]*bucketHandle

	// remote is how a bus on an outside NATS deployment (Dial) connects;
	// nil for the embedded kernel and its listener's clients.
	remote *remoteDialer
}

// trackedSub is what the bus keeps of a live subscription of Subscribe or
// Serve.
type trackedSub struct {
	end      func() // unsubscribes and ends it (closes its channels)
	overflow func() // counts and logs a slow-consumer episode
}

func (b *Bus) track(s *nats.Subscription, t trackedSub) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	if b.subs == nil {
		b.subs = map[*nats.Subscription]trackedSub{}
	}
	b.subs[s] = t
}

// untrack unsubscribes s (once) and forgets it.
func (b *Bus) untrack(s *nats.Subscription) {
	b.subsMu.Lock()
	_, ok := b.subs[s]
	delete(b.subs, s)
	b.subsMu.Unlock()
	if ok {
		_ = s.Unsubscribe()
	}
}

// connHandlers are the connection callbacks of a bus: a closed connection
// ends its subscriptions; a slow-consumer report goes to the subscription
// it concerns; other asynchronous errors are logged.
func (b *Bus) connHandlers() []nats.Option {
	return []nats.Option{
		nats.ClosedHandler(func(*nats.Conn) {
			close(b.closed)
			b.endAll()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil && errors.Is(err, nats.ErrSlowConsumer) && b.slowConsumer(sub) {
				return
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Error("nats client error", "subject", subject, "err", err)
		}),
	}
}

// connectionEnded reports whether the bus's connection is closed or being
// closed with the bus.
func (b *Bus) connectionEnded() bool {
	if b.ending.Load() {
		return true
	}
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// endAll ends every live subscription (at teardown, or when the connection
// closed under them).
func (b *Bus) endAll() {
	b.subsMu.Lock()
	live := make([]trackedSub, 0, len(b.subs))
	for _, t := range b.subs {
		live = append(live, t)
	}
	b.subsMu.Unlock()
	for _, t := range live {
		t.end()
	}
}

// slowConsumer routes nats.go's slow-consumer report for s to its
// subscription; false when s is not one of ours.
func (b *Bus) slowConsumer(s *nats.Subscription) bool {
	b.subsMu.Lock()
	t, ok := b.subs[s]
	b.subsMu.Unlock()
	if ok {
		t.overflow()
	}
	return ok
}

// Open starts the embedded NATS server with JetStream on opts.DataDir,
// connects to it in-process and declares every stream and bucket. It fails
// fast with a *DataDirInUseError when another process owns the directory.
//
// It is the kernel's start-up as a sequence of steps. Each step records on
// b what it made as soon as it exists (the lock, the server, the listener's
// files, the connection), and a failure after the lock tears down what b
// holds, in teardown's order: the connection drained, the server shut
// down, the listener's files removed, the lock released last, so no other
// process can take the directory while this one still writes to it.
func Open(ctx context.Context, opts Options) (b *Bus, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dataDir, lock, err := claimDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	b = &Bus{lock: lock, log: log, drops: newDropLog(log), dataDir: dataDir, closed: make(chan struct{})}
	defer func() {
		if err != nil {
			b.teardown(context.Background())
		}
	}()
	sopts, auth, err := serverOptions(dataDir, opts)
	if err != nil {
		return b, err
	}
	if err := b.startServer(sopts); err != nil {
		return b, err
	}
	if auth != nil {
		if err := b.openListener(sopts.Host, auth, opts.ToolListener); err != nil {
			return b, err
		}
	}
	if auth != nil && auth.readers {
		if err := b.advertiseListener(auth); err != nil {
			return b, err
		}
	}
	if err := b.connectInProcess(opts.ClientName, auth); err != nil {
		return b, err
	}
	if err := b.declareAll(ctx, opts.StreamMaxAge); err != nil {
		return b, err
	}
	if err := checkStore(ctx, b, opts.AcceptStoreDamage); err != nil {
		return b, err
	}
	log.Debug("bus ready", "data_dir", dataDir, "listen", b.listenURL != "")
	return b, nil
}

// claimDataDir makes the data directory (0700) and takes its lock: one
// process at a time owns a store, and everything after this step relies on
// it. It returns the directory as an absolute path, which the lock, the
// token files and the hints printed to the operator name.
func claimDataDir(dir string) (string, *dirLock, error) {
	if dir == "" {
		return "", nil, errors.New("bus: data directory is required")
	}
	dataDir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("bus: data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("bus: create data directory: %w", err)
	}
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return "", nil, err
	}
	return dataDir, lock, nil
}

// serverOptions configures the embedded server: JetStream in the data
// directory and, by default, no socket at all. With opts.Listen it also
// opens the TCP listener, guarded by the fresh tokens of the auth it
// returns (nil without a listener). It starts nothing, so it undoes
// nothing when it fails.
func serverOptions(dataDir string, opts Options) (*server.Options, *listenerAuth, error) {
	sopts := &server.Options{
		ServerName: "symphony",
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		NoSigs:     true,
		DontListen: true,
		MaxPayload: MaxPayload,
		SyncAlways: opts.SyncAlways,
	}
	if opts.MaxPayload > 0 {
		sopts.MaxPayload = opts.MaxPayload
	}
	if opts.MaxStoreBytes > 0 {
		sopts.JetStreamMaxStore = opts.MaxStoreBytes
	}
	if opts.AllowControls && opts.Listen == "" {
		return nil, nil, errors.New("bus: operator controls over NATS need a listener (--nats-listen)")
	}
	if opts.Listen == "" && !opts.ToolListener {
		return sopts, nil, nil
	}
	// The tool listener alone: a loopback port that admits only the
	// internal token and run tool credentials.
	host, port, readers := "127.0.0.1", 0, false
	if opts.Listen != "" {
		var err error
		if host, port, err = splitListen(opts.Listen, opts.ListenUnsafe); err != nil {
			return nil, nil, err
		}
		readers = true
	}
	auth, err := newListenerAuth(readers, opts.AllowControls)
	if err != nil {
		return nil, nil, err
	}
	sopts.DontListen = false
	sopts.Host, sopts.Port = host, port
	if port == 0 {
		// The server reads 0 as "the default 4222"; the operator asked
		// for any free port.
		sopts.Port = server.RANDOM_PORT
	}
	sopts.CustomClientAuthentication = auth
	return sopts, auth, nil
}

// newListenerAuth makes the listener's tokens, new at every start so a
// token from an earlier run opens nothing: the internal one (Symphony's own
// in-process connections), the reader's when readers is set (the
// operator's listener; the tool listener alone admits no reader), and the
// control token when controls is set.
func newListenerAuth(readers, controls bool) (*listenerAuth, error) {
	auth := &listenerAuth{readers: readers, grants: map[[32]byte]*toolGrant{}, log: slog.New(slog.DiscardHandler)}
	var err error
	if auth.internal, err = newToken(); err != nil {
		return nil, err
	}
	if readers {
		if auth.reader, err = newToken(); err != nil {
			return nil, err
		}
	}
	if controls {
		if auth.control, err = newToken(); err != nil {
			return nil, err
		}
	}
	return auth, nil
}

// startServer starts the embedded server and waits until it takes
// connections. b holds the server from the moment it started, so a server
// that never becomes ready is still shut down.
func (b *Bus) startServer(sopts *server.Options) error {
	ns, err := server.NewServer(sopts)
	if err != nil {
		return fmt.Errorf("bus: configure nats server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{b.log.With("component", "nats")}, false, false, false)
	ns.Start()
	b.ns = ns
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("bus: embedded nats server did not become ready within 30s")
	}
	return nil
}

// openListener admits the listener's clients: their accounts can only be
// made on a running server, and until auth holds them only the internal
// token is accepted. It records the listener's URL, on host as the
// operator gave it and the port the server took, and with tools the URL
// run tool credentials connect to (loopback when the listener is on every
// address).
func (b *Bus) openListener(host string, auth *listenerAuth, tools bool) error {
	b.auth = auth
	auth.log = b.log
	addr, ok := b.ns.Addr().(*net.TCPAddr)
	if !ok {
		return errors.New("bus: listener has no TCP address")
	}
	url := "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	if auth.readers {
		lis, err := listenerAccount(b.ns, auth.control != "")
		if err != nil {
			return err
		}
		auth.account.Store(lis)
		b.listenURL = url
	}
	if !tools {
		return nil
	}
	acc, err := toolAccount(b.ns)
	if err != nil {
		return err
	}
	auth.tools.Store(acc)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		url = "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
	}
	b.toolURL = url
	return nil
}

// advertiseListener writes the listener's URL and tokens into the data
// directory, where the CLI finds them (ConnectDataDir). b records the token
// file before the first write, so a failure here removes whatever was
// written (teardown removes all three files).
func (b *Bus) advertiseListener(auth *listenerAuth) error {
	b.tokenFile = filepath.Join(b.dataDir, TokenFileName)
	if err := writeSecretFile(b.tokenFile, auth.reader); err != nil {
		return err
	}
	control := filepath.Join(b.dataDir, ControlTokenFileName)
	if auth.control != "" {
		b.controlFile = control
		if err := writeSecretFile(control, auth.control); err != nil {
			return err
		}
	} else if err := os.Remove(control); err != nil && !errors.Is(err, os.ErrNotExist) {
		// A crashed earlier start's file would name a token that no
		// longer exists: the prune command would try it.
		return fmt.Errorf("bus: remove %s: %w", control, err)
	}
	return writeSecretFile(filepath.Join(b.dataDir, URLFileName), b.listenURL)
}

// connectInProcess connects the kernel's own client, named name
// ("symphony" if empty), with the internal token when there is a listener
// (auth not nil), and then serves the listener clients' consumer creations,
// which go through this client.
func (b *Bus) connectInProcess(name string, auth *listenerAuth) error {
	if name == "" {
		name = "symphony"
	}
	if auth != nil {
		b.token = auth.internal
	}
	if err := b.dial("", "in-process", b.internalOptions(name)...); err != nil {
		return err
	}
	if auth != nil && auth.readers {
		return b.serveListenerConsumers()
	}
	return nil
}

// declareAll declares the catalogue's streams and buckets, keeping stored
// history for maxAge (0: DefaultStreamMaxAge), before any component
// publishes or reads.
func (b *Bus) declareAll(ctx context.Context, maxAge time.Duration) error {
	if maxAge == 0 {
		maxAge = DefaultStreamMaxAge
	}
	changed, err := declare(ctx, b.js, maxAge, 1)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		b.log.Debug("bus: streams created or updated", "streams", changed)
	}
	return nil
}

// declare creates or updates every stream and bucket of the catalogue. It
// lists the existing streams in one request and sends a create or update
// only for a stream whose configuration differs from the catalogue's: an
// update rewrites the stream's metadata on disk and was most of the cost of
// a start, for nothing when the configuration is already right (the usual
// case). It returns the names of the streams it created or updated.
// replicas is how many servers of a cluster hold each stream and bucket
// (1 for the embedded server).
func declare(ctx context.Context, js jetstream.JetStream, maxAge time.Duration, replicas int) ([]string, error) {
	have := map[string]jetstream.StreamConfig{}
	list := js.ListStreams(ctx)
	for info := range list.Info() {
		have[info.Config.Name] = info.Config
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("bus: list streams: %w", err)
	}
	var changed []string
	for _, st := range Streams() {
		cfg := streamConfig(st, maxAge)
		cfg.Replicas = replicas
		if cur, ok := have[cfg.Name]; ok && sameStreamConfig(cur, cfg) {
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("bus: declare stream %s: %w", st.Name, err)
		}
		changed = append(changed, cfg.Name)
	}
	for _, kv := range Buckets() {
		cfg := bucketStreamConfig(kv)
		cfg.Replicas = replicas
		if cur, ok := have[cfg.Name]; ok && sameStreamConfig(cur, cfg) {
			continue
		}
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      kv.Name,
			Description: kv.Doc,
			History:     kv.History,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("bus: declare bucket %s: %w", kv.Name, err)
		}
		changed = append(changed, cfg.Name)
	}
	return changed, nil
}

// streamConfig is the stream configuration of a catalogue stream.
func streamConfig(st StreamSpec, maxAge time.Duration) jetstream.StreamConfig {
	age := st.MaxAge
	if age == 0 {
		age = maxAge
	}
	return jetstream.StreamConfig{
		Name:        st.Name,
		Description: st.Doc,
		Subjects:    st.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      age,
		Duplicates:  DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
}

// bucketStreamConfig is the stream configuration nats.go derives from a
// bucket's KeyValueConfig (jetstream's prepareKeyValueConfig, for the
// settings the catalogue uses). It only decides whether the bucket needs
// an update; the update itself goes through CreateOrUpdateKeyValue. Were it
// to drift from nats.go's, buckets would be updated at every start
// (TestRedeclareChangesNothing catches that).
func bucketStreamConfig(kv BucketSpec) jetstream.StreamConfig {
	history := int64(kv.History)
	if history == 0 {
		history = 1
	}
	return jetstream.StreamConfig{
		Name:              "KV_" + kv.Name,
		Description:       kv.Doc,
		Subjects:          []string{"$KV." + kv.Name + ".>"},
		MaxMsgsPerSubject: history,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
}

// sameStreamConfig reports whether the server's configuration of a stream
// is the one declared, once the server's defaults are applied to the
// declared one (0 limits mean unlimited, -1; 0 replicas mean 1). Metadata
// is the server's own (API levels) and not compared.
func sameStreamConfig(have, want jetstream.StreamConfig) bool {
	norm := func(c jetstream.StreamConfig) jetstream.StreamConfig {
		for _, p := range []*int64{&c.MaxMsgs, &c.MaxBytes, &c.MaxMsgsPerSubject} {
			if *p == 0 {
				*p = -1
			}
		}
		if c.MaxConsumers == 0 {
			c.MaxConsumers = -1
		}
		if c.MaxMsgSize == 0 {
			c.MaxMsgSize = -1
		}
		if c.Replicas == 0 {
			c.Replicas = 1
		}
		if len(c.Subjects) == 0 {
			c.Subjects = nil
		}
		if len(c.Sources) == 0 {
			c.Sources = nil
		}
		c.Metadata = nil
		return c
	}
	return reflect.DeepEqual(norm(have), norm(want))
}

// URLFileName is the file in the data directory holding the opt-in
// listener's URL, next to the token, so `symphony runs` and `replay` can
// reach a running instance.
const URLFileName = "nats-url"

// Connection opens another in-process connection to this kernel's server,
// as a Bus of its own: Close closes only that connection. The server closes
// a connection whose outbound data falls 64 MiB behind (a slow consumer),
// and every subscription and pending publish on it fails with it. A
// component whose readers the outside world paces (the dashboard, whose
// followers are as slow as the browsers reading them) gets a connection of
// its own, so a slow reader can never cut the agents' events off from the
// store.
func (b *Bus) Connection(name string) (*Bus, error) {
	if b.remote != nil {
		return b.remote.connection(b, name)
	}
	if b.ns == nil {
		return nil, errors.New("bus: another connection needs the embedded server")
	}
	c := &Bus{log: b.log, drops: b.drops, dataDir: b.dataDir, closed: make(chan struct{})}
	if err := c.dial("", "in-process ("+name+")", b.internalOptions(name)...); err != nil {
		return nil, err
	}
	return c, nil
}

// internalOptions are the options of one of Symphony's own in-process
// connections: the in-memory token when the listener is on (the one cost
// of authorization, once at connect; the role has no permissions to check
// per message), and the inbox prefix no listener client can subscribe to.
func (b *Bus) internalOptions(name string) []nats.Option {
	copts := []nats.Option{nats.InProcessServer(b.ns), nats.Name(name), nats.CustomInboxPrefix(internalInboxPrefix)}
	if b.token != "" {
		copts = append(copts, nats.Token(b.token))
	}
	return copts
}

// dial connects b's client (with its handlers) and its JetStream context;
// what names the connection in errors.
func (b *Bus) dial(url, what string, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append(opts, b.connHandlers()...)...)
	if err != nil {
		return fmt.Errorf("bus: connect %s: %w", what, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("bus: jetstream (%s): %w", what, err)
	}
	b.nc, b.js = nc, js
	return nil
}

// Connect joins a running instance as a client over its listener: no
// server, no lock. It is how the CLI reads runs while `symphony run` holds
// the data directory.
func Connect(ctx context.Context, url, token string, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{log: log, drops: newDropLog(log), closed: make(chan struct{}), listenURL: url}
	if err := b.dial(url, "to "+url, nats.Token(token), nats.Name("symphony cli"), nats.Timeout(5*time.Second)); err != nil {
		return nil, err
	}
	return b, nil
}

// ConnectDataDir connects to the instance that holds dataDir through the
// listener it advertised there (URL and read token files), with the
// reader's rights: enough for runs and replay.
func ConnectDataDir(ctx context.Context, dataDir string, log *slog.Logger) (*Bus, error) {
	return connectDataDir(ctx, dataDir, TokenFileName, log)
}

// ErrNoControls is returned by ConnectDataDirControl when the running
// instance's listener accepts no operator commands.
var ErrNoControls = errors.New("the running instance accepts no operator commands over NATS (start it with --nats-listen 127.0.0.1:0 --nats-allow-controls)")

// ConnectDataDirControl connects like ConnectDataDir with the control token,
// whose holder may also send operator commands and prune requests.
func ConnectDataDirControl(ctx context.Context, dataDir string, log *slog.Logger) (*Bus, error) {
	if _, err := os.Stat(filepath.Join(dataDir, URLFileName)); err == nil {
		if _, err := os.Stat(filepath.Join(dataDir, ControlTokenFileName)); errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoControls
		}
	}
	return connectDataDir(ctx, dataDir, ControlTokenFileName, log)
}

func connectDataDir(ctx context.Context, dataDir, tokenFile string, log *slog.Logger) (*Bus, error) {
	url, err := os.ReadFile(filepath.Join(dataDir, URLFileName))
	if err != nil {
		return nil, fmt.Errorf("the running instance has no NATS listener (start it with --nats-listen 127.0.0.1:0 to reach it while it runs, or stop it)")
	}
	token, err := os.ReadFile(filepath.Join(dataDir, tokenFile))
	if err != nil {
		return nil, fmt.Errorf("read the listener token: %w", err)
	}
	return Connect(ctx, strings.TrimSpace(string(url)), strings.TrimSpace(string(token)), log)
}

// Conn is the in-process client connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the client's JetStream context.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Logger is the bus's logger, for what is built on it to log alongside.
func (b *Bus) Logger() *slog.Logger { return b.log }

// DataDir is the absolute data directory.
func (b *Bus) DataDir() string { return b.dataDir }

// ListenURL is the nats:// URL of the opt-in TCP listener, "" when none.
func (b *Bus) ListenURL() string { return b.listenURL }

// TokenFile is the path of the file holding the listener's read token, ""
// when there is no listener.
func (b *Bus) TokenFile() string { return b.tokenFile }

// ControlTokenFile is the path of the file holding the listener's control
// token, "" unless Options.AllowControls.
func (b *Bus) ControlTokenFile() string { return b.controlFile }

// ControlHint is a ready-to-paste nats CLI request that pauses dispatch
// with the control token, "" unless Options.AllowControls. Like
// ConnectHint it reads the token from its file into NATS_USER.
func (b *Bus) ControlHint() string {
	if b.controlFile == "" {
		return ""
	}
	return fmt.Sprintf("NATS_USER=\"$(cat %s)\" go tool nats --server %s req %s -H %s:%s -H %s:%d '{\"action\":\"pause\"}'",
		shellQuote(b.controlFile), b.listenURL, SchedulerControl.spec.Pattern,
		HeaderType, SchedulerControl.spec.typeName, HeaderSchema, SchedulerControl.spec.Schema)
}

// ConnectHint is a ready-to-paste nats CLI invocation for the listener. It
// reads the token from its file rather than spelling it, so the hint can be
// printed to a terminal or a service log without leaking the secret, and
// hands it to the CLI in its environment (NATS_USER), not as an argument:
// a process's arguments are readable by every local user
// (/proc/<pid>/cmdline), its environment only by its owner, and the token
// is all that guards the loopback listener.
func (b *Bus) ConnectHint() string {
	if b.listenURL == "" {
		return ""
	}
	return fmt.Sprintf("NATS_USER=\"$(cat %s)\" go tool nats --server %s sub 'symphony.>'", shellQuote(b.tokenFile), b.listenURL)
}

// Close shuts the kernel down cleanly: it drains the client (in-flight
// messages are delivered, subscriptions end), waits for the connection to
// close, shuts the server down and waits for it, and releases the data
// directory. Components must be stopped before. ctx bounds the drain.
func (b *Bus) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		if b.ns != nil {
			// A clean stop records how far every stream got.
			if err := writeManifest(ctx, b); err != nil {
				b.log.Warn("record the store manifest", "err", err)
			}
		}
		b.closeErr = b.teardown(ctx)
	})
	return b.closeErr
}

func (b *Bus) teardown(ctx context.Context) error {
	var errs []error
	if b.nc != nil {
		b.ending.Store(true)
		b.endAll()
		if b.remote != nil && !b.nc.IsConnected() {
			// Cut off from the deployment: nothing pending can be
			// delivered; a drain would only wait for ctx.
			b.nc.Close()
		}
		if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		select {
		case <-b.closed:
		case <-ctx.Done():
			b.nc.Close()
			errs = append(errs, fmt.Errorf("drain: %w", ctx.Err()))
		}
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	if b.tokenFile != "" {
		for _, f := range []string{b.tokenFile, filepath.Join(b.dataDir, ControlTokenFileName), filepath.Join(b.dataDir, URLFileName)} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", f, err))
			}
		}
	}
	if err := b.lock.release(); err != nil {
		errs = append(errs, fmt.Errorf("release lock: %w", err))
	}
	return errors.Join(errs...)
}

// splitListen parses host:port and refuses non-loopback hosts unless unsafe.
func splitListen(addr string, unsafe bool) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: --nats-listen %q: want host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bus: --nats-listen %q: port must be 0..65535", addr)
	}
	if !isLoopback(host) && !unsafe {
		return "", 0, fmt.Errorf("%w: %q (use 127.0.0.1 or ::1, or pass --nats-listen-unsafe if you really mean it)", ErrUnsafeListen, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// isLoopback accepts "localhost" and loopback IP literals only; anything that
// needs DNS to decide is treated as not loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newToken() (string, error) {
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("bus: generate token: %w", err)
	}
	return hex.EncodeToString(buf), nil
}

// writeSecretFile replaces path with content, readable by the owner only.
func writeSecretFile(path, content string) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("bus: write %s: %w", path, err)
	}
	if _, err := f.WriteString(content + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("bus: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bus: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("bus: write %s: %w", path, err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, `'\''`...)
			continue
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// serverLogger routes the NATS server's logs into slog. Notices are debug
// level (the server is an implementation detail of the kernel, and its
// start-up banner is noise to an operator), except a slow consumer's.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Slow Consumer") {
		// The server closes or drops for a connection that fell behind:
		// an operator must see it.
		s.l.Warn(msg)
		return
	}
	s.l.Debug(msg)
}
func (s serverLogger) Warnf(format string, v ...any)  { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
