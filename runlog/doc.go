// Package runlog is Symphony's run history: what a run left in the store
// and how it is read back. It sits above the kernel (package bus) and
// below the components and the dashboard, which use it only through the
// API here.
//
// Writing: Record and Recorder store a run's lifecycle events and fold
// each into the run's summary (bus.RunSummary, in KV symphony_runs) with
// compare-and-set; EnsureEnded repairs a summary whose end was stored but
// not folded in; Writer stores a run's agent events with pipelined
// acknowledgements, several to a message when the agent writes faster than
// they are stored one by one.
//
// Reading: Summaries lists every run; Timeline reads a run whole, Each
// piece by piece in bounded memory, Follow from a Cursor on as new events
// are stored; End says where a run's stored events end. Each hands on an
// Event, which marshals to the `symphony replay --jsonl` export line
// (AppendJSON writes it without reflection).
//
// Deleting: Purge removes a run's events and its summary (the pruner's
// work).
//
// Everything here is built on a few general facilities of the kernel:
// bus.ReadStored and bus.FollowStored (a stream's stored messages in
// order, with bounded back-pressure), the Topic methods that check, split
// and decode a stored message, and typed KV with compare-and-set
// (bus.Create, bus.Update, bus.Purge, bus.Values). Nothing in bus knows
// what a run's history is.
package runlog
