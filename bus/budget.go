package bus

import (
	"time"
)

// The fleet's daily spend and the operator's notifications: the shapes the
// scheduler writes, the notifier delivers and the dashboard shows.

// DaySpend is what the whole fleet spent on one calendar day (KV
// symphony_state, day.<YYYY-MM-DD>), the day taken in
// budget.per_day.time_zone: budget.per_day caps it, and the overview's
// 30-day chart draws it. USD and Tokens grow at each turn's end (so the
// daily cap sees a long run's spend before the run ends); Runs and
// Outcomes at each run's end, on the day it ended. Counted remembers the
// last turns and runs added, so an event handled again after a restart
// is not added twice. Only the scheduler writes it; it keeps at least
// DaySpendKeepDays days.
type DaySpend struct {
	// Day is the calendar day, YYYY-MM-DD, in TimeZone.
	Day      string `json:"day"`
	TimeZone string `json:"time_zone"`
	// USD is the cost of the turns that had a figure; Unpriced counts the
	// turns that had none (codex with no pricing entry).
	USD      float64 `json:"usd"`
	Unpriced int     `json:"unpriced,omitempty"`
	// Tokens sums Usage.BudgetTokens of every turn.
	Tokens int64 `json:"tokens"`
	// Runs counts the runs that ended this day; Outcomes splits them by
	// terminal status.
	Runs     int               `json:"runs"`
	Outcomes map[RunStatus]int `json:"outcomes,omitempty"`
	// Capped is set once a daily cap was reached this day: which, the
	// amounts, and when. Nothing new starts while it stands; it falls when
	// the day rolls over or a reload raises the cap above the spend.
	Capped *DayCapped `json:"capped,omitempty"`
	// Counted is the ids of the last events whose amounts are in the sums
	// ("<run_id>/<turn>" for a turn, "<run_id>" for a run's end), newest
	// last, at most MaxDayCounted.
	Counted []string  `json:"counted,omitempty"`
	Updated time.Time `json:"updated"`
}

// DayCapped says which daily cap the fleet reached.
type DayCapped struct {
	// Cap is the key: budget.per_day.usd or budget.per_day.tokens.
	Cap string `json:"cap"`
	// Limit is the cap's value then; Spent the spend that reached it.
	Limit float64   `json:"limit"`
	Spent float64   `json:"spent"`
	At    time.Time `json:"at"`
}

// MaxDayCounted bounds DaySpend.Counted: an event is handled again only
// soon after it (a restart's recovery).
const MaxDayCounted = 256

// DaySpendKeepDays is how many days of DaySpend the scheduler keeps: the
// 30-day chart with room to spare.
const DaySpendKeepDays = 62

// DayLayout is the layout of DaySpend.Day and of its key.
const DayLayout = "2006-01-02"

// DayBudgetLeft is the fleet's daily caps and what today's turns spent
// before a run was dispatched: the runner bounds the run by what remains
// beside its other caps (claude's --max-budget-usd included).
type DayBudgetLeft struct {
	Day    string     `json:"day"`
	Caps   BudgetCaps `json:"caps"`
	USD    float64    `json:"usd"`
	Tokens int64      `json:"tokens"`
}

// Cap keys: the machine-readable name of the setting that parked an
// issue (BlockedEntry.Cap), so that a reload can tell whether the new
// configuration releases it.
const (
	CapRunUSD      = "budget.per_run.usd"
	CapRunTokens   = "budget.per_run.tokens"
	CapIssueUSD    = "budget.per_issue.usd"
	CapIssueTokens = "budget.per_issue.tokens"
	CapIssueRuns   = "budget.per_issue.runs"
	CapIssueTurns  = "budget.per_issue.turns"
	CapDayUSD      = "budget.per_day.usd"
	CapDayTokens   = "budget.per_day.tokens"
	CapMaxRuns     = "agent.max_runs_per_issue"
)

// NotifyEvent is what a notification is about.
type NotifyEvent string

const (
	// NotifyRunBlocked: a run ended blocked (the agent asked for a
	// human). An operator's own cancel, which also holds the issue, sends
	// nothing: the operator did it.
	NotifyRunBlocked NotifyEvent = "run_blocked"
	// NotifyBudgetExceeded: an issue was parked by a cap — its run
	// reached a per-run or per-issue cap, the daily cap stopped its run
	// (one for each run stopped), or a per-issue cap refused its next
	// dispatch.
	NotifyBudgetExceeded NotifyEvent = "budget_exceeded"
	// NotifyDailyCap: the fleet reached a daily cap; nothing new starts
	// until the day rolls over or the cap is raised.
	NotifyDailyCap NotifyEvent = "daily_cap_reached"
	// NotifyMaxRuns: an issue reached agent.max_runs_per_issue after a run
	// that ended cleanly (a continuation loop) and is parked.
	NotifyMaxRuns NotifyEvent = "max_runs_reached"
	// NotifyRetriesExhausted: an issue reached agent.max_runs_per_issue
	// after a failed run, so the retry that would come next is refused and
	// the issue is parked.
	NotifyRetriesExhausted NotifyEvent = "retries_exhausted"
	// NotifyWorkflowRejected: an edit of WORKFLOW.md was rejected; the
	// last good configuration stays in force.
	NotifyWorkflowRejected NotifyEvent = "workflow_rejected"
)

// NotifyEvents lists every notification event, in the order the README
// documents them.
func NotifyEvents() []NotifyEvent {
	return []NotifyEvent{NotifyRunBlocked, NotifyBudgetExceeded, NotifyDailyCap, NotifyMaxRuns, NotifyRetriesExhausted, NotifyWorkflowRejected}
}

// Notification is one occurrence of an event an operator wants to hear
// about, on the bus (NotifyEvents) and given to notify.command.
type Notification struct {
	// ID names the occurrence and is stable across restarts (it is built
	// from what happened, never from when it was noticed): the same
	// occurrence published twice is delivered once.
	ID    string      `json:"id"`
	Event NotifyEvent `json:"event"`
	At    time.Time   `json:"at"`
	// The issue and run it is about, when it is about one.
	IssueID    string `json:"issue_id,omitempty"`
	Identifier string `json:"issue_identifier,omitempty"`
	State      string `json:"state,omitempty"`
	RunID      string `json:"run_id,omitempty"`
	// Reason is the one-line account (the park's reason, the reload's
	// error).
	Reason string `json:"reason"`
	// Cap, Limit and Spent name the cap that was reached and the amounts
	// (budget and max-runs events).
	Cap   string  `json:"cap,omitempty"`
	Limit float64 `json:"limit,omitempty"`
	Spent float64 `json:"spent,omitempty"`
	// Day is the calendar day of a daily cap (YYYY-MM-DD).
	Day string `json:"day,omitempty"`
}
