package ui

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// Spend control as the dashboard sees it (#23): the fleet's spend per
// calendar day (KV symphony_state day.<YYYY-MM-DD>), each issue's
// lifetime spend (spend.<issue_id>) and its runs while it stays active
// (runs.<issue_id>), the caps in force (the config snapshot), and the
// recent notifications (the NOTIFY stream). Everything here is read from
// KV values another component wrote, so each value is taken as it may
// be: a negative or non-finite amount counts as zero, a key that names no
// day is ignored, and a day without a value is a day without spend.

// chartDays is how many days the overview's chart draws; maxSeriesDays
// bounds /api/v1/spend?days= (what the scheduler keeps).
const (
	chartDays     = 30
	maxSeriesDays = bus.DaySpendKeepDays
)

// maxNotes is how many notifications the model keeps (the newest);
// shownNotes how many the overview lists.
const (
	maxNotes   = 20
	shownNotes = 8
)

// spendState is the model's share of spend control, mirrored from KV and
// the NOTIFY stream. Only the Model's methods touch it, under its lock.
type spendState struct {
	issues map[string]bus.IssueSpend // by issue id
	counts map[string]bus.RunCount   // by issue id
	days   map[string]bus.DaySpend   // by day (the key's YYYY-MM-DD)
	// notes are the latest notifications, oldest first, at most maxNotes,
	// each id once.
	notes []bus.Notification
	// notify is the notifier's status (nil: it has written none).
	notify *NotifyView
	// dropped counts the notifications the scheduler dropped.
	dropped int64
	// loc is the daily caps' zone of the config in force, loaded once per
	// config (zone its name, zoneErr why it could not be loaded: UTC then).
	loc     *time.Location
	zone    string
	zoneErr string
}

// setZone loads the daily caps' zone of c (nil: no config, UTC).
func (s *spendState) setZone(c *bus.ConfigSnapshot) {
	s.loc, s.zone, s.zoneErr = time.UTC, bus.DefaultBudgetTimeZone, ""
	if c == nil {
		return
	}
	d := c.Config.Budget.PerDay
	l, err := d.Location()
	if err != nil {
		s.zoneErr = err.Error()
		return
	}
	s.loc, s.zone = l, cmp.Or(d.TimeZone, bus.DefaultBudgetTimeZone)
}

func newSpendState() spendState {
	return spendState{issues: map[string]bus.IssueSpend{}, counts: map[string]bus.RunCount{}, days: map[string]bus.DaySpend{},
		loc: time.UTC, zone: bus.DefaultBudgetTimeZone}
}

// SetIssueSpend mirrors an issue's lifetime spend (nil deletes).
func (m *Model) SetIssueSpend(id string, v *bus.IssueSpend) { setEntry(m, m.spend.issues, id, v) }

// SetRunCount mirrors an issue's runs while active (nil deletes).
func (m *Model) SetRunCount(id string, v *bus.RunCount) { setEntry(m, m.spend.counts, id, v) }

// SetDaySpend mirrors one day of the fleet's spend (nil deletes); day is
// the key's YYYY-MM-DD.
func (m *Model) SetDaySpend(day string, v *bus.DaySpend) { setEntry(m, m.spend.days, day, v) }

// AddNotification keeps a notification among the latest (an id already
// kept is not added again: the live subscription and the stored read
// that starts beside it may both deliver one).
func (m *Model) AddNotification(n bus.Notification) {
	m.update(func() {
		if slices.ContainsFunc(m.spend.notes, func(x bus.Notification) bool { return n.ID != "" && x.ID == n.ID }) {
			return
		}
		m.spend.notes = append(m.spend.notes, n)
		slices.SortStableFunc(m.spend.notes, func(a, b bus.Notification) int { return a.At.Compare(b.At) })
		if over := len(m.spend.notes) - maxNotes; over > 0 {
			m.spend.notes = slices.Delete(m.spend.notes, 0, over)
		}
	})
}

