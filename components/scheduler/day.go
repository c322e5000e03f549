package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// The fleet's daily spend (budget.per_day). The scheduler keeps what every
// run spent per calendar day — the day taken in budget.per_day.time_zone —
// in KV symphony_state (bus.DaySpends, day.<YYYY-MM-DD>), whether or not a
// daily cap is set (the overview charts it): USD and tokens grow at each
// turn_finished (the turn's own share, RunEvent.BudgetUSD), Runs and
// Outcomes at each run_finished, each on the day of the event's own time,
// so an event handled again after a restart lands on the same day, where
// DaySpend.Counted (bounded) keeps it from being added twice. A run's end
// reads back every stored turn of the run from the RUNS stream, so a turn
// not seen live (a restart, a lost message) still counts. Days older than bus.DaySpendKeepDays are
// deleted at start-up and at each rollover. Every change is a
// compare-and-set.
//
// While today's spend has reached a daily cap nothing new starts: no
// dispatch, no retry, no continuation (retries keep their place and fire
// after the rollover); DaySpend.Capped says so, set once. When a turn's
// end takes the day over a cap, every run in flight is stopped through the
// cancel path with status budget_exceeded and parked with the cap and the
// day (BlockedEntry.Cap, Limit, Day). Every dispatch carries the day's caps
// and spend (bus.Dispatch.DayBudget), so a run alone is bounded by the
// day's remainder in the agent runner. At midnight in the zone (dayT,
// re-armed at each configuration, since the zone can change) the parks of
// ended days are released and dispatch resumes.

// loc is the zone of the daily caps' calendar day (UTC when the
// configuration's cannot be loaded, which the loader has ruled out),
// loaded once per configuration: a load reads the zone database.
func (a *actor) loc() *time.Location {
	name := a.cfg.Config.Budget.PerDay.TimeZone
	if a.zone != nil && a.zoneName == name {
		return a.zone
	}
	loc, err := a.cfg.Config.Budget.PerDay.Location()
	if err != nil {
		a.log.Error("budget.per_day.time_zone cannot be loaded; days are taken in UTC", "err", err)
		loc = time.UTC
	}
	a.zone, a.zoneName = loc, name
	return loc
}

// dayOf is the calendar day of t in the daily caps' zone.
func (a *actor) dayOf(t time.Time) string { return t.In(a.loc()).Format(bus.DayLayout) }

// today is the current calendar day in the daily caps' zone.
func (a *actor) today() string { return a.dayOf(time.Now()) }

// readDay is the day's stored spend and its revision (0: none stored).
func (a *actor) readDay(ctx context.Context, day string) (bus.DaySpend, uint64, error) {
	k, err := bus.DaySpends.Key(day)
	if err != nil {
		return bus.DaySpend{}, 0, err
	}
	e, err := bus.Get(ctx, a.b, k)
	if errors.Is(err, bus.ErrKeyNotFound) {
		return bus.DaySpend{Day: day}, 0, nil
	}
	if err != nil {
		return bus.DaySpend{}, 0, fmt.Errorf("read the spend of %s: %w", day, err)
	}
	return e.Value, e.Revision, nil
}

// updateDay folds change into the day's stored spend with a
// compare-and-set (change returns false to leave it), and keeps today's
// copy (a.day) in step.
func (a *actor) updateDay(ctx context.Context, day string, change func(*bus.DaySpend) bool) (bus.DaySpend, error) {
	k, err := bus.DaySpends.Key(day)
	if err != nil {
		return bus.DaySpend{}, err
	}
	sp, err := foldKey(ctx, a.b, k, "the spend of "+day, bus.DaySpend{Day: day}, func(sp *bus.DaySpend) bool {
		if !change(sp) {
			return false
		}
		sp.Day, sp.Updated = day, time.Now().UTC()
		if sp.TimeZone == "" {
			sp.TimeZone = a.loc().String()
		}
		return true
	})
	if err != nil {
		return bus.DaySpend{}, err
	}
	a.keepDay(sp)
	return sp, nil
}

