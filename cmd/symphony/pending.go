package main

// The commands below are declared with their full flags so that --help is
// already accurate, but their components are not built yet: they exit
// non-zero with "not implemented yet" rather than print made-up output.

// RunsCmd is `symphony runs`.
type RunsCmd struct {
	Issue  string   `help:"Only runs of this issue identifier."`
	Status string   `help:"Only runs that ended with this status (succeeded, failed, timed_out, stalled, canceled_by_reconciliation, interrupted, blocked) or running."`
	Since  Duration `help:"Only runs started within this long (e.g. 12h, 7d)."`
	Limit  int      `help:"At most this many runs." default:"50"`
	JSON   bool     `help:"Print JSON lines instead of a table."`
}

// Run is not implemented yet.
func (c *RunsCmd) Run() error { return errNotImplemented("runs") }

// ReplayCmd is `symphony replay`.
type ReplayCmd struct {
	RunID string  `arg:"" help:"The run to replay (see symphony runs)."`
	Speed float64 `help:"Divide the original gaps between events by this; 0 plays as fast as possible." default:"5"`
	Bind  string  `help:"Address the replay dashboard binds to." default:"127.0.0.1"`
	Port  int     `help:"Port of the replay dashboard." default:"4000"`
	Print bool    `help:"Write a readable transcript to the terminal instead of serving the dashboard."`
	JSONL bool    `name:"jsonl" help:"Write the raw events as JSON lines (the audit export format)."`
}

// Run is not implemented yet.
func (c *ReplayCmd) Run() error { return errNotImplemented("replay") }