// DayPoint is one calendar day of the fleet's spend, as drawn and as the
// API gives it. A day the store holds nothing for is all zero with Known
// false.
type DayPoint struct {
	Day      string                `json:"day"`
	USD      float64               `json:"usd"`
	Unpriced int                   `json:"unpriced"`
	Tokens   int64                 `json:"tokens"`
	Runs     int                   `json:"runs"`
	Outcomes map[bus.RunStatus]int `json:"outcomes"`
	// Capped names the daily cap the fleet reached that day ("" when none).
	Capped string `json:"capped,omitempty"`
	Known  bool   `json:"recorded"`
}

// SpendView is spend control at one moment: today against the daily caps,
// the caps of the other scopes, the last days, and the latest
// notifications.
type SpendView struct {
	// Zone is budget.per_day.time_zone (UTC by default); ZoneErr says why
	// it could not be loaded (UTC is used then).
	Zone    string
	ZoneErr string
	// Today is the current calendar day in Zone.
	Today DayPoint
	// DayCaps, IssueCaps and RunCaps are the caps in force; MaxRuns is
	// agent.max_runs_per_issue.
	DayCaps   bus.BudgetCaps
	IssueCaps bus.IssueBudget
	RunCaps   bus.BudgetCaps
	MaxRuns   int
	// RemainingUSD and RemainingTokens are what today leaves under each
	// daily cap (nil: no such cap), never below zero.
	RemainingUSD    *float64
	RemainingTokens *int64
	// Capped is today's daily-cap record, when one was reached; Until is
	// the next midnight in Zone, when the day rolls over.
	Capped *bus.DayCapped
	Until  time.Time
	// Days are the chartDays days ending today, oldest first.
	Days []DayPoint
	// Notes are the latest notifications, newest first.
	Notes []bus.Notification
	// Notify is the notifier's status (nil: it has written none). Shared,
	// never changed: a new status replaces it.
	Notify *NotifyView
	// NotesDropped counts the notifications the scheduler dropped before
	// storing them (none were delivered or listed).
	NotesDropped int64
	// Parked are the blocked issues (View.Blocked's order) with their
	// spend.
	Parked []ParkedView
}

// spendView builds the SpendView at now from the state and the config in
// force. Called under the model's lock.
func (m *Model) spendView(now time.Time) SpendView {
	sv := SpendView{Zone: m.spend.zone, ZoneErr: m.spend.zoneErr, Notify: m.spend.notify, NotesDropped: m.spend.dropped}
	loc := m.spend.loc
	if c := m.config; c != nil {
		b := c.Config.Budget
		sv.DayCaps, sv.IssueCaps, sv.RunCaps, sv.MaxRuns = b.PerDay.BudgetCaps, b.PerIssue, b.PerRun, c.Config.Agent.MaxRunsPerIssue
	}
	sv.Days = m.daySeries(now, loc, chartDays)
	sv.Today = sv.Days[len(sv.Days)-1]
	local := now.In(loc)
	sv.Until = time.Date(local.Year(), local.Month(), local.Day()+1, 0, 0, 0, 0, loc)
	if d, ok := m.spend.days[sv.Today.Day]; ok && d.Capped != nil {
		c := *d.Capped
		sv.Capped = &c
	}
	if sv.DayCaps.USD > 0 {
		r := max(0, sv.DayCaps.USD-sv.Today.USD)
		sv.RemainingUSD = &r
	}
	if sv.DayCaps.Tokens > 0 {
		r := max(0, sv.DayCaps.Tokens-sv.Today.Tokens)
		sv.RemainingTokens = &r
	}
	for i := len(m.spend.notes) - 1; i >= 0 && len(sv.Notes) < shownNotes; i-- {
		sv.Notes = append(sv.Notes, m.spend.notes[i])
	}
	return sv
}

