package bus

import (
	"encoding/json"
	"time"
)

// Dispatch asks the agent runner to run an agent for an issue.
type Dispatch struct {
	// RunID names the run; the scheduler makes it unique.
	RunID string `json:"run_id"`
	Issue Issue  `json:"issue"`
	// Attempt is nil on a first run, the retry or continuation number after.
	Attempt *int `json:"attempt"`
	// IssueBudget is the issue's lifetime caps (budget.per_issue) and what
	// its earlier runs spent, when any cap is set: the runner enforces
	// what remains beside the per-run caps, so a run cannot carry the
	// issue past its lifetime cap. nil: no per-issue cap.
	IssueBudget *IssueBudgetLeft `json:"issue_budget,omitempty"`
	// DayBudget is the fleet's daily caps and today's spend before the
	// run, when a daily cap is set: the runner bounds the run by what
	// remains. nil: no daily cap.
	DayBudget *DayBudgetLeft `json:"day_budget,omitempty"`
}

// IssueBudgetLeft is an issue's lifetime caps and its spend before a run.
type IssueBudgetLeft struct {
	Caps  IssueBudget `json:"caps"`
	Spent IssueSpend  `json:"spent"`
}

// DispatchAccepted is the runner's answer: the run has started (its
// progress and end arrive as RunEvents).
type DispatchAccepted struct {
	RunID string `json:"run_id"`
}

// CancelRun asks the runner to stop a run (SIGTERM to the agent's process
// group, SIGKILL after a grace period).
type CancelRun struct {
	RunID string `json:"run_id"`
	// Reason is recorded as the run's error.
	Reason string `json:"reason"`
	// Status is the terminal status to record (canceled, stalled,
	// timed_out); canceled when empty.
	Status RunStatus `json:"status,omitempty"`
	// BudgetCap, BudgetLimit and BudgetDay name the cap a budget_exceeded
	// cancel enforces (the fleet's daily cap, crossed by another run's
	// turn): the run's end carries them (RunEvent.BudgetCap), so its park
	// says which cap made it, also when the end is followed up after a
	// restart.
	BudgetCap   string  `json:"budget_cap,omitempty"`
	BudgetLimit float64 `json:"budget_limit,omitempty"`
	BudgetDay   string  `json:"budget_day,omitempty"`
}

// CancelResult says whether the run was found running.
type CancelResult struct {
	Found bool `json:"found"`
}

// TurnEventKind is what an agent event is.
type TurnEventKind string

const (
	TurnPrompt   TurnEventKind = "prompt"      // the rendered prompt sent for the turn
	TurnInit     TurnEventKind = "system_init" // session started (model, tools, cwd)
	TurnSystem   TurnEventKind = "system"      // other system events (status)
	TurnAPIRetry TurnEventKind = "api_retry"   // the agent is retrying its model API
	// TurnRateLimit is the agent's latest rate-limit snapshot (codex's
	// account/rateLimits/updated, its payload in Raw).
	TurnRateLimit  TurnEventKind = "rate_limit"
	TurnText       TurnEventKind = "assistant_text"
	TurnThinking   TurnEventKind = "thinking"
	TurnToolUse    TurnEventKind = "tool_use"
	TurnToolResult TurnEventKind = "tool_result"
	TurnOutcome    TurnEventKind = "result" // the turn's outcome, usage and cost
	TurnOther      TurnEventKind = "other"  // a well-formed event of a type this build does not know
	TurnParseError TurnEventKind = "parse_error"
	TurnStderr     TurnEventKind = "stderr" // the tail of the agent's stderr, at the end of a turn
	// TurnTrackerTool is a tracker tool the agent called through the run's
	// MCP server, run host-side by Symphony (TrackerTool says what).
	TurnTrackerTool TurnEventKind = "tracker_tool"
)

