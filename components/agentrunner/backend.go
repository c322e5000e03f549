package agentrunner

import (
	"context"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// The backend seam. A run (run.go) knows workspaces, hooks, prompts, turns
// and the record; a backend knows one agent's protocol. The run opens a
// session once its workspace is ready, runs its turns on it — the first
// with the rendered prompt, the next ones with ContinuationPrompt while the
// issue stays active — and closes it before after_run. Every event a turn
// reports goes through turnInput.emit, in the agent's order; the turn's
// outcome says how it ended.
//
// The claude driver (claude_*.go) starts one `claude -p --output-format
// stream-json` process per turn and continues the conversation with
// --resume <session id>. The codex driver (codex_*.go: `codex app-server`,
// JSON-RPC over stdio) starts one long-lived process on the first turn
// (initialize, thread/start in the workspace), sends turn/start in each
// turn and maps its item/* and turn/completed notifications to the same
// events and outcome, and stops the process in close; its thread id is the
// session id. Both run their processes through the proc package.

// backend is one kind of coding agent (agent.kind).
type backend interface {
	// open starts a session for one run in its workspace. An error ends
	// the run failed.
	open(ctx context.Context, s sessionSpec) (agentSession, error)
}

// sessionSpec is what a session needs of its run.
type sessionSpec struct {
	cfg   bus.Config
	dir   string // the issue's workspace: the agent's working directory
	runID string // the value of markerEnv in env
	// tools are the run's tracker tools (nil without): claude starts the
	// run's MCP server to call them, codex gets them as dynamic tools of
	// its thread and calls them through callTool.
	tools *runTools
	// env is the agent's environment: the parent's without the tracker
	// secrets, with the run's markers. It is read at each start.
	env func() []string
	// callTool runs one of tools host-side for the agent and records it
	// with the run (codex's dynamic tool calls; claude's reach the run
	// through its MCP server instead).
	callTool func(context.Context, bus.RunTool) bus.ToolResult
	// title names the issue for the agent ("<identifier>: <title>").
	title string
	// maxBudgetUSD is what remains of the run's USD cap for the next turn
	// ("" without a cap): claude gets it as --max-budget-usd.
	maxBudgetUSD func() string
	// issue is the issue's lifetime caps and its earlier spend (nil
	// without per-issue caps): codex's mid-turn check counts them.
	issue *bus.IssueBudgetLeft
	// day is the fleet's daily caps and today's spend at the dispatch
	// (nil without daily caps): codex's mid-turn check counts them too.
	day *bus.DayBudgetLeft
	// overStreamed checks the run's spend with a claude turn's streamed
	// tokens added against every cap (nil: no check).
	overStreamed func(bus.Usage) (capHit, bool)
}

// agentSession is one run's conversation with its agent.
type agentSession interface {
	// command is the command line the next turn runs (recorded with the
	// run's events).
	command() []string
	// turn runs one turn and returns how it ended. It returns once nothing
	// the turn started is running beyond what the session keeps between
	// turns.
	turn(ctx context.Context, in turnInput) turnOutcome
	// close ends the session; whatever of it still runs is stopped.
	close()
}

// turnInput is one turn's prompt and the run's hooks into it.
type turnInput struct {
	prompt string
	// cancel stops the turn with the status and reason it carries.
	cancel <-chan canceled
	// since, when set, delivers a process window opened earlier (see
	// procscan.Window): the first turn's is opened while the workspace
	// is prepared.
	since <-chan procscan.Window
	// started is called once the agent's start was tried, with its pid (0
	// when it failed).
	started func(pid int)
	// emit records one agent event; an error stops the turn, failed.
	emit func(bus.TurnEvent) error
	// commit is called after the events of what the agent wrote in one go
	// were emitted (they are stored as one message); an error stops the
	// turn as a failed emit does.
	commit func() error
}

// turnOutcome is how one turn ended.
type turnOutcome struct {
	status    bus.RunStatus // succeeded, failed, timed_out, canceled, stalled, interrupted, blocked
	err       string
	sessionID string
	result    *bus.TurnResult
	// resultText is the result line's text (the CLI's final message, or
	// its error).
	resultText string
	exitCode   *int
	signal     string
	stderr     string
	parseErrs  int
	// abandoned: the output pipes were still held open by an escaped
	// process DrainGrace after the agent exited, and reading stopped.
	abandoned bool
	// runUSD is the run's cost so far as the backend priced it (codex:
	// the thread's totals at the model's price); nil when it cannot.
	runUSD *float64
	// hit is the cap that ended the turn budget_exceeded (codex stopped
	// mid-turn; budgetEnd after a turn); nil otherwise.
	hit *capHit
	// streamed is the usage a claude turn's assistant messages reported
	// before its result (a lower bound), model the model its init line
	// named, and spoke says that init line came: a turn that ends without
	// a result is charged from them (estimate).
	streamed bus.Usage
	model    string
	spoke    bool
	// estimate is the charge for a turn that ended without reporting its
	// usage (claude stopped before its result line); nil otherwise.
	estimate *turnEstimate
}

// turnEstimate is what a turn that reported nothing is charged: usage,
// usd (nil: none), and how, for the run's error and log.
type turnEstimate struct {
	usage bus.Usage
	usd   *float64
	why   string
}

// canceled carries the status and reason of a cancel into a turn.
type canceled struct {
	status bus.RunStatus
	reason string
}

// backendFor is the backend of agent.kind: codex speaks `codex
// app-server` (codex_*.go), anything else the claude stream (the loader
// accepts only the two).
func (c *Component) backendFor(kind string) (backend, error) {
	if kind == bus.AgentCodex {
		return codexBackend{}, nil
	}
	return claudeBackend{environ: c.opts.Environ}, nil
}