// daySeries is the n calendar days in loc ending with now's, oldest
// first, each from its KV value or zero.
func (m *Model) daySeries(now time.Time, loc *time.Location, n int) []DayPoint {
	local := now.In(loc)
	out := make([]DayPoint, n)
	for i := range n {
		day := time.Date(local.Year(), local.Month(), local.Day()-(n-1-i), 12, 0, 0, 0, loc).Format(bus.DayLayout)
		p := DayPoint{Day: day, Outcomes: map[bus.RunStatus]int{}}
		if d, ok := m.spend.days[day]; ok {
			p = dayPoint(day, d)
		}
		out[i] = p
	}
	return out
}

// dayPoint is a stored day made safe to draw: amounts that cannot be
// (negative, not finite) count as zero, and so do outcome counts.
func dayPoint(day string, d bus.DaySpend) DayPoint {
	p := DayPoint{Day: day, USD: finite(d.USD), Unpriced: max(0, d.Unpriced), Tokens: max(0, d.Tokens), Runs: max(0, d.Runs),
		Outcomes: make(map[bus.RunStatus]int, len(d.Outcomes)), Known: true}
	for st, n := range d.Outcomes {
		if n > 0 && st != "" {
			p.Outcomes[bus.RunStatus(clip(string(st), 40))] = n
		}
	}
	if d.Capped != nil {
		p.Capped = cmp.Or(clip(d.Capped.Cap, 60), "a daily cap")
	}
	return p
}

// finite is x when it is a finite amount of at least zero, else 0.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0
	}
	return x
}

// DaySeries is the fleet's spend over the n days ending today (1..62),
// oldest first, in the zone of the daily caps.
func (m *Model) DaySeries(now time.Time, n int) (zone string, days []DayPoint) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.spend.zone, m.daySeries(now, m.spend.loc, max(1, min(n, maxSeriesDays)))
}

// IssueSpendView is one issue's lifetime spend against budget.per_issue
// and its runs while active against agent.max_runs_per_issue.
type IssueSpendView struct {
	Spent bus.IssueSpend
	// Known is false when the store holds no spend for the issue (it never
	// ran since spend was counted).
	Known bool
	Caps  bus.IssueBudget
	// RunsActive is the count agent.max_runs_per_issue bounds (0 when the
	// scheduler holds no count: the issue is not held); MaxRuns the cap.
	RunsActive int
	MaxRuns    int
}

// issueSpend is the IssueSpendView of issue id. Called under the lock.
func (m *Model) issueSpend(id string) IssueSpendView {
	v := IssueSpendView{}
	if sp, ok := m.spend.issues[id]; ok {
		v.Spent, v.Known = sp, true
		v.Spent.USD, v.Spent.Tokens = finite(sp.USD), max(0, sp.Tokens)
		v.Spent.Runs, v.Spent.Turns, v.Spent.Unpriced = max(0, sp.Runs), max(0, sp.Turns), max(0, sp.Unpriced)
	}
	if c, ok := m.spend.counts[id]; ok {
		v.RunsActive = max(0, c.Runs)
	}
	if c := m.config; c != nil {
		v.Caps, v.MaxRuns = c.Config.Budget.PerIssue, c.Config.Agent.MaxRunsPerIssue
	}
	return v
}

// issueIDBySpend finds an issue id by identifier among the spend records
// (an issue known only by what it spent: its runs pruned, not polled).
func (m *Model) issueIDBySpend(identifier string) string {
	for id, sp := range m.spend.issues {
		if sp.Identifier == identifier {
			return id
		}
	}
	return ""
}

// Remaining is what a cap leaves (nil when the cap is not set).
type Remaining struct {
	USD    *float64 `json:"usd,omitempty"`
	Tokens *int64   `json:"tokens,omitempty"`
	Runs   *int     `json:"runs,omitempty"`
	Turns  *int     `json:"turns,omitempty"`
}

// Remaining is what the issue's lifetime caps leave, never below zero.
func (v IssueSpendView) Remaining() Remaining {
	var r Remaining
	if v.Caps.USD > 0 {
		x := max(0, v.Caps.USD-v.Spent.USD)
		r.USD = &x
	}
	if v.Caps.Tokens > 0 {
		x := max(0, v.Caps.Tokens-v.Spent.Tokens)
		r.Tokens = &x
	}
	if v.Caps.Runs > 0 {
		x := max(0, v.Caps.Runs-v.Spent.Runs)
		r.Runs = &x
	}
	if v.Caps.Turns > 0 {
		x := max(0, v.Caps.Turns-v.Spent.Turns)
		r.Turns = &x
	}
	return r
}

