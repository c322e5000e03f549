package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/components/agentrunner"
	"github.com/symphony-oss/symphony/components/notifier"
	"github.com/symphony-oss/symphony/components/pruner"
	"github.com/symphony-oss/symphony/components/scheduler"
	"github.com/symphony-oss/symphony/components/tracker"
	"github.com/symphony-oss/symphony/components/workflow"
	"github.com/symphony-oss/symphony/components/workspace"
	"github.com/symphony-oss/symphony/internal/logsink"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/internal/workflowfile"
	"github.com/symphony-oss/symphony/ui"
)

// defaultGCPercent is the garbage collector's target for `symphony run`
// unless GOGC is set: a collection when the heap has grown by half of what
// was live after the last one, instead of Go's default of all of it. The
// daemon's live heap is small (about 12 MB with 50 agents streaming) and
// what it allocates is short-lived; with 50 agents the peak RSS was 62 MB
// with 100 and 55 MB with 50, for 0.07 s more CPU over the whole workload
// (BENCHMARKS.md).
const defaultGCPercent = 50

// startupGCPercent is the garbage collector's target while `symphony run`
// starts: with Go's 4 MB minimum heap scaled by it, the first collection
// comes at about 40 MB, past what a start allocates (about 10 MB, nearly
// all of it kept), and a start that allocates more (a large store to
// recover) is still collected in proportion.
const startupGCPercent = 1000

// startupGC sets startupGCPercent and returns the function that ends the
// start: it sets defaultGCPercent, collects once and returns the freed
// memory to the system, once. With GOGC=50 from the first instruction (a
// 2 MB minimum goal) the collector ran five times in the first 50 ms, on
// the one core the start has. The start ends when the dashboard is ready,
// when run returns, or after startupGCWindow (its port is taken, say).
func startupGC() (started func()) {
	debug.SetGCPercent(startupGCPercent)
	var once sync.Once
	end := func() {
		once.Do(func() {
			debug.SetGCPercent(defaultGCPercent)
			debug.FreeOSMemory()
		})
	}
	time.AfterFunc(startupGCWindow, end)
	return end
}

// startupGCWindow is how long startupGC waits for the dashboard at most.
const startupGCWindow = 5 * time.Second

// shutdownTimeout bounds the bus drain at the end of run.
const shutdownTimeout = 30 * time.Second

