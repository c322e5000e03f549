package bus

import (
	"math"
	"time"
)

// ComponentState is a step in a component's life as the supervisor sees it.
type ComponentState string

const (
	ComponentStarted    ComponentState = "started"
	ComponentFailed     ComponentState = "failed"
	ComponentRestarting ComponentState = "restarting"
	ComponentStopped    ComponentState = "stopped"
)

// ComponentEvent is published by the supervisor on ComponentEvents.
type ComponentEvent struct {
	Component string         `json:"component"`
	State     ComponentState `json:"state"`
	At        time.Time      `json:"at"`
	// Error is the failure that ended the component (state failed).
	Error string `json:"error,omitempty"`
	// Restarts counts restarts since the process started.
	Restarts int `json:"restarts,omitempty"`
	// BackoffMS is the wait before the next start (state restarting).
	BackoffMS int64 `json:"backoff_ms,omitempty"`
}

// RunEventKind is the {event} token of a run lifecycle subject.
type RunEventKind string

const (
	RunDispatched     RunEventKind = "dispatched"
	RunWorkspaceReady RunEventKind = "workspace_ready"
	RunSessionStarted RunEventKind = "session_started"
	RunTurnStarted    RunEventKind = "turn_started"
	RunTurnFinished   RunEventKind = "turn_finished"
	RunFinished       RunEventKind = "run_finished"
)

// RunStatus is how a run ended. The values follow the reference
// specification's run attempt outcomes, plus interrupted (the process died
// while the run was in flight) and blocked (the agent asked for input or
// was denied a permission it needed) and budget_exceeded (the run reached
// a spending cap of budget:, and its issue is parked until an operator
// clears it or its state changes).
type RunStatus string

const (
	// RunRunning is the status of a run in flight: its summary's status
	// from its start until its end is recorded.
	RunRunning     RunStatus = "running"
	RunSucceeded   RunStatus = "succeeded"
	RunFailed      RunStatus = "failed"
	RunTimedOut    RunStatus = "timed_out"
	RunStalled     RunStatus = "stalled"
	RunCanceled    RunStatus = "canceled"
	RunInterrupted RunStatus = "interrupted"
	RunBlocked     RunStatus = "blocked"
	// RunBudgetExceeded: the run's usage or cost reached a cap; its error
	// names the cap and the amounts.
	RunBudgetExceeded RunStatus = "budget_exceeded"
)

// IssueRef is the part of an issue a run record keeps: enough to show and
// link it without asking the tracker again.
type IssueRef struct {
	ID         string `json:"id"`
	Identifier string `json:"identifier"`
	Title      string `json:"title,omitempty"`
	URL        string `json:"url,omitempty"`
	State      string `json:"state,omitempty"`
}

// Ref is the issue's IssueRef.
func (i Issue) Ref() IssueRef {
	ref := IssueRef{ID: i.ID, Identifier: i.Identifier, Title: i.Title, State: i.State}
	if i.URL != nil {
		ref.URL = *i.URL
	}
	return ref
}

// Usage counts tokens.
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// BudgetTokens is what a token cap counts of u (bus.BudgetCaps.Tokens):
// every token the model processed, once. The agents count differently:
// claude reports its cache reads and writes beside input_tokens, codex
// counts its cached tokens (CacheReadInputTokens here) inside its input
// tokens, so adding them again would charge them twice. Negative counts
// count as none and the sum saturates at math.MaxInt64: an agent's
// figures can neither lower nor wrap what a cap sees.
func (u Usage) BudgetTokens(agent string) int64 {
	n := SatAdd(max(u.InputTokens, 0), max(u.OutputTokens, 0))
	if agent == AgentCodex {
		return n
	}
	return SatAdd(n, SatAdd(max(u.CacheCreationInputTokens, 0), max(u.CacheReadInputTokens, 0)))
}

// Add sums two usages, each count clamped to zero and saturating at
// math.MaxInt64, so a hostile or broken report (a negative count, one
// near the int64 limit) can never take a sum below what was already
// counted.
func (u Usage) Add(o Usage) Usage {
	u, o = u.Clamped(), o.Clamped()
	return Usage{SatAdd(u.InputTokens, o.InputTokens), SatAdd(u.OutputTokens, o.OutputTokens),
		SatAdd(u.CacheCreationInputTokens, o.CacheCreationInputTokens), SatAdd(u.CacheReadInputTokens, o.CacheReadInputTokens)}
}

