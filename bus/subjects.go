package bus

import (
	"strings"
	"time"
)

// Root is the first token of every Symphony subject.
const Root = "symphony"

// Component names as they appear in the catalogue (producer and consumer
// columns) and in component lifecycle subjects.
const (
	CompSupervisor  = "supervisor"
	CompWorkflow    = "workflow"
	CompTracker     = "tracker"
	CompScheduler   = "scheduler"
	CompWorkspace   = "workspace"
	CompAgentRunner = "agentrunner"
	CompPruner      = "pruner"
	CompUI          = "ui"
	CompCLI         = "cli"
	// CompMCP is a run's MCP server (`symphony mcp`), a child of the
	// agent that asks for the run's tools with the run's credential.
	CompMCP = "mcp"
	// CompNotifier runs the operator's notify.command for each
	// notification event.
	CompNotifier = "notifier"
)

// The subject catalogue. Each variable is one subject family; Catalogue lists
// them all and subjects.md is rendered from that list.
var (
	// ComponentEvents reports component lifecycle changes made by the
	// supervisor: started, failed (with the error), restarting (with the
	// backoff) and stopped.
	ComponentEvents = event[ComponentEvent](Spec{
		Pattern:   "symphony.component.{component}",
		Producer:  CompSupervisor,
		Consumers: []string{CompUI},
		Doc:       "A component started, failed, is being restarted after a backoff, or stopped.",
	})

	// WorkflowErrors reports a WORKFLOW.md that could not be loaded. The last
	// good configuration stays in force; the same error is kept in KV
	// symphony_config/status for late readers.
	WorkflowErrors = event[WorkflowError](Spec{
		Pattern:  "symphony.workflow.error",
		Producer: CompWorkflow,
		// No component subscribes: the dashboard reads the same error
		// from symphony_config/status. The event is for people watching.
		Consumers: []string{"people watching with `nats sub`"},
		Doc:       "An edit of WORKFLOW.md was rejected (class, message, key, line); the previous config stays in force.",
	})

	// TrackerCandidates asks for the issues in some states.
	TrackerCandidates = request[IssuesByStates, IssueList](Spec{
		Pattern:   "symphony.tracker.candidates",
		Producer:  CompScheduler,
		Consumers: []string{CompTracker},
		Doc:       "Issues in the given (active) states, normalized and cut to the bound of one issue (outlines when asked: no description, no blockers); malformed records are dropped and logged; a long list comes in parts.",
	})

	// TrackerTerminal asks for the issues in terminal states.
	TrackerTerminal = request[IssuesByStates, IssueList](Spec{
		Pattern:   "symphony.tracker.terminal",
		Producer:  CompScheduler,
		Consumers: []string{CompTracker},
		Doc:       "Issues in the given terminal states, for the startup workspace sweep (outlines; a long list comes in parts).",
	})

	// TrackerRefresh asks for specific issues by id.
	TrackerRefresh = request[IssuesByIDs, IssueList](Spec{
		Pattern:   "symphony.tracker.refresh",
		Producer:  CompScheduler + ", " + CompAgentRunner + ", " + CompUI,
		Consumers: []string{CompTracker},
		Doc:       "Current state of specific issues (batched by 50; outlines when asked, full issues cut to the bound of one issue otherwise); complete or an error, never partial; a long list comes in parts.",
	})

	// TrackerSnapshots carries the candidates of every successful poll.
	TrackerSnapshots = event[CandidateSnapshot](Spec{
		Pattern:   "symphony.tracker.snapshot",
		Producer:  CompTracker,
		Consumers: []string{CompScheduler, CompUI},
		Doc:       "The candidate issues of one poll (active states) as outlines (what dispatch reads: an issue over 2 KiB without description and blockers), with when they were fetched; published in parts of at most 256 KiB (headers Symphony-Part, Symphony-Parts-Id), put together by each subscriber.",
	})

	// TrackerPollFailures reports a poll that failed.
	TrackerPollFailures = event[PollFailed](Spec{
		Pattern:   "symphony.tracker.poll_failed",
		Producer:  CompTracker,
		Consumers: []string{CompUI},
		Doc:       "A poll failed (class, message, retry-after); running agents keep running.",
	})

	// TrackerTools opens a run's tool session: the tracker pins its
	// adapter as it is now (a reload applies to later runs, never to this
	// one) and answers with the tools that session offers.
	TrackerTools = request[ListTools, ToolSpecs](Spec{
		Pattern:   "symphony.tracker.tools",
		Producer:  CompAgentRunner,
		Consumers: []string{CompTracker},
		Doc:       "Open a run's tool session (idempotent): the tracker pins the adapter in force for the run and answers with its tools (name, description, JSON Schema of the input, whether it mutates) and the config version they come from.",
	})

	// TrackerToolCall runs one tool host-side, with the adapter's
	// credential, on the run's own issue.
	TrackerToolCall = request[CallTool, ToolResult](Spec{
		Pattern:   "symphony.tracker.tool",
		Producer:  CompAgentRunner,
		Consumers: []string{CompTracker},
		Doc:       "Run one tracker tool in a run's session, acting only on the run's issue; always answered with a result (ok, output, or error with class and the refusing rule, duration, rate-limit headers, the arguments with secrets masked), never a request error, so the agent's session goes on.",
	})

	// TrackerToolsRelease ends a run's tool session.
	TrackerToolsRelease = request[ReleaseTools, ToolsReleased](Spec{
		Pattern:   "symphony.tracker.tools.release",
		Producer:  CompAgentRunner,
		Consumers: []string{CompTracker},
		Doc:       "End a run's tool session (at the run's end): later calls for the run are refused.",
	})

	// AgentTools lists a run's tools for its MCP server.
	AgentTools = request[ListRunTools, ToolSpecs](Spec{
		Pattern:   "symphony.agent.tools.{run_id}",
		Producer:  CompMCP,
		Consumers: []string{CompAgentRunner},
		Doc:       "The tools of run {run_id}, as fixed when the run started; asked by the run's MCP server with the run's credential (the only subjects it may ask are these two of its run).",
	})

	// AgentToolCall runs one of a run's tools for its MCP server.
	AgentToolCall = request[RunTool, ToolResult](Spec{
		Pattern:   "symphony.agent.tool.{run_id}",
		Producer:  CompMCP,
		Consumers: []string{CompAgentRunner},
		Doc:       "Run one tool of run {run_id} while the run is live: the runner adds the run's own issue, asks the tracker on symphony.tracker.tool and records the call as a tracker_tool agent event.",
	})

	// WorkspacePrepare creates or reuses an issue's workspace.
	WorkspacePrepare = request[PrepareWorkspace, WorkspaceReady](Spec{
		Pattern:   "symphony.workspace.prepare",
		Producer:  CompAgentRunner,
		Consumers: []string{CompWorkspace},
		Doc:       "Create (running after_create) or reuse <root>/<identifier>; refuses unsafe identifiers and paths outside the root.",
	})

	// WorkspaceHook runs before_run or after_run in an issue's workspace.
	WorkspaceHook = request[RunHook, HookResult](Spec{
		Pattern:   "symphony.workspace.hook",
		Producer:  CompAgentRunner,
		Consumers: []string{CompWorkspace},
		Doc:       "Run a configured hook in the issue's workspace; failure or timeout is a hook_failed / hook_timed_out error.",
	})

	// WorkspaceRemove removes an issue's workspace.
	WorkspaceRemove = request[RemoveWorkspace, WorkspaceRemoved](Spec{
		Pattern:   "symphony.workspace.remove",
		Producer:  CompScheduler,
		Consumers: []string{CompWorkspace},
		Doc:       "Run before_remove (failure logged) and delete the issue's workspace.",
	})

	// WorkspaceHookEvents reports hook runs, stored so a run's replay shows
	// them.
	WorkspaceHookEvents = event[HookEvent](Spec{
		Pattern:   "symphony.hook.{run_id}.{hook}",
		Producer:  CompWorkspace,
		Consumers: []string{CompUI, CompCLI, CompPruner},
		Stream:    StreamHooks,
		Doc:       "A hook started, finished, failed or timed out, with duration and truncated output; {run_id} is the run it served (`none` outside a run), {hook} the hook name.",
	})

	// AgentDispatch starts a run.
	AgentDispatch = request[Dispatch, DispatchAccepted](Spec{
		Pattern:   "symphony.agent.dispatch",
		Producer:  CompScheduler,
		Consumers: []string{CompAgentRunner},
		Doc:       "Run an agent for an issue (the issue, or its outline when over 2 KiB, whose full issue the runner reads by id on symphony.tracker.refresh; attempt, run id); accepted at once, progress on symphony.run.* and symphony.turn.*.",
	})

	// AgentCancel stops a run.
	AgentCancel = request[CancelRun, CancelResult](Spec{
		Pattern:   "symphony.agent.cancel",
		Producer:  CompScheduler,
		Consumers: []string{CompAgentRunner},
		Doc:       "Stop a run: SIGTERM to the agent's process group, SIGKILL after 5 s; the run ends with the given status.",
	})

	// AgentRuns lists the runs in flight.
	AgentRuns = request[ListRuns, LiveRuns](Spec{
		Pattern:   "symphony.agent.runs",
		Producer:  CompScheduler,
		Consumers: []string{CompAgentRunner},
		Doc:       "The runs the agent runner has in flight, with their issues' outlines (a restarted scheduler adopts them instead of treating them as interrupted); a long list comes in parts.",
	})

	// TurnEvents carries every agent event of every turn.
	TurnEvents = event[TurnEvent](Spec{
		Pattern:   "symphony.turn.{run_id}.{turn}",
		Producer:  CompAgentRunner,
		Consumers: []string{CompUI, CompCLI, CompPruner},
		Stream:    StreamTurns,
		Schema:    turnBatchSchema,
		Batches:   true,
		Doc:       "Agent events (prompt, init, text, thinking, tool use/result, api retry, result, parse error, stderr tail) of turn {turn}: one event, or (schema 2, header Symphony-Events) a JSON array of the events the agent wrote faster than they could be stored one by one.",
	})

	// AgentProgress is a running agent's latest activity, coalesced.
	AgentProgress = event[RunProgress](Spec{
		Pattern:   "symphony.progress.{run_id}",
		Producer:  CompAgentRunner,
		Consumers: []string{CompScheduler, CompUI},
		Doc:       "A running agent's latest event (cut short), its event count, latest rate-limit signal (codex's snapshot with its payload) and mid-turn token totals when the agent reports them (codex), at most every 250 ms per run while events flow and at each turn's end: stall detection and the overview read this, not every agent event.",
	})

	// SchedulerControl carries operator commands to the scheduler.
	SchedulerControl = request[Control, ControlResult](Spec{
		Pattern:   "symphony.scheduler.control",
		Producer:  CompUI,
		Consumers: []string{CompScheduler},
		Doc:       "Operator command: refresh now (coalesced), cancel a run, clear a blocked issue, pause or resume dispatch.",
	})

	// PruneRuns asks the running pruner to prune, so that `symphony prune`
	// against a running instance needs no right to purge streams.
	PruneRuns = request[PruneRequest, PruneResult](Spec{
		Pattern:   "symphony.pruner.prune",
		Producer:  CompCLI,
		Consumers: []string{CompPruner},
		Doc:       "Delete the runs that ended longer ago than the given age, or with dry_run only list them; `symphony prune` sends it to a running instance over the listener with the control token.",
	})

	// RunEvents is the lifecycle of one agent run, persisted in the RUNS
	// stream so runs can be listed and replayed after a restart.
	RunEvents = event[RunEvent](Spec{
		Pattern:   "symphony.run.{run_id}.{event}",
		Producer:  CompAgentRunner + " (" + CompScheduler + " records interrupted and lost runs)",
		Consumers: []string{CompScheduler, CompUI, CompPruner, CompCLI},
		Stream:    StreamRuns,
		Doc:       "A run was dispatched, got its workspace and session, started or finished a turn, or finished (terminal status, usage, cost); {event} is the RunEventKind. turn_started carries the agent process's pid and the moment its start returned (`agent_pid`, `agent_started_at`).",
	})

	// Notifications are the events an operator wants to hear about,
	// persisted in the NOTIFY stream so that the notifier delivers each
	// occurrence once, across restarts.
	Notifications = event[Notification](Spec{
		Pattern:   "symphony.notify.{event}",
		Producer:  CompScheduler + ", " + CompWorkflow,
		Consumers: []string{CompNotifier, CompUI},
		Stream:    StreamNotify,
		Doc:       "Something needs an operator: a run blocked, a budget exceeded, the daily cap reached, max runs reached, retries exhausted, a workflow reload rejected; {event} is the NotifyEvent. The id names the occurrence: published again (after a restart) it is dropped, and notify.command runs once for it.",
	})
)

