// Package agentrunner is the component that runs coding agents. It takes a
// dispatch, asks the workspace component for the workspace, runs
// before_run, renders the prompt, runs the agent (the claude CLI in
// stream-json mode, or `codex app-server`) with the workspace as its
// working directory, turns its output into turn events (durable, in the
// TURNS stream), continues on the same session (claude's --resume, codex's
// live thread) while the issue stays active, up to agent.max_turns, runs
// after_run, and publishes the run's end.
//
// # Shape
//
//   - The component (agentrunner.go, owner.go): its state — the current
//     configuration and the runs it has — belongs to one goroutine, Run's
//     loop (owner). The dispatch, cancel and live-runs handlers send it
//     operations and wait for them; each run tells it when it starts
//     ending and when its end is on record. On shutdown the loop keeps
//     serving the runs until the last one has left.
//   - A run (run.go, turn.go, lane.go): one goroutine per dispatch, in
//     phases — the full issue, the workspace, before_run, the turns (with
//     continuation), after_run, the end — each a method of run. Lifecycle
//     events go to the store through the run's lane, in order, off the
//     run's path.
//   - The backend seam (backend.go): a run talks to its agent through a
//     backend (one per agent.kind) and the session it opens; a turn hands
//     the agent a prompt, emits its events and returns its outcome. The
//     claude driver (claude_*.go): argv and --resume, the stream-json
//     parser, one process per turn. The codex driver (codex_*.go): one
//     app-server process per run, JSON-RPC over its stdio, its requests
//     (dynamic tool calls, approvals, user input) always answered.
//   - The turn's outcome (outcome.go): how the process's end, the stream's
//     result and a stop combine into the turn's status, a pure function.
//   - Caps (budget.go): per run, and what remains of the lifetime
//     caps and of the fleet's day as the dispatch says — claude's
//     --max-budget-usd with the tightest remainder, codex stopped mid-turn
//     when its thread totals reach a cap, and the check after each turn; a
//     run at a cap ends budget_exceeded, naming the cap on its end. A run
//     keeps the caps of the configuration it was dispatched with, as it
//     keeps the rest of it.
//   - Process supervision (package proc): the child in its own process
//     group, bounded line reading, the stderr tail, the kill on cancel,
//     silence or shutdown, the search for what escaped the group. It
//     imports no bus and knows no agent.
package agentrunner
