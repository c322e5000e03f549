package ui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// Defaults of the dashboard's address (CONTRACT §7: loopback only unless
// the operator says otherwise).
const (
	DefaultBind = "127.0.0.1"
	DefaultPort = 4000
)

// Options configure a dashboard.
type Options struct {
	// Bus is the bus a live dashboard follows. Nil for a replay.
	Bus *bus.Bus
	Log *slog.Logger
	// Bind and Port are the listen address; Port 0 picks a free port.
	Bind string
	Port int
	// BindUnsafe allows a Bind that is not a loopback address. There is no
	// authentication: whoever reaches the port controls the scheduler.
	BindUnsafe bool
	// URLFile, when set, receives the dashboard's URL once it listens (and
	// is removed when it stops): how scripts and tests find a port 0.
	URLFile string
	// Replay plays a recorded run instead of following the bus.
	Replay *Replay
	// OnListen, when set, is called with the URL once the dashboard listens.
	OnListen func(url string)
	// OnReady, when set, is called right after /healthz starts answering
	// 200: each time the live dashboard has loaded its state from the bus
	// (again after the supervisor restarted it), never in a replay. It runs
	// on the dashboard's reader and should return at once.
	OnReady func()
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// LogWriteErrors, when set, reports the process's log writes that
	// failed (the output refused them: a closed pipe) and that were
	// dropped (the output was not read fast enough), exported as
	// symphony_log_write_errors_total{reason="failed"|"dropped"}.
	LogWriteErrors func() (failed, dropped uint64)
	// MaxStreams caps the event streams served at once (all kinds
	// together; see streamLimit); beyond it a stream is refused with 503
	// and Retry-After. 0 is DefaultMaxStreams.
	MaxStreams int
	// WriteTimeout is how long one write to a client may block before the
	// client is dropped (streams and the run page; see sseStream). 0 is
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// Replay is a recorded run to play through the dashboard.
type Replay struct {
	RunID  string
	Events []runlog.Event
	// Speed divides the recorded gaps between events; 0 plays at once.
	Speed float64
}

// Server is the dashboard: a component that serves HTTP on loopback and
// keeps its Model current from the bus (or from a replay).
type Server struct {
	opts    Options
	log     *slog.Logger
	model   *Model
	feed    Feed
	replay  *replayFeed
	metrics *metrics
	streams *streamLimit
	handler http.Handler
	// allowedHosts are the Host header values (without port) accepted
	// besides loopback names: the configured bind host.
	allowedHosts map[string]bool
}

// New checks the options and builds the dashboard; nothing listens until
// Run.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Bind == "" {
		opts.Bind = DefaultBind
	}
	if opts.MaxStreams < 0 {
		return nil, fmt.Errorf("dashboard max streams %d: want 1 or more (0 for the default, %d)", opts.MaxStreams, DefaultMaxStreams)
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("dashboard port %d: want 0..65535", opts.Port)
	}
	if err := CheckBind(opts.Bind, opts.BindUnsafe); err != nil {
		return nil, err
	}
	if opts.Bus == nil && opts.Replay == nil {
		return nil, errors.New("dashboard: neither a bus to follow nor a run to replay")
	}
	s := &Server{opts: opts, log: opts.Log.With("component", bus.CompUI), model: NewModel(), allowedHosts: map[string]bool{}}
	if !isLoopbackHost(opts.Bind) && !isUnspecified(opts.Bind) {
		s.allowedHosts[opts.Bind] = true
	}
	s.metrics = newMetrics(s.model)
	s.metrics.logWriteErrors(opts.LogWriteErrors)
	s.streams = newStreamLimit(opts.MaxStreams)
	if opts.Replay != nil {
		s.replay = newReplayFeed(opts.Replay.RunID, opts.Replay.Events)
		s.feed = s.replay
		s.model.SetReplay(ReplayInfo{RunID: opts.Replay.RunID, Speed: opts.Replay.Speed, Events: len(opts.Replay.Events)})
		s.model.SetReady() // nothing to load: the events are in hand
	} else {
		s.feed = liveFeed{b: opts.Bus}
	}
	s.handler = s.routes()
	return s, nil
}

// CheckBind refuses an address that is not loopback unless unsafe is set.
func CheckBind(host string, unsafe bool) error {
	if isLoopbackHost(host) || unsafe {
		return nil
	}
	return fmt.Errorf("dashboard bind address %q is not loopback: the dashboard has no authentication, so anyone who reaches it controls the scheduler; pass --bind-unsafe to do it anyway", host)
}

// Name is the component name.
func (s *Server) Name() string { return bus.CompUI }

// Model is the dashboard's model (tests and benchmarks fill it directly).
func (s *Server) Model() *Model { return s.model }

// Handler is the dashboard's HTTP handler with every guard applied.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens, follows the bus (or plays the replay) and serves until ctx
// ends. Every request's context derives from ctx, so open live streams end
// with it.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(s.opts.Bind, strconv.Itoa(s.opts.Port)))
	if err != nil {
		return fmt.Errorf("dashboard: %w (choose another with --port or server.port)", err)
	}
	url := "http://" + ln.Addr().String()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	source := make(chan error, 1)
	go func() {
		if s.replay != nil {
			source <- s.play(ctx)
		} else {
			source <- s.follow(ctx)
		}
	}()
	if s.opts.URLFile != "" {
		if err := os.WriteFile(s.opts.URLFile, []byte(url+"\n"), 0o600); err != nil {
			s.log.Warn("write dashboard url file", "path", s.opts.URLFile, "err", err)
		}
		defer os.Remove(s.opts.URLFile)
	}
	s.log.Info("dashboard listening", "url", url)
	if s.opts.OnListen != nil {
		s.opts.OnListen(url)
	}
	var runErr error
	sourceDone := false
	select {
	case <-ctx.Done():
	case err := <-served:
		runErr = fmt.Errorf("dashboard server: %w", err)
	case err := <-source:
		sourceDone = true
		if err != nil {
			runErr = err
		} else if ctx.Err() == nil && s.replay != nil {
			// The replay finished playing: keep serving until stopped.
			select {
			case <-ctx.Done():
			case err := <-served:
				runErr = fmt.Errorf("dashboard server: %w", err)
			}
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if !sourceDone {
		<-source
	}
	return runErr
}

// play feeds the recorded events to the model and the run page, keeping
// the recorded gaps divided by the speed.
func (s *Server) play(ctx context.Context) error {
	r := s.opts.Replay
	var prev time.Time
	for i, ev := range r.Events {
		if r.Speed > 0 && !prev.IsZero() {
			if gap := ev.At.Sub(prev); gap > 0 {
				t := time.NewTimer(time.Duration(float64(gap) / r.Speed))
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil
				}
			}
		}
		prev = ev.At
		switch {
		case ev.Run != nil:
			s.model.ApplyRunEvent(*ev.Run, true)
		case ev.Turn != nil:
			s.model.ApplyTurnEvent(*ev.Turn)
		case ev.Hook != nil:
			s.model.ApplyHookEvent(*ev.Hook)
		}
		s.replay.advance()
		s.model.SetReplay(ReplayInfo{RunID: r.RunID, Speed: r.Speed, Events: len(r.Events), Played: i + 1, Done: i+1 == len(r.Events)})
	}
	if len(r.Events) == 0 {
		s.model.SetReplay(ReplayInfo{RunID: r.RunID, Speed: r.Speed, Done: true})
	}
	s.model.SetReady()
	return nil
}