// keepDay keeps the copy of today's spend the checks read.
func (a *actor) keepDay(sp bus.DaySpend) {
	if sp.Day == a.today() {
		a.day = sp
	}
}

// todaySpend is today's spend: the copy kept, else the stored one (a new
// day, or the first check). A store that cannot be read counts as nothing
// spent, logged: a daily cap is not worth not running.
func (a *actor) todaySpend(ctx context.Context) bus.DaySpend {
	today := a.today()
	if a.day.Day == today {
		return a.day
	}
	sp, _, err := a.readDay(ctx, today)
	if err != nil {
		a.log.Error("today's spend cannot be read; the daily caps see none", "err", err)
		return bus.DaySpend{Day: today}
	}
	a.day = sp
	return sp
}

// countOnce adds id to the day's counted events, bounded (trimCounted):
// false when it was counted already.
func (a *actor) countOnce(sp *bus.DaySpend, id string) bool {
	if slices.Contains(sp.Counted, id) {
		return false
	}
	sp.Counted = a.trimCounted(append(sp.Counted, id))
	return true
}

// trimCounted bounds the day's counted ids to bus.MaxDayCounted, dropping
// the oldest ids of runs not in flight first: a run's end reads back every
// stored turn of the run (countDayRun), so an id of a run in flight that
// fell out would have its turn counted twice; an ended run's id matters
// only if its end is handled again (a restart right after it). Only when
// the runs in flight alone have more turn ids than the bound do their
// oldest go too.
func (a *actor) trimCounted(ids []string) []string {
	over := len(ids) - bus.MaxDayCounted
	if over <= 0 {
		return ids
	}
	live := make(map[string]bool, len(a.running))
	for _, r := range a.running {
		live[r.runID] = true
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		run := id
		if i := strings.LastIndexByte(id, '/'); i >= 0 {
			run = id[:i]
		}
		if over > 0 && !live[run] {
			over--
			continue
		}
		out = append(out, id)
	}
	if n := len(out); n > bus.MaxDayCounted {
		out = out[n-bus.MaxDayCounted:]
	}
	return slices.Clone(out)
}

// countDayTurn adds a turn's usage and cost to the day of its end, once.
// A turn that reported nothing (killed before its result) adds nothing.
func (a *actor) countDayTurn(ctx context.Context, ev bus.RunEvent) {
	usd := ev.BudgetUSD
	if usd == nil {
		usd = ev.CostUSD
	}
	var tokens int64
	if ev.Usage != nil {
		kind := ev.Agent
		if kind == "" {
			kind = a.cfg.Config.Agent.Kind
		}
		tokens = ev.Usage.BudgetTokens(kind)
	}
	if usd == nil && tokens <= 0 {
		return
	}
	id := ev.RunID + "/" + strconv.Itoa(ev.Turn)
	_, err := a.updateDay(ctx, a.dayOf(ev.At), func(sp *bus.DaySpend) bool {
		if !a.countOnce(sp, id) {
			return false
		}
		sp.Tokens += tokens
		if usd != nil {
			sp.USD += *usd
		} else {
			sp.Unpriced++
		}
		return true
	})
	if err != nil {
		a.log.Error("turn's spend not added to the day's (budget.per_day)", "err", err, "run_id", ev.RunID, "turn", ev.Turn,
			"issue_id", ev.Issue.ID, "issue_identifier", ev.Issue.Identifier)
	}
}

