// Package fakeagent is a stand-in for the claude CLI, FOR TESTS AND
// BENCHMARKS ONLY: it never talks to a model and proves nothing about the
// real CLI (the end-to-end tests drive the real one against a mock model
// server). It exists because the failures Symphony must survive — an agent
// that hangs, crashes, exits without a result, prints garbage, binary, one
// enormous line or a gigabyte of stderr, or leaves a daemon behind — cannot
// be provoked on demand from the real CLI, and because benchmarks need a
// stream of a known size and rate.
//
// It behaves like `claude -p --output-format stream-json --verbose`: it
// takes the prompt from its arguments or stdin, honours --resume, prints a
// system/init line, then N assistant text / tool_use / user tool_result
// events of a given payload size at a given rate, then a result line with
// usage and total_cost_usd — unless its mode says otherwise. The line shapes
// follow the transcripts of the real CLI (claude-code 2.1.197).
//
// With app-server as its first argument it is `codex app-server` instead:
// JSON-RPC on stdio, its scenario from FAKEAGENT_CODEX (see codex.go).
//
// Options come from environment variables, so the binary can be set as
// claude.command in a WORKFLOW.md, and from --fake-* flags, which win:
//
//	FAKEAGENT_MODE           ok|hang|crash|exit0_no_result|garbage|binary|huge_line|
//	                         stderr_flood|fork_daemon|error_result|ask_permission (--fake-mode)
//	FAKEAGENT_EVENTS         events between init and result, default 9 (--fake-events)
//	FAKEAGENT_INTERVAL       pause before each event, a Go duration, default 0 (--fake-interval)
//	FAKEAGENT_SIZE           payload bytes of each event, default 64 (--fake-size)
//	FAKEAGENT_SEED           seed of the payload and garbage generator, default 1
//	FAKEAGENT_STAMP          1: every payload starts with "t=<unix ns>;" (latency benchmarks)
//	FAKEAGENT_START_DIR      a directory: the fake writes the wall clock at which it began
//	                         (unix ns and a newline) to DIR/$SYMPHONY_ISSUE_IDENTIFIER
//	                         (DIR/pid-<pid> without one), so a benchmark can time an
//	                         agent's start without a wrapper script in between
//	FAKEAGENT_GATE           a named pipe: after the init line, read one byte from it
//	                         before the events, so that many agents started one after
//	                         another stream at once
//	FAKEAGENT_SESSION        session id of a fresh (not resumed) run, default random
//	FAKEAGENT_COST_USD       total_cost_usd of the result, default 0.01
//	FAKEAGENT_STDERR_BYTES   stderr written before the init line; default 1 GiB in
//	                         stderr_flood mode, 0 otherwise (suffixes K, M, G: powers of 1024)
//	FAKEAGENT_LINE_BYTES     size of the one huge line in huge_line mode, default 50M
//	FAKEAGENT_EXIT_CODE      exit status of crash mode, default 2
//	FAKEAGENT_CRASH_SIGNAL   crash mode dies of this signal instead (KILL, SEGV, ABRT, TERM)
//	FAKEAGENT_IGNORE_SIGTERM 1: ignore SIGTERM (hang mode then needs SIGKILL)
//	FAKEAGENT_PIDFILE        fork_daemon: where the daemon's pid is written
//	FAKEAGENT_DAEMON_SETSID  fork_daemon: 1 (default) puts the daemon in its own session,
//	                         out of the agent's process group, as a real daemon does
//	FAKEAGENT_DAEMON_STDIO   fork_daemon: null (default) or inherit (the daemon keeps
//	                         the agent's stdout and stderr open)
//	FAKEAGENT_DAEMON_ENV     fork_daemon: keep (default) or scrub (the daemon runs with
//	                         an empty environment, losing Symphony's run markers)
package fakeagent

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mode selects the behaviour of one invocation.
type Mode string

