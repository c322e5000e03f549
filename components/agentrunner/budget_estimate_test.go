package agentrunner

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// streamHangRun runs the stream-hang fake claude (it streams 430100
// tokens in one message, then hangs) and returns its run's end and its
// turn_finished.
func streamHangRun(t *testing.T, mutate func(*bus.Config)) (end, fin bus.RunEvent) {
	t.Helper()
	h := newHarness(t, "stream-hang", mutate)
	h.dispatch("run-hang")
	end, all := h.finished()
	for _, e := range all {
		if e.Event == bus.RunTurnFinished {
			fin = e
		}
	}
	if fin.Event == "" {
		t.Fatalf("no turn_finished: %+v", all)
	}
	return end, fin
}

// wantStreamed is what stream-hang's message reported: its two lines
// count once, with the higher output count.
var wantStreamed = bus.Usage{InputTokens: 400000, OutputTokens: 30000, CacheReadInputTokens: 100}

// TestTimedOutClaudeTurnIsChargedItsBudget: a claude turn killed by its
// timeout before its result is charged the tokens its messages streamed
// and, without a price for its model, the whole --max-budget-usd it was
// given, on its turn_finished and the run's end, marked as an estimate
// and named in the run's error; before, it counted nothing.
func TestTimedOutClaudeTurnIsChargedItsBudget(t *testing.T) {
	end, fin := streamHangRun(t, func(c *bus.Config) {
		c.Budget.PerRun = bus.BudgetCaps{USD: 2}
		c.Claude.TurnTimeoutMS = 1500
	})
	if end.Status != bus.RunTimedOut {
		t.Fatalf("end %s %q", end.Status, end.Error)
	}
	for _, e := range []bus.RunEvent{fin, end} {
		if e.Usage == nil || *e.Usage != wantStreamed {
			t.Errorf("%s usage %+v, want the streamed %+v", e.Event, e.Usage, wantStreamed)
		}
		if e.BudgetUSD == nil || *e.BudgetUSD != 2 || !e.BudgetEstimated || e.CostUSD != nil {
			t.Errorf("%s budget_usd %v estimated %v cost %v: want the $2 --max-budget-usd charged, marked estimated, no reported cost", e.Event, e.BudgetUSD, e.BudgetEstimated, e.CostUSD)
		}
	}
	if !strings.Contains(end.Error, "charged the 430100 tokens") || !strings.Contains(end.Error, "$2 of --max-budget-usd") {
		t.Errorf("the error must name the charge: %q", end.Error)
	}
}

// TestTimedOutClaudeTurnIsPriced: with a price for the model claude's init
// line named, the killed turn's streamed tokens are priced instead.
func TestTimedOutClaudeTurnIsPriced(t *testing.T) {
	end, fin := streamHangRun(t, func(c *bus.Config) {
		c.Budget.PerRun = bus.BudgetCaps{USD: 50}
		c.Claude.TurnTimeoutMS = 1500
		c.Pricing = map[string]bus.ModelPrice{"fake": {Input: 1, CachedInput: 0.5, Output: 10}}
	})
	// 400000 input at $1/M, 100 cache reads at $0.5/M, 30000 output at $10/M.
	want := 0.4 + 0.00005 + 0.3
	for _, e := range []bus.RunEvent{fin, end} {
		if e.BudgetUSD == nil || *e.BudgetUSD < want-1e-9 || *e.BudgetUSD > want+1e-9 || !e.BudgetEstimated {
			t.Errorf("%s budget_usd %v estimated %v, want %v", e.Event, e.BudgetUSD, e.BudgetEstimated, want)
		}
	}
	if !strings.Contains(end.Error, "at pricing.fake") {
		t.Errorf("error %q", end.Error)
	}
}

// TestNoUSDCapNoUSDCharge: without a USD cap or a price, a killed turn is
// charged its streamed tokens only.
func TestNoUSDCapNoUSDCharge(t *testing.T) {
	end, _ := streamHangRun(t, func(c *bus.Config) { c.Claude.TurnTimeoutMS = 1500 })
	if end.Usage == nil || *end.Usage != wantStreamed || end.BudgetUSD != nil || !end.BudgetEstimated {
		t.Errorf("usage %+v budget_usd %v estimated %v", end.Usage, end.BudgetUSD, end.BudgetEstimated)
	}
}

// TestClaudeStoppedMidTurnByStreamedTokens: once the tokens its messages
// stream reach a token cap, the claude turn is stopped (budget_exceeded,
// the cap on its end) without waiting for a result or a timeout.
func TestClaudeStoppedMidTurnByStreamedTokens(t *testing.T) {
	pidFile := t.TempDir() + "/pids"
	start := time.Now()
	h := newHarness(t, "stream-hang", func(c *bus.Config) { c.Budget.PerRun = bus.BudgetCaps{Tokens: 100000} }, "FAKE_PID_FILE="+pidFile)
	h.dispatch("run-midturn")
	end, _ := h.finished()
	if end.Status != bus.RunBudgetExceeded || end.BudgetCap != bus.CapRunTokens || !strings.Contains(end.Error, "stopped mid-turn") {
		t.Fatalf("end %s %q cap %q", end.Status, end.Error, end.BudgetCap)
	}
	if end.Usage == nil || end.Usage.InputTokens < 400000 || !end.BudgetEstimated {
		t.Errorf("usage %+v estimated %v: the streamed tokens must be charged", end.Usage, end.BudgetEstimated)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %s: the turn must be stopped, not left to hang", d)
	}
	if b, err := os.ReadFile(pidFile); err != nil || len(b) == 0 {
		t.Errorf("no agent pid recorded: %v", err)
	}
}

// TestStreamedUsageCountsEachMessageOnce: claude repeats a message's usage
// on each of its content-block lines; the streamed sum counts each
// message once (the recorded transcript: two messages of 100 input).
func TestStreamedUsageCountsEachMessageOnce(t *testing.T) {
	b, err := os.ReadFile("testdata/transcripts/claude-resume.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	cl := &claudeLines{emit: func(bus.TurnEvent) error { return nil }}
	for line := range strings.SplitSeq(string(b), "\n") {
		cl.line([]byte(line))
	}
	if got := cl.streamed(); got.InputTokens != 200 || got.OutputTokens != 2 || cl.model == "" || !cl.init {
		t.Errorf("streamed %+v model %q", got, cl.model)
	}
}