// TurnEvent is one agent event of one turn, published on TurnEvents and
// persisted in the TURNS stream so runs replay with their original pacing.
type TurnEvent struct {
	RunID string `json:"run_id"`
	Turn  int    `json:"turn"`
	// Seq orders the events of a run (across its turns), from 1.
	Seq       int64         `json:"seq"`
	At        time.Time     `json:"at"`
	Kind      TurnEventKind `json:"kind"`
	SessionID string        `json:"session_id,omitempty"`
	// Text is the prompt, assistant text, thinking, a tool result's content,
	// an api_retry's error, a result's final text, a parse error's reason
	// or the stderr tail (bounded).
	Text string `json:"text,omitempty"`
	// Tool is set for tool_use and tool_result.
	Tool *ToolCall `json:"tool,omitempty"`
	// Result is set for result.
	Result *TurnResult `json:"result,omitempty"`
	// TrackerTool is set for tracker_tool (Text then holds the start of
	// the tool's output).
	TrackerTool *ToolCallRecord `json:"tracker_tool,omitempty"`
	// Raw keeps an unknown event (bounded).
	Raw json.RawMessage `json:"raw,omitempty"`
	// Totals are the session's token totals so far, on an event that
	// reports them mid-turn (codex's thread/tokenUsage/updated): what the
	// run's usage will be if the turn ended now. Nil on other events.
	Totals *Usage `json:"totals,omitempty"`
}

// RunProgress is a running agent's latest activity, published at most once
// per ProgressPeriod per run while its events flow, and once more when a
// turn ends. Readers that need to know a run is alive and what it did last
// (stall detection, the overview) read this instead of every agent event:
// under load that is tens of thousands of events a second, each decoded by
// every such reader. The events themselves are in the TURNS stream.
type RunProgress struct {
	RunID string `json:"run_id"`
	Turn  int    `json:"turn"`
	// Events is how many agent events the run has produced so far; New how
	// many of them since the previous progress message.
	Events int64 `json:"events"`
	New    int64 `json:"new"`
	// Last is the latest event, its text and tool input cut short.
	Last TurnEvent `json:"last"`
	// RateLimit is the latest API retry or HTTP 429 result since the
	// previous progress message, when there was one.
	RateLimit *TurnEvent `json:"rate_limit,omitempty"`
	// Totals are the run's latest mid-turn token totals (TurnEvent.Totals),
	// kept from message to message, so the dashboard's tokens move while a
	// turn runs instead of only when it ends; nil until the agent reports
	// any (claude reports its tokens only at a turn's end).
	Totals *Usage `json:"totals,omitempty"`
}

// ProgressPeriod is the longest a run's progress lags its latest event.
const ProgressPeriod = 250 * time.Millisecond

// RunMarkerEnv is the environment variable the agent runner sets on every
// agent process to its run id, so that a process that left its process
// group can still be found and killed: by the runner at a turn's end and by
// the scheduler when it records a run as interrupted after a crash. It is a
// contract between the two, so it is declared here, once.
const RunMarkerEnv = "SYMPHONY_RUN_ID"

// ProgressTextBytes caps the text a progress message carries per event.
const ProgressTextBytes = 1 << 10

// IsRateLimit reports whether the event says the agent's model API is
// rate limiting it (an API retry, or a result with HTTP 429) or carries
// the agent's rate-limit snapshot (rate_limit): the latest one is what the
// rate-limit view shows.
func (e TurnEvent) IsRateLimit() bool {
	return e.Kind == TurnAPIRetry || e.Kind == TurnRateLimit || (e.Result != nil && e.Result.APIStatus == 429)
}

// Brief is the event cut down for a progress message: text to
// ProgressTextBytes (on a rune boundary), tool input and tracker tool
// arguments only when they are small, no raw JSON.
func (e TurnEvent) Brief() TurnEvent {
	if len(e.Text) > ProgressTextBytes {
		n := ProgressTextBytes
		for n > 0 && e.Text[n]&0xC0 == 0x80 {
			n--
		}
		e.Text = e.Text[:n] + "…"
	}
	if e.Tool != nil && len(e.Tool.Input) > ProgressTextBytes {
		t := *e.Tool
		t.Input = nil
		e.Tool = &t
	}
	if e.TrackerTool != nil && len(e.TrackerTool.Arguments) > ProgressTextBytes {
		t := *e.TrackerTool
		t.Arguments = nil
		e.TrackerTool = &t
	}
	e.Raw = nil
	return e
}

