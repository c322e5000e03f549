package bus

import "time"

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
	RunDispatched RunEventKind = "dispatched"
	RunStarted    RunEventKind = "started"
	RunEnded      RunEventKind = "ended"
)

// RunStatus is how a run ended. The values follow the reference
// specification's run attempt outcomes, plus interrupted (the process died
// while the run was in flight) and blocked (the agent asked for input).
type RunStatus string

const (
	RunSucceeded                RunStatus = "succeeded"
	RunFailed                   RunStatus = "failed"
	RunTimedOut                 RunStatus = "timed_out"
	RunStalled                  RunStatus = "stalled"
	RunCanceledByReconciliation RunStatus = "canceled_by_reconciliation"
	RunInterrupted              RunStatus = "interrupted"
	RunBlocked                  RunStatus = "blocked"
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

// RunEvent is one step of a run's lifecycle, published on RunEvents and
// persisted in the RUNS stream.
type RunEvent struct {
	RunID string       `json:"run_id"`
	Event RunEventKind `json:"event"`
	At    time.Time    `json:"at"`
	Issue IssueRef     `json:"issue"`
	// Attempt is nil on a first run, the retry or continuation number after.
	Attempt *int `json:"attempt"`
	// Workspace is the workspace path the agent ran in (started, ended).
	Workspace string `json:"workspace,omitempty"`
	// Agent is the agent kind ("claude", "codex").
	Agent string `json:"agent,omitempty"`
	// Status is set on ended.
	Status RunStatus `json:"status,omitempty"`
	// Error explains a non-successful end.
	Error string `json:"error,omitempty"`
}