// The modes. Each is documented where it is played, in play.
const (
	ModeOK            Mode = "ok"
	ModeHang          Mode = "hang"
	ModeCrash         Mode = "crash"
	ModeExit0NoResult Mode = "exit0_no_result"
	ModeGarbage       Mode = "garbage"
	ModeBinary        Mode = "binary"
	ModeHugeLine      Mode = "huge_line"
	ModeStderrFlood   Mode = "stderr_flood"
	ModeForkDaemon    Mode = "fork_daemon"
	ModeErrorResult   Mode = "error_result"
	ModeAskPermission Mode = "ask_permission"
)

// Modes lists every mode, in a stable order (tests range over it).
func Modes() []Mode {
	return []Mode{ModeOK, ModeHang, ModeCrash, ModeExit0NoResult, ModeGarbage, ModeBinary, ModeHugeLine,
		ModeStderrFlood, ModeForkDaemon, ModeErrorResult, ModeAskPermission}
}

// Options is one invocation's configuration: the environment, then flags.
type Options struct {
	Mode     Mode
	Events   int
	Interval time.Duration
	Size     int
	// Stamp starts every payload with "t=<unix nanoseconds>;", the moment
	// the line is written, so a benchmark can measure how long the line
	// takes to reach a reader downstream.
	Stamp bool
	// Gate, when set, is a named pipe: after its init line the fake reads
	// one byte from it before its events, so a benchmark can start many
	// agents and then let them all stream at once (it holds the pipe open
	// and writes one byte per agent).
	Gate        string
	Seed        uint64
	Session     string
	CostUSD     float64
	StderrBytes int64
	LineBytes   int64
	ExitCode    int
	// CrashSignal, when set, ends crash mode by this signal instead of an
	// exit status.
	CrashSignal   syscall.Signal
	IgnoreSIGTERM bool
	PIDFile       string
	DaemonSetsid  bool
	DaemonInherit bool
	DaemonScrub   bool

	// From the claude command line.
	Prompt         string
	PromptFromArgs bool
	Resume         string
	Model          string
	PermissionMode string
	OutputFormat   string
	InputFormat    string
	Verbose        bool
	Print          bool
}

// Env names.
const (
	EnvMode          = "FAKEAGENT_MODE"
	EnvEvents        = "FAKEAGENT_EVENTS"
	EnvInterval      = "FAKEAGENT_INTERVAL"
	EnvSize          = "FAKEAGENT_SIZE"
	EnvSeed          = "FAKEAGENT_SEED"
	EnvSession       = "FAKEAGENT_SESSION"
	EnvCostUSD       = "FAKEAGENT_COST_USD"
	EnvStderrBytes   = "FAKEAGENT_STDERR_BYTES"
	EnvLineBytes     = "FAKEAGENT_LINE_BYTES"
	EnvExitCode      = "FAKEAGENT_EXIT_CODE"
	EnvCrashSignal   = "FAKEAGENT_CRASH_SIGNAL"
	EnvIgnoreSIGTERM = "FAKEAGENT_IGNORE_SIGTERM"
	EnvPIDFile       = "FAKEAGENT_PIDFILE"
	EnvDaemonSetsid  = "FAKEAGENT_DAEMON_SETSID"
	EnvDaemonStdio   = "FAKEAGENT_DAEMON_STDIO"
	EnvDaemonEnv     = "FAKEAGENT_DAEMON_ENV"
	EnvStamp         = "FAKEAGENT_STAMP"
	EnvStartDir      = "FAKEAGENT_START_DIR"
	EnvGate          = "FAKEAGENT_GATE"
)

// daemonFlag makes the binary play the daemon that fork_daemon leaves
// behind; it is internal to the fake.
const daemonFlag = "--fakeagent-daemon"