// countDayRun adds a run's end to the day it ended, once. Every stored
// turn of the run is read back first (countDayTurn keeps each once): a
// turn not seen live (a restart, an adopted run, a message the
// subscription lost) counts as well, whichever turn it was. Once the end
// is counted, the run's turn ids on that day are dropped from Counted
// (the run's id stands for them: an end already counted reads nothing
// back), which keeps room for the runs in flight.
func (a *actor) countDayRun(ctx context.Context, ev bus.RunEvent) {
	day := a.dayOf(ev.At)
	if sp, _, err := a.readDay(ctx, day); err != nil || !slices.Contains(sp.Counted, ev.RunID) {
		for m, err := range bus.History(ctx, a.b, bus.RunEvents, ev.RunID, string(bus.RunTurnFinished)) {
			if err == nil && m.Data.RunID == ev.RunID {
				a.countDayTurn(ctx, m.Data)
			}
		}
	}
	prefix := ev.RunID + "/"
	_, err := a.updateDay(ctx, day, func(sp *bus.DaySpend) bool {
		if !a.countOnce(sp, ev.RunID) {
			return false
		}
		sp.Counted = slices.DeleteFunc(sp.Counted, func(id string) bool { return strings.HasPrefix(id, prefix) })
		sp.Runs++
		if sp.Outcomes == nil {
			sp.Outcomes = map[bus.RunStatus]int{}
		}
		sp.Outcomes[ev.Status]++
		return true
	})
	if err != nil {
		a.log.Error("run's end not added to the day's outcomes", "err", err, "run_id", ev.RunID,
			"issue_id", ev.Issue.ID, "issue_identifier", ev.Issue.Identifier)
	}
}

// overDay says which daily cap the day's spend reached, with the amounts;
// nil when none.
func overDay(caps bus.BudgetCaps, sp bus.DaySpend) *bus.DayCapped {
	switch {
	case caps.Tokens > 0 && sp.Tokens >= caps.Tokens:
		return &bus.DayCapped{Cap: bus.CapDayTokens, Limit: float64(caps.Tokens), Spent: float64(sp.Tokens)}
	case caps.USD > 0 && caps.USD-sp.USD < 1e-6:
		return &bus.DayCapped{Cap: bus.CapDayUSD, Limit: caps.USD, Spent: sp.USD}
	}
	return nil
}

// dayCapText is the account of a reached daily cap.
func dayCapText(day string, c bus.DayCapped) string {
	if c.Cap == bus.CapDayTokens {
		return fmt.Sprintf("budget.per_day.tokens reached: the fleet's turns on %s used %d tokens, the cap is %d", day, int64(c.Spent), int64(c.Limit))
	}
	return fmt.Sprintf("budget.per_day.usd reached: the fleet's turns on %s cost $%s, the cap is $%s", day, usdText(c.Spent), usdText(c.Limit))
}

// dayHeld checks today's spend against the daily caps: true while one is
// reached (nothing new starts). The first check that finds a cap reached
// stores DaySpend.Capped, logs (once per day and cap) and notifies; one
// that finds it no longer reached (a reload raised the cap) clears it.
func (a *actor) dayHeld(ctx context.Context) bool {
	sp := a.todaySpend(ctx)
	over := overDay(a.cfg.Config.Budget.PerDay.BudgetCaps, sp)
	switch {
	case over == nil && sp.Capped != nil:
		a.heldDay = ""
		if _, err := a.updateDay(ctx, sp.Day, func(d *bus.DaySpend) bool {
			d.Capped = nil
			return true
		}); err != nil {
			a.log.Error("clear the daily cap's mark", "err", err)
		}
		a.log.Info("daily cap no longer reached (the configuration changed): dispatch resumes", "day", sp.Day)
		return false
	case over == nil:
		a.heldDay = ""
		return false
	}
	a.heldDay = sp.Day
	if sp.Capped == nil {
		over.At = time.Now().UTC()
		if _, err := a.updateDay(ctx, sp.Day, func(d *bus.DaySpend) bool {
			if d.Capped != nil {
				return false
			}
			d.Capped = over
			return true
		}); err != nil {
			a.log.Error("mark the daily cap reached", "err", err)
		}
	}
	if key := sp.Day + "/" + over.Cap; a.dayLogged != key {
		a.dayLogged = key
		why := dayCapText(sp.Day, *over)
		a.log.Warn("daily cap reached: nothing new starts until the day rolls over or the cap is raised", "day", sp.Day, "reason", why)
		a.notify(bus.Notification{ID: string(bus.NotifyDailyCap) + "/" + sp.Day + "/" + over.Cap, Event: bus.NotifyDailyCap, At: time.Now().UTC(),
			Reason: why, Cap: over.Cap, Limit: over.Limit, Spent: over.Spent, Day: sp.Day})
	}
	return true
}

