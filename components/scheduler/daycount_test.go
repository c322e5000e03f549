package scheduler

import (
	"strconv"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// turnEvent is a stored turn_finished of $5 and 100 input tokens.
func turnEvent(t *testing.T, w *world, runID string, issue bus.Issue, turn int) bus.RunEvent {
	t.Helper()
	usd := 5.0
	ev := bus.RunEvent{RunID: runID, Event: bus.RunTurnFinished, At: time.Now(), Issue: issue.Ref(), Turn: turn, Agent: bus.AgentClaude,
		Usage: &bus.Usage{InputTokens: 100}, CostUSD: &usd, BudgetUSD: &usd}
	if err := runlog.Record(t.Context(), w.b, ev, ""); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestUnseenEarlierTurnCounted: turns 1 and 2 of an adopted run ended
// while the scheduler was restarting (the runner kept the run), turn 3 is
// seen live: the run's end reads back every stored turn, so the day has
// all three, once.
func TestUnseenEarlierTurnCounted(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		issue := iss("U-1", 1, "", "In Progress")
		var evs []bus.RunEvent
		for turn := 1; turn <= 3; turn++ {
			evs = append(evs, turnEvent(t, w, "U-1-run", issue, turn))
		}
		a.running["U-1"] = &running{runID: "U-1-run", issue: issue}
		a.onRunEvent(t.Context(), evs[2])
		total := 15.0
		end := bus.RunEvent{RunID: "U-1-run", Event: bus.RunFinished, At: time.Now(), Issue: issue.Ref(), Status: bus.RunSucceeded, Turn: 3,
			Agent: bus.AgentClaude, Usage: &bus.Usage{InputTokens: 300}, BudgetUSD: &total}
		a.onRunEvent(t.Context(), end)
		if day := storedDay(t, w.b, "2000-01-01"); day.USD != 15 || day.Tokens != 300 || day.Runs != 1 {
			t.Errorf("day %+v: want the three turns' $15 and 300 tokens, one run", day)
		}
		again := newTestActor(w) // the end handled again after a restart, by an adopting scheduler
		again.running["U-1"] = &running{runID: "U-1-run", issue: issue}
		again.onRunEvent(t.Context(), end)
		if day := storedDay(t, w.b, "2000-01-01"); day.USD != 15 || day.Runs != 1 {
			t.Errorf("day %+v after the end was handled again: want $15, one run", day)
		}
	})
}

// TestBusyDayKeepsInFlightTurns: more ends than DaySpend.Counted keeps
// come and go while a run is in flight; its turn counted live early on is
// still known at its end, which reads back every turn: not counted twice.
func TestBusyDayKeepsInFlightTurns(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		w := newBubbleWorld(t, t.TempDir())
		a := newTestActor(w)
		long := iss("B-1", 1, "", "In Progress")
		a.running["B-1"] = &running{runID: "B-1-run", issue: long}
		a.onRunEvent(t.Context(), turnEvent(t, w, "B-1-run", long, 1))
		n := bus.MaxDayCounted + 10
		for i := range n {
			id := "O-" + strconv.Itoa(i)
			other := iss(id, 1, "", "In Progress")
			a.running[id] = &running{runID: id + "-run", issue: other}
			a.onRunEvent(t.Context(), turnEvent(t, w, id+"-run", other, 1))
			a.onRunEvent(t.Context(), bus.RunEvent{RunID: id + "-run", Event: bus.RunFinished, At: time.Now(), Issue: other.Ref(), Status: bus.RunSucceeded, Turn: 1})
		}
		a.onRunEvent(t.Context(), bus.RunEvent{RunID: "B-1-run", Event: bus.RunFinished, At: time.Now(), Issue: long.Ref(), Status: bus.RunSucceeded, Turn: 1})
		day := storedDay(t, w.b, "2000-01-01")
		if want := 5 * float64(n+1); day.USD != want || day.Runs != n+1 {
			t.Errorf("day $%v, %d runs: want $%v, %d runs (every turn once)", day.USD, day.Runs, want, n+1)
		}
		if len(day.Counted) > bus.MaxDayCounted {
			t.Errorf("%d ids counted: want at most %d", len(day.Counted), bus.MaxDayCounted)
		}
	})
}