// takesValue reports the claude flags that take a value (so the value is
// not taken for the prompt). Anything else starting with "-" is a switch.
func takesValue(flag string) bool {
	switch flag {
	case "--output-format", "--input-format", "--model", "--permission-mode",
		"--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools",
		"--resume", "-r", "--session-id", "--max-turns", "--append-system-prompt",
		"--system-prompt", "--mcp-config", "--max-budget-usd", "--fallback-model",
		"--settings", "--add-dir":
		return true
	}
	return false
}

// Parse builds the options from the environment (getenv) and the command
// line (args without the program name). Flags override the environment.
func Parse(args []string, getenv func(string) string) (Options, error) {
	o := Options{Mode: ModeOK, Events: 9, Size: 64, Seed: 1, CostUSD: 0.01, LineBytes: 50 << 20, ExitCode: 2,
		DaemonSetsid: true, StderrBytes: -1}
	for _, e := range envOptions() {
		if v := getenv(e.name); v != "" {
			if err := o.setEnv(e.name, v); err != nil {
				return o, err
			}
		}
	}
	if err := o.parseArgs(args); err != nil {
		return o, err
	}
	return o, o.settle()
}

// envOption is one FAKEAGENT_* variable and how its value sets the options.
type envOption struct {
	name string
	set  func(o *Options, v string) error
}

// envOptions lists the variables in the order Parse reads them, so the
// first bad one is always the one reported.
func envOptions() []envOption {
	return []envOption{
		{EnvMode, func(o *Options, v string) error { o.Mode = Mode(v); return nil }},
		{EnvEvents, func(o *Options, v string) (err error) { o.Events, err = nonNegative(v); return err }},
		{EnvInterval, func(o *Options, v string) (err error) { o.Interval, err = time.ParseDuration(v); return err }},
		{EnvSize, func(o *Options, v string) (err error) { o.Size, err = nonNegative(v); return err }},
		{EnvSeed, func(o *Options, v string) (err error) { o.Seed, err = strconv.ParseUint(v, 10, 64); return err }},
		{EnvSession, func(o *Options, v string) error { o.Session = v; return nil }},
		{EnvCostUSD, func(o *Options, v string) (err error) { o.CostUSD, err = strconv.ParseFloat(v, 64); return err }},
		{EnvStderrBytes, func(o *Options, v string) (err error) { o.StderrBytes, err = ParseBytes(v); return err }},
		{EnvLineBytes, func(o *Options, v string) (err error) { o.LineBytes, err = ParseBytes(v); return err }},
		{EnvExitCode, func(o *Options, v string) (err error) { o.ExitCode, err = strconv.Atoi(v); return err }},
		{EnvCrashSignal, func(o *Options, v string) (err error) { o.CrashSignal, err = parseSignal(v); return err }},
		{EnvIgnoreSIGTERM, func(o *Options, v string) (err error) { o.IgnoreSIGTERM, err = strconv.ParseBool(v); return err }},
		{EnvPIDFile, func(o *Options, v string) error { o.PIDFile = v; return nil }},
		{EnvDaemonSetsid, func(o *Options, v string) (err error) { o.DaemonSetsid, err = strconv.ParseBool(v); return err }},
		{EnvDaemonStdio, func(o *Options, v string) (err error) {
			o.DaemonInherit, err = oneOf(v, "null", "inherit", o.DaemonInherit)
			return err
		}},
		{EnvDaemonEnv, func(o *Options, v string) (err error) {
			o.DaemonScrub, err = oneOf(v, "keep", "scrub", o.DaemonScrub)
			return err
		}},
		{EnvStamp, func(o *Options, v string) (err error) { o.Stamp, err = strconv.ParseBool(v); return err }},
		{EnvGate, func(o *Options, v string) error { o.Gate = v; return nil }},
	}
}

// setEnv sets the option of the variable name (also reached through its
// --fake-* flag); an error names the variable and the value.
func (o *Options) setEnv(name, v string) error {
	for _, e := range envOptions() {
		if e.name != name {
			continue
		}
		if err := e.set(o, v); err != nil {
			return fmt.Errorf("%s=%q: %w", name, v, err)
		}
		return nil
	}
	return nil
}