// ToolCall is a tool use or its result.
type ToolCall struct {
	ID      string          `json:"id"`
	Name    string          `json:"name,omitempty"`
	Input   json.RawMessage `json:"input,omitempty"`
	IsError bool            `json:"is_error,omitempty"`
}

// TurnResult is the agent's own account of a turn.
type TurnResult struct {
	IsError   bool     `json:"is_error"`
	Subtype   string   `json:"subtype,omitempty"`
	NumTurns  int      `json:"num_turns,omitempty"`
	Duration  int64    `json:"duration_ms,omitempty"`
	Usage     Usage    `json:"usage"`
	CostUSD   *float64 `json:"cost_usd,omitempty"`
	APIStatus int      `json:"api_error_status,omitempty"`
	// PermissionDenials names the tools the agent was refused.
	PermissionDenials []string `json:"permission_denials,omitempty"`
	StopReason        string   `json:"stop_reason,omitempty"`
}

// Claim reserves an issue for one run (KV symphony_state, claim.<issue_id>).
type Claim struct {
	RunID      string    `json:"run_id"`
	IssueID    string    `json:"issue_id"`
	Identifier string    `json:"identifier"`
	Attempt    *int      `json:"attempt"`
	At         time.Time `json:"at"`
	// Fence is the fencing token of the scheduler lease under which the
	// claim was made (bus.SchedulerLease; 0 with the embedded server,
	// which has no lease).
	Fence uint64 `json:"fence,omitempty"`
}

// RetryEntry is a queued retry (KV symphony_state, retry.<issue_id>).
type RetryEntry struct {
	IssueID    string    `json:"issue_id"`
	Identifier string    `json:"identifier"`
	Attempt    int       `json:"attempt"`
	DueAt      time.Time `json:"due_at"`
	Error      string    `json:"error,omitempty"`
}

