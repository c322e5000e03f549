package bus

import "time"

// Hook names.
const (
	HookAfterCreate  = "after_create"
	HookBeforeRun    = "before_run"
	HookAfterRun     = "after_run"
	HookBeforeRemove = "before_remove"
)

// PrepareWorkspace asks for the issue's workspace: created on first use
// (running after_create), reused afterwards.
type PrepareWorkspace struct {
	Issue Issue `json:"issue"`
	// RunID, when set, is carried on the hook events so a run's replay
	// shows them.
	RunID string `json:"run_id,omitempty"`
}

// WorkspaceReady is the answer to PrepareWorkspace.
type WorkspaceReady struct {
	// Path is absolute, inside the workspace root.
	Path string `json:"path"`
	// CreatedNow is true when this request created the directory.
	CreatedNow bool `json:"created_now"`
}

// RunHook asks the workspace component to run one of the configured hooks
// (before_run, after_run) in the issue's existing workspace.
type RunHook struct {
	Hook  string `json:"hook"`
	Issue Issue  `json:"issue"`
	RunID string `json:"run_id,omitempty"`
	// SessionID is the agent's session when the run has one (after_run),
	// so the hook's log lines carry it like the run's own (SPEC §13.1).
	SessionID string `json:"session_id,omitempty"`
}

// HookResult is the outcome of a hook that ran (or was not configured).
// A hook that failed or timed out is a RemoteError with code hook_failed or
// hook_timed_out instead.
type HookResult struct {
	Hook string `json:"hook"`
	// Ran is false when the hook is not configured.
	Ran        bool   `json:"ran"`
	DurationMS int64  `json:"duration_ms"`
	Output     string `json:"output,omitempty"`
}

// RemoveWorkspace asks for the issue's workspace to be removed (running
// before_remove first).
type RemoveWorkspace struct {
	Issue Issue  `json:"issue"`
	RunID string `json:"run_id,omitempty"`
}

// WorkspaceRemoved is the answer to RemoveWorkspace.
type WorkspaceRemoved struct {
	Path    string `json:"path"`
	Existed bool   `json:"existed"`
}

// HookPhase is a step of a hook run.
type HookPhase string

const (
	HookStarted  HookPhase = "started"
	HookFinished HookPhase = "finished"
	HookFailed   HookPhase = "failed"
	HookTimedOut HookPhase = "timed_out"
)

// HookEvent is published for every hook start and end.
type HookEvent struct {
	Hook      string    `json:"hook"`
	Phase     HookPhase `json:"phase"`
	Issue     IssueRef  `json:"issue"`
	RunID     string    `json:"run_id,omitempty"`
	Workspace string    `json:"workspace"`
	At        time.Time `json:"at"`
	// DurationMS, ExitCode and Output (truncated) are set when it ended.
	DurationMS int64  `json:"duration_ms,omitempty"`
	ExitCode   int    `json:"exit_code,omitempty"`
	Output     string `json:"output,omitempty"`
	Error      string `json:"error,omitempty"`
}