// Catalogue returns every subject family declared in this package, in the
// order subjects.md lists them.
func Catalogue() []Spec {
	return []Spec{
		ComponentEvents.Spec(),
		WorkflowErrors.Spec(),
		TrackerCandidates.Spec(),
		TrackerTerminal.Spec(),
		TrackerRefresh.Spec(),
		TrackerSnapshots.Spec(),
		TrackerPollFailures.Spec(),
		TrackerTools.Spec(),
		TrackerToolCall.Spec(),
		TrackerToolsRelease.Spec(),
		WorkspacePrepare.Spec(),
		WorkspaceHook.Spec(),
		WorkspaceRemove.Spec(),
		WorkspaceHookEvents.Spec(),
		SchedulerControl.Spec(),
		PruneRuns.Spec(),
		AgentDispatch.Spec(),
		AgentCancel.Spec(),
		AgentRuns.Spec(),
		AgentTools.Spec(),
		AgentToolCall.Spec(),
		RunEvents.Spec(),
		TurnEvents.Spec(),
		AgentProgress.Spec(),
		Notifications.Spec(),
	}
}

// Stream names.
const (
	StreamRuns  = "RUNS"
	StreamTurns = "TURNS"
	StreamHooks = "HOOKS"
	// StreamNotify keeps notifications until the notifier has handled
	// them.
	StreamNotify = "NOTIFY"
)