// ParkedView is a blocked issue with what it spent: the overview's and
// the API's parked list.
type ParkedView struct {
	bus.BlockedEntry
	Spend IssueSpendView
}

// parked lists the blocked entries with their issues' spend, oldest park
// first. Called under the lock.
func (m *Model) parked(blocked []bus.BlockedEntry) []ParkedView {
	out := make([]ParkedView, 0, len(blocked))
	for _, b := range blocked {
		out = append(out, ParkedView{BlockedEntry: b, Spend: m.issueSpend(b.IssueID)})
	}
	return out
}

// heldSpends are the lifetime spends of the issues running or parked now
// (the metrics' bounded set: at most limit, the most recently updated
// first), by identifier.
func (m *Model) heldSpends(limit int) []bus.IssueSpend {
	m.mu.RLock()
	defer m.mu.RUnlock()
	held := map[string]bool{}
	for id := range m.blocked {
		held[id] = true
	}
	for _, r := range m.runs {
		if r.Status == bus.RunRunning && r.Issue.ID != "" {
			held[r.Issue.ID] = true
		}
	}
	var out []bus.IssueSpend
	for id := range held {
		sp, ok := m.spend.issues[id]
		if !ok {
			continue
		}
		sp.IssueID = id
		if sp.Identifier == "" {
			sp.Identifier = m.identifierOf(id)
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b bus.IssueSpend) int {
		return cmp.Or(b.Updated.Compare(a.Updated), strings.Compare(a.IssueID, b.IssueID))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// identifierOf names issue id from what the model holds ("" when nothing
// does).
func (m *Model) identifierOf(id string) string {
	if b, ok := m.blocked[id]; ok {
		return b.Identifier
	}
	for _, r := range m.runs {
		if r.Issue.ID == id {
			return r.Issue.Identifier
		}
	}
	return ""
}

// openNotifications subscribes to the notifications, then reads the ones
// the NOTIFY stream holds into the model (the latest maxNotes): an
// operator without notify.command still sees what happened before the
// dashboard started. Subscribing first loses none published during the
// read; the model keeps each id once. A failed read is logged: the
// stored notifications are a convenience, the live ones still come.
func (f *follower) openNotifications(ctx context.Context, b *bus.Client) (*bus.Subscription[bus.Notification], error) {
	sub, err := bus.Subscribe(ctx, b, bus.Notifications)
	if err != nil {
		return nil, err
	}
	ring := make([]bus.Notification, 0, maxNotes)
	for msg, err := range bus.History(ctx, b, bus.Notifications) {
		if err != nil {
			if msg.Subject != "" {
				// One message that cannot be read; the rest can.
				f.s.log.Warn("skipped an unreadable stored notification", "subject", msg.Subject, "err", err)
				continue
			}
			f.s.log.Warn("read stored notifications", "err", err)
			break
		}
		if len(ring) == maxNotes {
			ring = slices.Delete(ring, 0, 1)
		}
		ring = append(ring, msg.Data)
	}
	for _, n := range ring {
		f.s.model.AddNotification(n)
	}
	return sub, nil
}

func (f *follower) onIssueSpend(e bus.SetEvent[bus.IssueSpend]) {
	applySet(e, f.s.model.SetIssueSpend, f.ready)
}

func (f *follower) onRunCount(e bus.SetEvent[bus.RunCount]) {
	applySet(e, f.s.model.SetRunCount, f.ready)
}

func (f *follower) onDaySpend(e bus.SetEvent[bus.DaySpend]) {
	applySet(e, f.s.model.SetDaySpend, f.ready)
}

func (f *follower) onNotification(m bus.Message[bus.Notification]) {
	f.s.model.AddNotification(m.Data)
}