// BlockedEntry is an issue waiting for an operator (KV symphony_state,
// blocked.<issue_id>).
type BlockedEntry struct {
	IssueID    string    `json:"issue_id"`
	Identifier string    `json:"identifier"`
	State      string    `json:"state"`
	RunID      string    `json:"run_id"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
	// Cap names the setting that parked the issue (a Cap* constant:
	// budget.per_issue.usd, agent.max_runs_per_issue, …) and Limit its
	// value then; empty for a run that asked for a human or an operator's
	// cancel. A reload that raises or removes that cap releases the issue.
	Cap   string  `json:"cap,omitempty"`
	Limit float64 `json:"limit,omitempty"`
	// Day is set on a park by a daily cap: the calendar day (YYYY-MM-DD)
	// whose end releases it.
	Day string `json:"day,omitempty"`
}

// RunCount is how many runs an issue has had since the scheduler took it
// up (KV symphony_state, runs.<issue_id>): agent.max_runs_per_issue
// bounds it. It counts every dispatch (first runs, continuations,
// retries, a re-dispatch after a restart) and is deleted when the
// scheduler lets go of the issue (it left the active states, became
// ineligible or vanished) or its park is cleared.
type RunCount struct {
	IssueID    string `json:"issue_id"`
	Identifier string `json:"identifier"`
	Runs       int    `json:"runs"`
	// LastRunID is the run the count last grew by.
	LastRunID string    `json:"last_run_id"`
	Since     time.Time `json:"since"`
}

// IssueSpend is what an issue spent over all its runs, ever (KV
// symphony_state, spend.<issue_id>): budget.per_issue caps it. The
// scheduler never deletes it (a run's pruning, a release, a cleared park
// leave it), so the count does not depend on the run history. Runs grows
// at each dispatch, before the runner is asked; USD, Tokens and Turns
// grow at each run's end, once: Counted keeps the ids of the last runs
// whose end was added, so an end handled again (after a restart) is not
// added twice.
type IssueSpend struct {
	IssueID    string `json:"issue_id"`
	Identifier string `json:"identifier,omitempty"`
	// USD is the cost of the runs that had a figure (claude's own, or
	// codex priced with the pricing table); Unpriced counts the runs
	// that had none, whose cost is not in USD.
	USD      float64 `json:"usd"`
	Unpriced int     `json:"unpriced,omitempty"`
	// Tokens sums Usage.BudgetTokens of every run.
	Tokens int64 `json:"tokens"`
	Runs   int   `json:"runs"`
	Turns  int   `json:"turns"`
	// Counted is the ids of the last runs whose end is in the sums,
	// newest last (at most MaxCountedRuns).
	Counted []string  `json:"counted,omitempty"`
	Updated time.Time `json:"updated"`
}

// MaxCountedRuns bounds IssueSpend.Counted: a run's end is handled again
// only soon after it (a restart's recovery), never after many later runs.
const MaxCountedRuns = 16

// ControlAction is an operator command to the scheduler.
type ControlAction string

const (
	// ControlRefresh polls the tracker now and runs a tick (coalesced:
	// several requests before the tick make one).
	ControlRefresh ControlAction = "refresh"
	// ControlCancel stops the run of an issue (or a run id); the issue is
	// not retried but held as blocked until cleared or its state changes.
	ControlCancel ControlAction = "cancel"
	// ControlClearBlocked lets a blocked issue be dispatched again.
	ControlClearBlocked ControlAction = "clear_blocked"
	// ControlPause stops new dispatches; running agents finish.
	ControlPause ControlAction = "pause"
	// ControlResume undoes pause and polls now.
	ControlResume ControlAction = "resume"
	// ControlResetSpend sets an issue's lifetime spend (budget.per_issue)
	// back to zero and clears its park: the operator's way to give an
	// issue a fresh budget without raising the cap for every issue.
	ControlResetSpend ControlAction = "reset_spend"
)

// Control is an operator command (from the dashboard, the API or the CLI).
type Control struct {
	Action  ControlAction `json:"action"`
	IssueID string        `json:"issue_id,omitempty"`
	RunID   string        `json:"run_id,omitempty"`
	Reason  string        `json:"reason,omitempty"`
}

// ControlResult says what the scheduler did.
type ControlResult struct {
	Message string `json:"message"`
	Paused  bool   `json:"paused"`
	// Coalesced is set on a refresh that joined one already queued.
	Coalesced bool `json:"coalesced,omitempty"`
}

// PauseState is the value of KV symphony_state/paused: whether the operator
// paused dispatch, and when.
type PauseState struct {
	Paused bool      `json:"paused"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// ListRuns asks the agent runner which runs it has in flight.
type ListRuns struct{}

// LiveRuns lists the runs in flight.
type LiveRuns struct {
	Runs []Dispatch `json:"runs"`
}

// ToolCallRecord is the record of one tracker tool call of a run: what the
// agent asked (secrets masked) and how it ended.
type ToolCallRecord struct {
	Tool string `json:"tool"`
	// Arguments are masked and cut to ToolRecordMaxBytes.
	Arguments json.RawMessage `json:"arguments,omitempty"`
	OK        bool            `json:"ok"`
	// Class, Rule and Error say why a call failed (see ToolResult).
	Class      string         `json:"class,omitempty"`
	Rule       string         `json:"rule,omitempty"`
	Error      string         `json:"error,omitempty"`
	DurationMS int64          `json:"duration_ms"`
	RateLimit  *ToolRateLimit `json:"rate_limit,omitempty"`
	// OutputBytes is the size of the whole output the agent received.
	OutputBytes int `json:"output_bytes,omitempty"`
}