// NoRun is the {run_id} token of events that belong to no run (a workspace
// removed by the startup sweep, say).
const NoRun = "none"

// DefaultStreamMaxAge is the backstop age after which JetStream itself drops
// stored run history. It is deliberately longer than the default prune
// retention (30 days) so that pruning, which keeps running runs, is what
// normally bounds the store.
const DefaultStreamMaxAge = 90 * 24 * time.Hour

// StreamMaxAgeFor is the backstop for a prune retention: the default, or
// the retention plus a week when that is longer, so that the pruner (which
// keeps running runs and deletes a run whole) is what bounds the store, not
// JetStream dropping the oldest events of runs whose summaries stay listed.
func StreamMaxAgeFor(retention time.Duration) time.Duration {
	return max(DefaultStreamMaxAge, retention+7*24*time.Hour)
}

// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id to drop a
// retried publish.
const DuplicateWindow = 2 * time.Minute

// StreamSpec declares a JetStream stream.
type StreamSpec struct {
	Name     string
	Subjects []string
	// MaxAge overrides Options.StreamMaxAge when non-zero.
	MaxAge time.Duration
	Doc    string
}

// Streams returns every stream Symphony declares, created or updated at start.
func Streams() []StreamSpec {
	return []StreamSpec{
		{
			Name:     StreamRuns,
			Subjects: []string{Root + ".run.>"},
			Doc:      "Run lifecycle events, one subject per run and event kind; the source of run summaries and replay.",
		},
		{
			Name:     StreamTurns,
			Subjects: []string{Root + ".turn.>"},
			Doc:      "Every agent event of every turn, one subject per run and turn (a message holds one event, or several the agent wrote in one go); replayed in order with the original gaps.",
		},
		{
			Name:     StreamHooks,
			Subjects: []string{Root + ".hook.>"},
			Doc:      "Workspace hook events, one subject per run and hook; part of a run's replay.",
		},
		{
			Name:     StreamNotify,
			Subjects: []string{Root + ".notify.>"},
			Doc:      "Notifications for the operator, one subject per event kind; the notifier's durable consumer delivers each once, and the dashboard lists the recent ones.",
		},
	}
}