// Clamped is u with every negative count read as zero: what an agent
// reports is taken as a count of tokens, never as a credit.
func (u Usage) Clamped() Usage {
	return Usage{max(u.InputTokens, 0), max(u.OutputTokens, 0), max(u.CacheCreationInputTokens, 0), max(u.CacheReadInputTokens, 0)}
}

// SatAdd adds two non-negative counts, saturating at math.MaxInt64
// instead of wrapping negative.
func SatAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// RunEvent is one step of a run's lifecycle, published on RunEvents and
// persisted in the RUNS stream.
type RunEvent struct {
	RunID string       `json:"run_id"`
	Event RunEventKind `json:"event"`
	At    time.Time    `json:"at"`
	Issue IssueRef     `json:"issue"`
	// Attempt is nil on a first run, the retry or continuation number after.
	Attempt *int `json:"attempt"`
	// Workspace is the workspace path the agent runs in.
	Workspace string `json:"workspace,omitempty"`
	// Agent is the agent kind ("claude", "codex"); Command its command line.
	Agent   string   `json:"agent,omitempty"`
	Command []string `json:"command,omitempty"`
	// SessionID is the agent's session (session_started and later).
	SessionID string `json:"session_id,omitempty"`
	// Turn is the turn number (turn_started, turn_finished; the count at
	// run_finished).
	Turn int `json:"turn,omitempty"`
	// Usage and CostUSD are per turn on turn_finished and summed over the
	// run on run_finished. CostUSD is nil when the agent reports none.
	Usage   *Usage   `json:"usage,omitempty"`
	CostUSD *float64 `json:"cost_usd,omitempty"`
	// BudgetUSD is, on run_finished, the cost the budget caps counted:
	// CostUSD when the agent reported one, else the run priced by the
	// pricing table (codex); nil when neither (an unpriced run).
	// On turn_finished it is the turn's own share: the turn's CostUSD, or
	// what the run's priced cost grew by in the turn (codex); nil when
	// the turn had no figure. The scheduler adds it to the day's spend.
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
	// BudgetEstimated says Usage and BudgetUSD include a charge Symphony
	// made because the agent reported none: a claude turn stopped before
	// its result line (timeout, stall, cancel, a cap) is charged the tokens
	// its streamed messages reported, and in USD those tokens at the
	// pricing table's price for its model, else the whole --max-budget-usd
	// it was given (a lower bound of tokens, a ceiling of dollars). On
	// run_finished it says any turn of the run was charged so.
	BudgetEstimated bool `json:"budget_estimated,omitempty"`
	// BudgetCap names the cap that ended a budget_exceeded run (a Cap*
	// key: budget.per_run.usd, budget.per_day.tokens, …) and BudgetLimit
	// its value, on run_finished (and on the turn_finished of the turn it
	// ended); BudgetDay is the calendar day of a daily cap. The scheduler
	// parks the issue with them, so a reload can tell whether a new
	// configuration releases it.
	BudgetCap   string  `json:"budget_cap,omitempty"`
	BudgetLimit float64 `json:"budget_limit,omitempty"`
	BudgetDay   string  `json:"budget_day,omitempty"`
	// AgentPID and AgentStartedAt are set on turn_started when the agent's
	// process was started: its process id, and the moment its start (the
	// fork and exec) returned inside Symphony. At is when the turn began,
	// just before the start. Neither is set when the start failed.
	AgentPID       int        `json:"agent_pid,omitempty"`
	AgentStartedAt *time.Time `json:"agent_started_at,omitempty"`
	// ExitCode and Signal describe how the agent process ended.
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	// ConfigVersion is the workflow config version the run started under.
	ConfigVersion int64 `json:"config_version,omitempty"`
	// Status is set on run_finished (and on a failed turn_finished).
	Status RunStatus `json:"status,omitempty"`
	// Error explains a non-successful end.
	Error string `json:"error,omitempty"`
}
