package bus

import "time"

// RunSummary is the compact record of one run, kept current in KV
// symphony_runs as its lifecycle events are recorded, so listing runs reads
// one small value per run instead of every event.
type RunSummary struct {
	RunID         string     `json:"run_id"`
	Issue         IssueRef   `json:"issue"`
	Attempt       *int       `json:"attempt"`
	Status        RunStatus  `json:"status"`
	Error         string     `json:"error,omitempty"`
	Started       time.Time  `json:"started"`
	Ended         *time.Time `json:"ended,omitempty"`
	Turns         int        `json:"turns"`
	SessionID     string     `json:"session_id,omitempty"`
	Workspace     string     `json:"workspace,omitempty"`
	Agent         string     `json:"agent,omitempty"`
	Command       []string   `json:"command,omitempty"`
	Usage         Usage      `json:"usage"`
	CostUSD       *float64   `json:"cost_usd"`
	ConfigVersion int64      `json:"config_version,omitempty"`

	// BudgetUSD is the cost the budget caps counted (RunEvent.BudgetUSD):
	// for an agent that reports no cost (codex), its tokens priced by the
	// pricing table. The dashboard and `symphony runs` show it, marked as
	// priced, when CostUSD is nil; nil when neither is known.
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
	// BudgetEstimated says BudgetUSD (and Usage) include a charge for a
	// turn stopped before the agent reported its usage
	// (RunEvent.BudgetEstimated); shown marked "estimated".
	BudgetEstimated bool `json:"budget_estimated,omitempty"`
}

// PruneRequest asks the running pruner to delete the runs that ended
// longer ago than OlderThanMS (positive), or with DryRun only to say which.
type PruneRequest struct {
	OlderThanMS int64 `json:"older_than_ms"`
	DryRun      bool  `json:"dry_run,omitempty"`
}

// MaxPruneListed bounds the runs a PruneResult names: a reply stays small
// however many runs one prune deletes (DeletedCount counts them all).
const MaxPruneListed = 1000

// PruneResult says what the pruner did (or, dry, would do).
type PruneResult struct {
	// Deleted names the first MaxPruneListed deleted runs, in run id order.
	Deleted      []RunSummary `json:"deleted"`
	DeletedCount int          `json:"deleted_count"`
	Kept         int          `json:"kept"`
	BytesFreed   uint64       `json:"bytes_freed"`
	DryRun       bool         `json:"dry_run,omitempty"`
}
