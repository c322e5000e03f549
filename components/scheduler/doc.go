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
//
// Its files follow its concerns: scheduler.go holds the component, the
// actor's state and Run's loop; dispatch.go a tick and the claims;
// runs.go what follows a run (progress, end, cancel); reconcile.go stall
// detection and the tracker's word on held issues; retry.go the retry
// queue; blocks.go blocked issues; removal.go workspace removals;
// controls.go operator commands (reset_spend among them); runcap.go
// agent.max_runs_per_issue; spend.go the issues' lifetime caps
// (budget.per_issue); day.go the fleet's daily spend, its caps and the
// rollover (budget.per_day); recheck.go what a reload releases of the
// parks made by a cap; notify.go the notifications it publishes;
// recovery.go start-up from KV and the sweep; async.go the requests
// answered off the loop; policy.go the rules.
//
// Time is read from the time package (time.Now, time.NewTimer); nothing
// stands in for it. Tests that step through backoffs, stalls and cancels
// run in testing/synctest bubbles, bus included, where time is a fake
// clock that moves only when everything in the bubble waits.
package scheduler