// heldToday reports whether the last check found today's spend at a daily
// cap: the retry timer is not armed meanwhile (the rollover re-arms it).
func (a *actor) heldToday() bool {
	return a.heldDay != "" && a.heldDay == a.today()
}

// dayBudget is what a dispatch carries of the daily caps (nil without).
func (a *actor) dayBudget(ctx context.Context) *bus.DayBudgetLeft {
	caps := a.cfg.Config.Budget.PerDay.BudgetCaps
	if !caps.Capped() {
		return nil
	}
	sp := a.todaySpend(ctx)
	return &bus.DayBudgetLeft{Day: sp.Day, Caps: caps, USD: sp.USD, Tokens: sp.Tokens}
}

// stopAtDayCap stops every run in flight once a turn's end took today's
// spend over a daily cap: each ends budget_exceeded through the cancel
// path and is parked with the cap and the day when its end comes.
func (a *actor) stopAtDayCap(ctx context.Context) {
	if !a.dayHeld(ctx) {
		return
	}
	sp := a.todaySpend(ctx)
	over := overDay(a.cfg.Config.Budget.PerDay.BudgetCaps, sp)
	if over == nil {
		return
	}
	why := dayCapText(sp.Day, *over) + "; the run was stopped"
	for _, r := range a.running {
		if r.cancelSent {
			continue
		}
		r.budget = &bus.BlockedEntry{Cap: over.Cap, Limit: over.Limit, Day: sp.Day}
		a.cancel(ctx, r, bus.RunBudgetExceeded, why)
	}
}

// armDayTimer times the rollover: the next midnight in the zone.
func (a *actor) armDayTimer() {
	now := time.Now().In(a.loc())
	y, m, d := now.Date()
	next := time.Date(y, m, d+1, 0, 0, 0, 0, now.Location())
	a.dayT.Reset(max(next.Sub(now), 0))
}

// rollover starts a new day: the parks of ended days are released, old
// days pruned, and the retries held by the cap re-armed.
func (a *actor) rollover(ctx context.Context) {
	a.heldDay = ""
	a.releaseEndedDays(ctx)
	a.pruneDays(ctx)
	a.queueRefresh()
	a.armRetryTimer()
	a.armDayTimer()
	a.log.Info("day rolled over: the daily caps start afresh", "day", a.today())
}

// releaseEndedDays releases the parks of daily caps whose day has ended.
func (a *actor) releaseEndedDays(ctx context.Context) {
	today := a.today()
	for id, bl := range a.blocked {
		if bl.Day != "" && bl.Day < today {
			a.releasePark(ctx, id)
			a.log.Info("park by a daily cap released: its day has ended", "issue_id", id, "issue_identifier", bl.Identifier, "day", bl.Day)
		}
	}
}

// pruneDays deletes the spend of days older than bus.DaySpendKeepDays.
func (a *actor) pruneDays(ctx context.Context) {
	days, err := bus.All(ctx, a.b, bus.DaySpends)
	if err != nil {
		a.log.Warn("list the days' spend to prune them", "err", err)
		return
	}
	oldest := time.Now().In(a.loc()).AddDate(0, 0, -bus.DaySpendKeepDays).Format(bus.DayLayout)
	for day := range days {
		if day >= oldest {
			continue
		}
		if k, err := bus.DaySpends.Key(day); err == nil {
			if err := bus.Delete(ctx, a.b, k); err != nil {
				a.log.Warn("prune a day's spend", "day", day, "err", err)
			}
		}
	}
}