// nonNegative reads a count that may be zero but not below.
func nonNegative(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err == nil && n < 0 {
		err = fmt.Errorf("negative")
	}
	return n, err
}

// oneOf reads a two-way choice: off (false) or on (true); anything else
// is an error and leaves the choice as it was (was).
func oneOf(v, off, on string, was bool) (bool, error) {
	switch v {
	case off:
		return false, nil
	case on:
		return true, nil
	}
	return was, fmt.Errorf("want %s or %s", off, on)
}

// fakeFlags maps the --fake-* flags to the variables they override.
func fakeFlags() map[string]string {
	return map[string]string{"--fake-mode": EnvMode, "--fake-events": EnvEvents, "--fake-interval": EnvInterval,
		"--fake-size": EnvSize, "--fake-seed": EnvSeed, "--fake-stderr-bytes": EnvStderrBytes, "--fake-line-bytes": EnvLineBytes}
}

// parseArgs reads the command line: --fake-* flags, the claude flags the
// fake models, switches it accepts and ignores, and the prompt (the
// positional arguments, joined by spaces).
func (o *Options) parseArgs(args []string) error {
	fake := fakeFlags()
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		next := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case fake[name] != "":
			v, err := next()
			if err != nil {
				return err
			}
			if err := o.setEnv(fake[name], v); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case name == "-p" || name == "--print":
			o.Print = true
		case name == "--verbose":
			o.Verbose = true
		case takesValue(name):
			v, err := next()
			if err != nil {
				return err
			}
			o.setClaudeFlag(name, v)
		case strings.HasPrefix(a, "-") && a != "-":
			// A switch this fake does not model: accepted, as the real
			// CLI accepts it.
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) > 0 {
		o.Prompt, o.PromptFromArgs = strings.Join(positional, " "), true
	}
	return nil
}

// setClaudeFlag records the value of a claude flag the fake models; the
// other flags that take a value are read and dropped.
func (o *Options) setClaudeFlag(name, v string) {
	switch name {
	case "--resume", "-r":
		o.Resume = v
	case "--model":
		o.Model = v
	case "--permission-mode":
		o.PermissionMode = v
	case "--output-format":
		o.OutputFormat = v
	case "--input-format":
		o.InputFormat = v
	case "--session-id":
		if o.Session == "" {
			o.Session = v
		}
	}
}

// settle checks the mode and fills the defaults that depend on the rest:
// stderr_flood floods 1 GiB unless told otherwise, and an unset model or
// permission mode gets the fake's default.
func (o *Options) settle() error {
	if !validMode(o.Mode) {
		return fmt.Errorf("%s=%q: unknown mode (want one of %v)", EnvMode, o.Mode, Modes())
	}
	if o.StderrBytes < 0 {
		o.StderrBytes = 0
		if o.Mode == ModeStderrFlood {
			o.StderrBytes = 1 << 30
		}
	}
	if o.Model == "" {
		o.Model = "fake-model"
	}
	if o.PermissionMode == "" {
		o.PermissionMode = "default"
	}
	return nil
}

func validMode(m Mode) bool {
	for _, k := range Modes() {
		if k == m {
			return true
		}
	}
	return false
}

// ParseBytes reads a byte count: digits with an optional K, M or G suffix
// (powers of 1024; KiB, MiB, GiB and a trailing B are accepted too).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad byte count %q (digits with an optional K, M or G)", s)
	}
	return n * mult, nil
}

func parseSignal(s string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "KILL":
		return syscall.SIGKILL, nil
	case "SEGV":
		return syscall.SIGSEGV, nil
	case "ABRT":
		return syscall.SIGABRT, nil
	case "TERM":
		return syscall.SIGTERM, nil
	}
	return 0, fmt.Errorf("unknown signal (want KILL, SEGV, ABRT or TERM)")
}
