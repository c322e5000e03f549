// Package scheduler is the single scheduling authority (CONTRACT §3,
// spec §7–§8): it owns claims, the running set, the retry queue and the
// blocked set, and changes them only in its own goroutine in response to
// tracker snapshots, run events and timers. Each poll it reconciles running
// issues (stall detection, tracker state), then dispatches eligible
// candidates in priority order while global and per-state slots remain.
// Claims are created in KV symphony_state with compare-and-set, and retries
// and blocked issues are kept there too, so a restart resumes retry timers
// and re-dispatches runs that were interrupted. The rules themselves are
// pure functions in policy.go. It works on issue outlines (bus.Issue.Outline:
// what the rules read), which keeps its snapshots and requests small however
// many issues the tracker holds; the agent runner reads the full issue.
package scheduler