// RunCmd is `symphony run`.
type RunCmd struct {
	Workflow          string `arg:"" optional:"" default:"WORKFLOW.md" help:"Path to the WORKFLOW.md that configures this instance (default ./WORKFLOW.md)." type:"path"`
	NatsListen        string `help:"Also listen for NATS clients (the nats CLI, symphony runs and replay) on HOST:PORT. The token written to <data-dir>/nats-token lets its holder watch the bus and read streams and buckets, nothing more: writes, purges and publishes are refused by the server. Loopback only unless --nats-listen-unsafe." placeholder:"HOST:PORT"`
	NatsListenUnsafe  bool   `help:"Allow --nats-listen on an address that is not loopback. The token is then the only protection; the traffic is not encrypted."`
	NatsAllowControls bool   `help:"With --nats-listen: also write <data-dir>/nats-control-token, whose holder may in addition send operator commands (pause, resume, refresh, cancel, clear) and run symphony prune against this instance."`
	SyncAlways        bool   `help:"fsync every JetStream write. About 12x slower; without it an acknowledged message survives a crash of the process but not of the machine."`
	Once              bool   `help:"Run a single poll: dispatch what is eligible, wait for those runs to finish (no retries), then exit. For scripts, tests and the demo."`
	AgentTools        bool   `default:"true" negatable:"" help:"Offer each claude run its tracker's tools (linear_graphql, files_set_state…) through Symphony's MCP server, run host-side with the tracker's key, on the run's own issue. It opens a loopback port that admits only the runs' own credentials (or uses --nats-listen). --no-agent-tools: no tools, no port."`
	AcceptStoreDamage bool   `help:"Start even though the store lost acknowledged messages since the last start (a damaged file); the loss is logged. Without it such a start fails and says what was lost."`
	// LogsRoot is taken as written (not kong's path type, which makes a
	// blank value the working directory) and trimmed, as the reference
	// trims it; blank is a usage error there and here.
	LogsRoot *string `name:"logs-root" placeholder:"DIR" help:"Also write the logs to DIR/log/symphony.log (rotated at 10 MiB, 5 files kept), as the reference implementation does; stderr keeps them too."`
	// Guardrails is the reference implementation's acknowledgement flag,
	// which it requires before it starts. It is accepted so that its
	// service unit starts this one unchanged, and changes nothing: the
	// agents' sandbox and approval settings come from WORKFLOW.md.
	Guardrails bool `name:"i-understand-that-this-will-be-running-without-the-usual-guardrails" help:"Accepted for compatibility with the reference implementation's command line; changes nothing (the agents' sandbox and approvals come from WORKFLOW.md)."`
	// reference is set (by run, not kong) when no subcommand was named:
	// the reference's command line, whose dashboard starts only when a
	// port is given (--port or server.port).
	reference bool
	Name      string        `help:"With --nats: this process's name in the scheduler lease (default host name and pid)." placeholder:"NAME"`
	LeaseTTL  time.Duration `name:"lease-ttl" default:"10s" help:"With --nats: how long the active scheduler's lease lasts without renewal; a standby takes over within about this long after the active one dies. The active one stops dispatching after half of it without a renewal, and kills its agents."`
	Replicas  int           `help:"With --nats: how many servers hold each stream and bucket. 0 = 3 when the server is clustered, else 1." placeholder:"N"`
	MaxProcs  *int          `name:"max-procs" placeholder:"N" help:"How many cores Symphony's own code may use at once (Go's GOMAXPROCS). Default 1, or GOMAXPROCS from the environment when it is set: Symphony's work is passing agent events on, and handing each one between goroutines on two cores cost twice the CPU of one. 0 = Go's default (the usable cores). Agents are separate processes and are not limited by it."`
	Dashboard
}

// Dashboard holds the dashboard's address flags, shared by run and replay.
// Unset flags fall back to server.* in WORKFLOW.md, then to 127.0.0.1:4000.
type Dashboard struct {
	Bind       *string `help:"Address the dashboard binds to (default server.bind from WORKFLOW.md, else 127.0.0.1). Loopback only unless --bind-unsafe." placeholder:"HOST"`
	Port       *int    `help:"Dashboard port; 0 picks a free one (default server.port from WORKFLOW.md, else 4000)."`
	BindUnsafe bool    `help:"Allow a dashboard bind address that is not loopback. The dashboard has no authentication: anyone who reaches it controls the scheduler."`
	MaxStreams int     `name:"max-streams" placeholder:"N" help:"Most event streams (live page updates and API event streams, all together) the dashboard serves at once; beyond it a stream gets 503 with Retry-After. Pages and the JSON API are never refused for it. 0 = the default, 64."`
}

// address resolves the dashboard address: flags, then the workflow's
// server section, then the defaults.
func (d Dashboard) address(cfg bus.ServerConfig) (string, int) {
	// The workflow loader fills server.* with the defaults; its port 0
	// asks for a free port, as the reference specification allows.
	bind, port := cfg.Bind, cfg.Port
	if bind == "" {
		bind = ui.DefaultBind
	}
	if d.Bind != nil {
		bind = *d.Bind
	}
	if d.Port != nil {
		port = *d.Port
	}
	return bind, port
}