// Bucket names.
const (
	BucketConfig = "symphony_config"
	BucketState  = "symphony_state"
	BucketRuns   = "symphony_runs"
	// BucketNotify is the notifier's own state.
	BucketNotify = "symphony_notify"
)

// BucketSpec declares a JetStream key-value bucket.
type BucketSpec struct {
	Name    string
	History uint8
	Keys    string
	Writer  string
	Readers []string
	Doc     string
}

// Buckets returns every KV bucket Symphony declares, created or updated at
// start.
func Buckets() []BucketSpec {
	return []BucketSpec{
		{
			Name:    BucketConfig,
			History: 10,
			Keys:    "`current` (`bus.ConfigSnapshot`), `status` (`bus.WorkflowStatus`)",
			Writer:  CompWorkflow,
			Readers: []string{CompTracker, CompScheduler, CompWorkspace, CompAgentRunner, CompPruner, CompNotifier, CompUI},
			Doc:     "The last good typed configuration loaded from WORKFLOW.md, with its version and checksum; every component watches it (live reload).",
		},
		{
			Name:    BucketState,
			History: 1,
			Keys:    "`claim.<issue_id>`, `retry.<issue_id>`, `blocked.<issue_id>`, `runs.<issue_id>` (`bus.RunCount`), `spend.<issue_id>` (`bus.IssueSpend`), `day.<YYYY-MM-DD>` (`bus.DaySpend`), `paused` (`bus.PauseState`), `notify_dropped` (`bus.NotifyDrops`), `lease.scheduler` (`bus.LeaseState`), `standby.<name>` (`bus.StandbyState`)",
			Writer:  CompScheduler,
			Readers: []string{CompUI},
			Doc:     "The scheduler's durable state: claims (created with compare-and-set), the retry queue with due times, blocked (parked) issues, each issue's runs while it stays active (agent.max_runs_per_issue), each issue's lifetime spend (budget.per_issue), the fleet's spend per day (budget.per_day), whether dispatch is paused, how many notifications it dropped before storing them, and on a cluster (--nats) which `symphony run` is the active scheduler (its lease and fencing token) and which stand by.",
		},
		{
			Name:    BucketRuns,
			History: 1,
			Keys:    "`run.<run_id>` (`bus.RunSummary`)",
			Writer:  CompAgentRunner + ", " + CompScheduler + " (" + CompPruner + " deletes expired runs)",
			Readers: []string{CompCLI, CompUI},
			Doc:     "One compact summary per run, folded from its lifecycle events as they are recorded (compare-and-set), so listing runs reads one value per run.",
		},
		{
			Name:    BucketNotify,
			History: 1,
			Keys:    "`status` (`bus.NotifyStatus`)",
			Writer:  CompNotifier,
			// The dashboard shows the counts and the last failure on the
			// overview and exports them on /metrics; operators can read
			// the whole value with the nats CLI.
			Readers: []string{CompUI, "operators (`nats kv get symphony_notify status`)"},
			Doc:     "The notifier's state, one value written after each notification: the last NOTIFY sequence handled, the digests of the ids handled in the last 30 days (at most 4096), the command in flight, and the counts (delivered, failed, skipped, duplicates, invalid), so each occurrence runs notify.command once across restarts and re-publications.",
		},
	}
}

// streamFor returns the stream whose subjects cover the pattern, or "".
func streamFor(pattern string) string {
	for _, st := range Streams() {
		for _, sub := range st.Subjects {
			if subjectCovers(sub, pattern) {
				return st.Name
			}
		}
	}
	return ""
}

// subjectCovers reports whether filter (with * and >) matches every subject
// the pattern can produce ({placeholders} count as single tokens).
func subjectCovers(filter, pattern string) bool {
	f := strings.Split(filter, ".")
	p := strings.Split(pattern, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(p) > i
		}
		if i >= len(p) {
			return false
		}
		if tok == "*" {
			continue
		}
		if tok != p[i] {
			return false
		}
	}
	return len(f) == len(p)
}
