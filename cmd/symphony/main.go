// Command symphony runs coding agents against an issue tracker: one process,
// an embedded NATS kernel, and the components that talk over it.
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
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/symphony-oss/symphony/internal/logsink"
	"github.com/symphony-oss/symphony/internal/termsafe"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// CLI is the command line.
type CLI struct {
	Globals

	// Run is also the command when none is named, so the reference
	// implementation's command line (`symphony [--logs-root <path>]
	// [--port <port>] [path-to-WORKFLOW.md]`) starts the service unchanged:
	// an operator moving from it keeps the service unit that starts it.
	Run      RunCmd      `cmd:"" default:"withargs" help:"Run Symphony: poll the tracker, dispatch agents, serve the dashboard. The default command: 'symphony [flags] [WORKFLOW.md]' is 'symphony run [flags] [WORKFLOW.md]'."`
	Validate ValidateCmd `cmd:"" help:"Check a WORKFLOW.md and print the effective config and a sample prompt."`
	Runs     RunsCmd     `cmd:"" help:"List recorded runs, newest first."`
	Replay   ReplayCmd   `cmd:"" help:"Replay a recorded run through the dashboard or to the terminal."`
	Prune    PruneCmd    `cmd:"" help:"Delete finished runs older than a cutoff."`
	Version  VersionCmd  `cmd:"" help:"Print the version."`
	Mcp      McpCmd      `cmd:"" name:"mcp" help:"Serve a run's tracker tools over stdio MCP. Started by the agent from the MCP config Symphony writes for each run (its tool credential is in the environment), not by hand."`
}

// Globals are flags every command takes.
type Globals struct {
	DataDir   string `help:"Directory for the JetStream store, the lock and the NATS token. Default: .symphony/ beside the WORKFLOW.md." placeholder:"DIR" type:"path"`
	LogFormat string `help:"Log format: text (key=value) or json." enum:"text,json" default:"text"`
	LogLevel  string `help:"Minimum log level: debug, info, warn or error." enum:"debug,info,warn,error" default:"info"`
	NatsFlags
}

// env is what a command needs from the process.
type env struct {
	ctx context.Context
	// stdout and stderr escape control characters (termsafe): every
	// command's output may quote outside text (issue titles, agent
	// output, errors that name them), and none of it may drive the
	// operator's terminal.
	stdout io.Writer
	stderr io.Writer
	// rawStdout is stdout without the escaping, for output that colours
	// itself and escapes each outside field (replay --print on a terminal).
	rawStdout io.Writer
	// logSinks are the process's non-blocking log outputs (stderr's, from
	// main), whose lost writes /metrics reports.
	logSinks []*logsink.Sink
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errNotImplemented is what a command whose component is not built yet
// returns: it says so plainly instead of printing made-up output.
func errNotImplemented(cmd string) error {
	return fmt.Errorf("symphony %s: not implemented yet", cmd)
}

// kongExit is thrown through kong's Exit hook so that --help and parse
// errors return from Main instead of calling os.Exit.
type kongExit struct{ code int }

// Main runs the command line and returns the process exit code. Its
// output goes through termsafe writers (stdout and stderr unless they
// already are); sinks are stderr's log sinks, for the metrics.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, sinks ...*logsink.Sink) (code int) {
	rawStdout := stdout
	stdout, stderr = safeWriter(stdout), safeWriter(stderr)
	defer flushWriter(stdout)
	defer flushWriter(stderr)
	var cli CLI
	defer func() {
		if p := recover(); p != nil {
			ke, ok := p.(kongExit)
			if !ok {
				panic(p)
			}
			code = ke.code
		}
	}()
	parser, err := kong.New(&cli,
		kong.Name("symphony"),
		kong.Description("Symphony runs a coding agent for every active issue in your tracker, each in its own workspace, and records every run."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(kongExit{c}) }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintln(stderr, "symphony:", err)
		return exitFailure
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, "symphony:", err)
		return exitUsage
	}
	cli.Run.reference = !namesCommand(kctx, args)
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, rawStdout: rawStdout, logSinks: sinks}
	if err := kctx.Run(&cli.Globals, e); err != nil {
		fmt.Fprintln(stderr, "symphony:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return exitFailure
	}
	return exitOK
}

// namesCommand reports whether args name the command kong chose, rather
// than kong defaulting to run (the reference's command line): the first
// argument that is neither a flag nor a flag's value is the command's name.
func namesCommand(kctx *kong.Context, args []string) bool {
	takesValue := map[string]bool{}
	for _, f := range kctx.Flags() {
		if !f.IsBool() && !f.IsCounter() {
			takesValue["--"+f.Name] = true
			if f.Short != 0 {
				takesValue["-"+string(f.Short)] = true
			}
		}
	}
	name := kctx.Selected().Name
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && takesValue[a] {
				i++
			}
		default:
			return a == name
		}
	}
	return false
}

// safeWriter wraps w in a termsafe.Writer unless it is one.
func safeWriter(w io.Writer) io.Writer {
	if _, ok := w.(*termsafe.Writer); ok {
		return w
	}
	return termsafe.NewWriter(w)
}

func flushWriter(w io.Writer) {
	if f, ok := w.(*termsafe.Writer); ok {
		_ = f.Flush()
	}
}

// stderrFlushTimeout is how long the process waits at exit for its
// stderr (the logs) to be written: a terminal or a reading pipe takes it
// at once, a pipe nobody reads never does.
const stderrFlushTimeout = 2 * time.Second

func main() {
	// Stderr carries the logs: it goes through a sink that never blocks
	// and never fails (a closed or unread log pipe must not stop `run`),
	// and through the escaping every output gets.
	sink := logsink.New(os.Stderr, 0)
	stderr := termsafe.NewWriter(sink)
	exit := func(code int) {
		_ = stderr.Flush()
		_ = sink.Close(stderrFlushTimeout)
		os.Exit(code)
	}
	ctx, stop := signalContext(stderr, exit)
	code := Main(ctx, os.Args[1:], os.Stdout, stderr, sink)
	stop()
	exit(code)
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM,
// which starts a clean shutdown. A second signal exits at once with 130
// (through exit): the operator has asked twice.
func signalContext(stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "symphony: shutting down (signal again to force)")
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "symphony: forced exit")
			exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// logger builds the process logger from the global flags.
func (g *Globals) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(g.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// dataDir resolves the data directory: the flag, else .symphony beside the
// workflow file.
func (g *Globals) dataDir(workflowPath string) (string, error) {
	if g.DataDir != "" {
		return filepath.Abs(g.DataDir)
	}
	abs, err := filepath.Abs(workflowPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(abs), ".symphony"), nil
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(e *env) error {
	fmt.Fprintf(e.stdout, "symphony %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