// setMaxProcs applies --max-procs: the flag's value when given (0 is Go's
// own default, ignoring GOMAXPROCS), else GOMAXPROCS from the environment
// as Go already applied it (an invalid value Go ignored is no error here
// either), else 1. Not restored on return: the process ends with the
// command.
func (c *RunCmd) setMaxProcs() error {
	switch {
	case c.MaxProcs == nil:
		if _, set := os.LookupEnv("GOMAXPROCS"); !set {
			runtime.GOMAXPROCS(1)
		}
	case *c.MaxProcs < 0:
		return &exitError{code: exitUsage, err: fmt.Errorf("--max-procs must be 0 (Go's default) or more, not %d", *c.MaxProcs)}
	case *c.MaxProcs == 0:
		runtime.SetDefaultGOMAXPROCS()
	default:
		runtime.GOMAXPROCS(*c.MaxProcs)
	}
	return nil
}

// closeBus closes a bus connection within shutdownTimeout, logging a
// failure as what.
func closeBus(log *slog.Logger, what string, b *bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		log.Error(what, "err", err)
	}
}

// keepRunningOnClosedOutput makes a closed stdout or stderr cost output,
// not the service (`symphony run … | head -2`). Go kills a process that
// writes to a broken pipe on fd 1 or 2 with SIGPIPE unless SIGPIPE is
// asked for with signal.Notify; then the write fails with EPIPE, which
// the log sinks count. Not signal.Ignore: an ignored signal stays ignored
// across exec, so every hook and agent would start with SIGPIPE ignored
// (`yes | head -1` in a hook would see EPIPE instead of dying quietly, and
// programs that rely on SIGPIPE would run on). A caught signal is reset to
// its default by exec. Never stopped: the shutdown's last log lines must
// not kill the process either, and the process ends with the command.
func keepRunningOnClosedOutput() {
	// Nobody reads the channel; Notify never blocks on a full one.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// Run starts the kernel and every component, and runs until a signal.
// It reads as the sequence: the output, the settings, the bus and the
// dashboard's connection to it, the components, then the supervisor
// until a signal (or until --once is done). What was opened is closed in
// reverse order: the dashboard's connection, the kernel, the output.
func (c *RunCmd) Run(g *Globals, e *env) error {
	keepRunningOnClosedOutput()
	e, closeStdout := withStdoutSink(e)
	defer closeStdout()
	logOut, closeLogs, err := c.logOutput(e)
	if err != nil {
		return err
	}
	defer closeLogs()
	log := g.logger(logOut)
	if err := hideFromSameUser(); err != nil {
		log.Warn("the tracker key in this process's environment stays readable by the agents (same user)", "err", err)
	}
	if err := c.setMaxProcs(); err != nil {
		return err
	}
	started := func() {}
	if _, set := os.LookupEnv("GOGC"); !set {
		started = startupGC()
		defer started()
	}
	set, err := c.settings(g)
	if err != nil {
		return err
	}
	b, err := c.openBus(e.ctx, g, set, log, e.stderr)
	if err != nil {
		return err
	}
	defer closeBus(log, "bus shutdown", b)
	// A second instance on the same workspace root would remove and read
	// this one's workspaces; it stops here, before any component starts
	// (after the data directory's lock, whose clash is the likelier one).
	// On a cluster only the process holding the scheduler lease works in
	// the root, so it takes the root with the lease (a standby on the same
	// host waits instead of failing) and lets go of it with the lease.
	roots := &workspace.RootLocks{}
	if !b.Remote() {
		if err := roots.Hold(set.wf.Config.Workspace.Root); err != nil {
			return &exitError{code: exitFailure, err: err}
		}
	}
	// The dashboard reads over a connection of its own: its followers go
	// as slowly as the browsers reading them, and the server closes a
	// connection that falls too far behind. Closed before the kernel.
	dashBus, err := b.Connection("symphony dashboard")
	if err != nil {
		return err
	}
	defer closeBus(log, "dashboard bus shutdown", dashBus)
	printStart(e.stdout, set.wf, b)

	var dash *ui.Options
	if set.serve {
		opts := c.dashboardOptions(e, set, b, dashBus, log, started)
		dash = &opts
	} else {
		log.Info("dashboard off: no --port and no server.port (the reference's command line serves HTTP only when a port is given)")
	}
	if b.Remote() {
		return c.runClustered(e.ctx, log, b, func(fence fenceFunc) ([]components.Component, *scheduler.Component, func(), error) {
			held := &workspace.RootLocks{}
			letGo := func() {
				if err := held.Release(); err != nil {
					log.Warn("let go of the workspace root", "err", err)
				}
			}
			if err := held.Hold(set.wf.Config.Workspace.Root); err != nil {
				return nil, nil, letGo, err
			}
			comps, sch, err := c.newComponents(set.wf.Path, b, log, held, dash, fence)
			return comps, sch, letGo, err
		})
	}
	comps, sch, err := c.newComponents(set.wf.Path, b, log, roots, dash, nil)
	if err != nil {
		return err
	}
	ctx, stop := c.untilOnceDone(e.ctx, log, sch)
	defer stop()
	return supervise(ctx, log, b, comps)
}

// withStdoutSink returns e with its stdout behind a sink of its own, and
// the function that flushes and closes it. The printed lines (dashboard
// URL and so on) go through a sink like the logs: a stdout nobody reads
// must not stall the dashboard. The escaping goes on top of the sink, as
// for stderr: the sink's goroutine is then the only one that can block on
// the output, and nothing waits for it past its Close. The sink joins
// e's log sinks, whose lost writes /metrics reports.
func withStdoutSink(e *env) (*env, func()) {
	sink := logsink.New(e.rawStdout, 0)
	stdout := termsafe.NewWriter(sink)
	sinks := append([]*logsink.Sink{sink}, e.logSinks...)
	e = &env{ctx: e.ctx, stdout: stdout, stderr: e.stderr, rawStdout: e.rawStdout, logSinks: sinks}
	return e, func() {
		_ = stdout.Flush()
		_ = sink.Close(time.Second)
	}
}

// logOutput is where run's logs go: stderr, and with --logs-root also
// <logs-root>/log/symphony.log, where the reference implementation writes
// its log (rotated as it rotates it), so an operator's log shipping keeps
// its path. The file goes through a sink of its own, escaped as stderr is,
// so a slow or full disk costs log lines, not the service; the sink joins
// e's log sinks for /metrics. close flushes and closes it.
func (c *RunCmd) logOutput(e *env) (w io.Writer, closeLogs func(), err error) {
	if c.LogsRoot == nil {
		return e.stderr, func() {}, nil
	}
	root := strings.TrimSpace(*c.LogsRoot)
	if root == "" {
		return nil, nil, &exitError{code: exitUsage, err: errors.New("--logs-root: the directory must not be blank")}
	}
	// The reference's place for its log, under the logs root.
	path := filepath.Join(kong.ExpandPath(root), filepath.FromSlash("log/symphony.log"))
	f, err := logsink.OpenRotating(path, 0, 0)
	if err != nil {
		return nil, nil, &exitError{code: exitFailure, err: fmt.Errorf("--logs-root: %w", err)}
	}
	sink := logsink.New(f, 0)
	file := termsafe.NewWriter(sink)
	e.logSinks = append(e.logSinks, sink)
	return io.MultiWriter(e.stderr, file), func() {
		_ = file.Flush()
		_ = sink.Close(time.Second)
		_ = f.Close()
	}, nil
}

// logWriteErrors sums the failed and dropped writes of e's log sinks.
func (e *env) logWriteErrors() (failed, dropped uint64) {
	for _, s := range e.logSinks {
		failed += s.Failed()
		dropped += s.Dropped()
	}
	return failed, dropped
}

// runSettings is what run knows before it opens anything: the workflow,
// where the data lives and the dashboard's address.
type runSettings struct {
	wf      *workflowfile.Result
	dataDir string
	bind    string
	port    int
	// serve is whether the dashboard (the HTTP server) starts: always for
	// `symphony run`; on the reference's command line only when a port is
	// given, as the reference's server is "default: disabled".
	serve bool
}

// settings loads the workflow and checks the flags against it, in this
// order: an invalid workflow is reported before an invalid flag.
func (c *RunCmd) settings(g *Globals) (runSettings, error) {
	// Startup refuses an invalid workflow; later edits are the workflow
	// component's business (an invalid one keeps the last good config).
	wf, err := workflowfile.Load(c.Workflow, workflowfile.OSEnv())
	if err != nil {
		return runSettings{}, err
	}
	dataDir, err := g.dataDir(c.Workflow)
	if err != nil {
		return runSettings{}, err
	}
	bind, port := c.address(wf.Config.Server)
	serve := !c.reference || c.Port != nil || !slices.Contains(wf.Defaults, "server.port")
	if err := ui.CheckBind(bind, c.BindUnsafe); serve && err != nil {
		return runSettings{}, &exitError{code: exitUsage, err: err}
	}
	if g.remote() {
		if err := c.embeddedOnly(); err != nil {
			return runSettings{}, &exitError{code: exitUsage, err: err}
		}
	}
	if c.NatsAllowControls && c.NatsListen == "" {
		return runSettings{}, &exitError{code: exitUsage, err: errors.New("--nats-allow-controls needs --nats-listen")}
	}
	return runSettings{wf: wf, dataDir: dataDir, bind: bind, port: port, serve: serve}, nil
}

// openBus starts the kernel: the embedded NATS server and its store, or
// with --nats a connection to the deployment.
func (c *RunCmd) openBus(ctx context.Context, g *Globals, set runSettings, log *slog.Logger, stderr io.Writer) (*bus.Bus, error) {
	if g.remote() {
		return c.dialRun(ctx, g, set, stderr)
	}
	return bus.Open(ctx, bus.Options{
		DataDir:           set.dataDir,
		Listen:            c.NatsListen,
		ListenUnsafe:      c.NatsListenUnsafe,
		AllowControls:     c.NatsAllowControls,
		SyncAlways:        c.SyncAlways,
		AcceptStoreDamage: c.AcceptStoreDamage,
		ToolListener:      c.AgentTools,
		StreamMaxAge:      bus.StreamMaxAgeFor(time.Duration(set.wf.Config.RetentionMS) * time.Millisecond),
		Logger:            log,
		ClientName:        "symphony run",
	})
}

// printStart prints what the operator needs to find this instance: the
// workflow, the data and, when NATS listens, how to connect.
func printStart(w io.Writer, wf *workflowfile.Result, b *bus.Bus) {
	fmt.Fprintf(w, "symphony: workflow %s (sha256 %s)\n", wf.Path, wf.Checksum[:12])
	fmt.Fprintf(w, "symphony: data in %s\n", b.DataDir())
	if b.ListenURL() != "" {
		fmt.Fprintf(w, "symphony: NATS listening on %s (read-only token in %s)\n", b.ListenURL(), b.TokenFile())
		fmt.Fprintf(w, "symphony: watch the bus with: %s\n", b.ConnectHint())
	}
	if b.ControlTokenFile() != "" {
		fmt.Fprintf(w, "symphony: operator commands over NATS (control token in %s), e.g.: %s\n", b.ControlTokenFile(), b.ControlHint())
	}
}

// dashboardOptions configures the dashboard on its own connection,
// dashBus. started ends the start (startupGC) once it is ready.
func (c *RunCmd) dashboardOptions(e *env, set runSettings, b, dashBus *bus.Bus, log *slog.Logger, started func()) ui.Options {
	return ui.Options{Bus: dashBus, Log: log, Bind: set.bind, Port: set.port, BindUnsafe: c.BindUnsafe, MaxStreams: c.MaxStreams,
		URLFile:        filepath.Join(b.DataDir(), "dashboard-url"),
		OnListen:       func(url string) { fmt.Fprintf(e.stdout, "symphony: dashboard on %s\n", url) },
		OnReady:        func() { go started() },
		LogWriteErrors: e.logWriteErrors}
}

// newComponents builds every component (the workflow component reads
// wfPath, the dashboard takes dash (no dashboard when it is nil), the
// scheduler checks fence before every dispatch when not nil) and returns
// them in start order: config first, the scheduler last. The supervisor
// stops them in reverse, so the scheduler stops deciding before the parts
// it drives go away.
func (c *RunCmd) newComponents(wfPath string, b *bus.Bus, log *slog.Logger, roots *workspace.RootLocks, dash *ui.Options, fence fenceFunc) ([]components.Component, *scheduler.Component, error) {
	wfc, err := workflow.New(workflow.Options{Path: wfPath, Bus: b, Log: log, Env: workflowfile.OSEnv()})
	if err != nil {
		return nil, nil, err
	}
	trc, err := tracker.New(tracker.Options{Bus: b, Log: log, Env: workflowfile.OSEnv()})
	if err != nil {
		return nil, nil, err
	}
	wsc, err := workspace.New(workspace.Options{Bus: b, Log: log, Roots: roots})
	if err != nil {
		return nil, nil, err
	}
	arc, err := agentrunner.New(agentrunner.Options{Bus: b, Log: log, MCPCommand: c.mcpCommand(log, b.Remote())})
	if err != nil {
		return nil, nil, err
	}
	prn, err := pruner.New(pruner.Options{Bus: b, Log: log})
	if err != nil {
		return nil, nil, err
	}
	ntf, err := notifier.New(notifier.Options{Bus: b, Log: log})
	if err != nil {
		return nil, nil, err
	}
	sch, err := scheduler.New(scheduler.Options{Bus: b, Log: log, Once: c.Once, Fence: fence})
	if err != nil {
		return nil, nil, err
	}
	comps := []components.Component{wfc, trc, wsc, arc, prn, ntf}
	if dash != nil {
		dsh, err := ui.New(*dash)
		if err != nil {
			return nil, nil, &exitError{code: exitUsage, err: err}
		}
		comps = append(comps, dsh)
	}
	return append(comps, sch), sch, nil
}

// untilOnceDone returns ctx, and with --once a context that also ends when
// the scheduler's tick and its runs are done; stop releases it.
func (c *RunCmd) untilOnceDone(ctx context.Context, log *slog.Logger, sch *scheduler.Component) (context.Context, context.CancelFunc) {
	if !c.Once {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sch.Done():
			log.Info("once: the tick and its runs are done; stopping")
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// supervise runs comps under a supervisor that publishes their state
// changes on the bus, until ctx ends.
func supervise(ctx context.Context, log *slog.Logger, b *bus.Bus, comps []components.Component) error {
	sup := components.NewSupervisor(log, func(ev bus.ComponentEvent) {
		if err := bus.Publish(b, bus.ComponentEvents, ev, ev.Component); err != nil {
			log.Warn("publish component event", "component", ev.Component, "err", err)
		}
	})
	log.Info("symphony running", "data_dir", b.DataDir(), "components", len(comps))
	if err := sup.Run(ctx, comps...); err != nil {
		return err
	}
	log.Info("symphony stopped")
	return nil
}

// mcpCommand starts this binary's MCP server for a run, or is nil (no
// tracker tools) with --no-agent-tools, with --nats (the tool credentials
// are the embedded server's), or when the binary's path is not
// known.
func (c *RunCmd) mcpCommand(log *slog.Logger, remote bool) []string {
	if !c.AgentTools {
		return nil
	}
	if remote {
		log.Warn("runs get no tracker tools with --nats: the tool credentials need the embedded server's listener")
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		log.Warn("runs get no tracker tools: the path of this binary is not known", "err", err)
		return nil
	}
	return []string{exe, "mcp"}
}
