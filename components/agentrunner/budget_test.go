package agentrunner

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// flagValue is the value after flag in argv, "" without it.
func flagValue(argv []string, flag string) string {
	i := slices.Index(argv, flag)
	if i < 0 || i+1 >= len(argv) {
		return ""
	}
	return argv[i+1]
}

// TestClaudeGetsTheRemainingBudget: each claude turn gets --max-budget-usd
// with the per-run USD cap minus what the run's earlier turns cost (the
// fake reports $0.25 a turn); under the cap the run goes on to max_turns.
func TestClaudeGetsTheRemainingBudget(t *testing.T) {
	h := newHarness(t, "ok", func(c *bus.Config) { c.Budget.PerRun.USD = 1 })
	h.dispatch("run-budget")
	end, all := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 {
		t.Fatalf("end %s %q turn %d", end.Status, end.Error, end.Turn)
	}
	var got []string
	for _, e := range all {
		if e.Event == bus.RunTurnStarted {
			got = append(got, flagValue(e.Command, "--max-budget-usd"))
		}
	}
	if want := []string{"1", "0.75", "0.5"}; !slices.Equal(got, want) {
		t.Errorf("--max-budget-usd per turn %q, want %q (the cap minus the cost so far)", got, want)
	}
}

// TestNoBudgetNoFlag: without a USD cap claude gets no --max-budget-usd.
func TestNoBudgetNoFlag(t *testing.T) {
	argv := claudeBackend{environ: func() []string { return nil }}.argv(bus.Config{}, "", nil, "")
	if slices.Contains(argv, "--max-budget-usd") {
		t.Errorf("argv %q", argv)
	}
	argv = claudeBackend{environ: func() []string { return nil }}.argv(bus.Config{Claude: bus.ClaudeConfig{ExtraArgs: []string{"--max-budget-usd", "99"}}}, "s", nil, "0.5")
	if i := slices.Index(argv, "--max-budget-usd"); slices.Index(argv[i+1:], "--max-budget-usd") < 0 || argv[len(argv)-3] != "0.5" {
		t.Errorf("the cap's flag must come after extra_args: %q", argv)
	}
}

// TestRunEndsAtAPerRunCap: a run whose usage or cost reached a per-run cap
// after a turn ends budget_exceeded without a continuation (the fake
// claude reports 18 tokens, cache reads included, and $0.25 a turn).
func TestRunEndsAtAPerRunCap(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps bus.BudgetCaps
		turn int
		want string
	}{
		{"tokens", bus.BudgetCaps{Tokens: 20}, 2, "budget.per_run.tokens reached: the run used 36 tokens, the cap is 20"},
		{"usd", bus.BudgetCaps{USD: 0.3}, 2, "budget.per_run.usd reached: the run cost $0.5, the cap is $0.3"},
		{"usd exactly", bus.BudgetCaps{USD: 0.25}, 1, "budget.per_run.usd reached: the run cost $0.25, the cap is $0.25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "ok", func(c *bus.Config) { c.Budget.PerRun = tc.caps })
			h.dispatch("run-cap")
			end, all := h.finished()
			if end.Status != bus.RunBudgetExceeded || end.Error != tc.want || end.Turn != tc.turn {
				t.Fatalf("end %s %q turn %d, want budget_exceeded %q after turn %d", end.Status, end.Error, end.Turn, tc.want, tc.turn)
			}
			started := 0
			for _, e := range all {
				if e.Event == bus.RunTurnStarted {
					started++
				}
				if e.Event == bus.RunTurnFinished && e.Turn == tc.turn && e.Status != bus.RunBudgetExceeded {
					t.Errorf("the last turn's end %s", e.Status)
				}
			}
			if started != tc.turn {
				t.Errorf("%d turns started: a continuation after the cap", started)
			}
		})
	}
}

// TestCodexStoppedMidTurnAtACap: codex's token totals reach a per-run cap
// during a turn that would go on forever; the turn is stopped (the
// app-server is gone) and the run ends budget_exceeded. The USD cap
// prices the totals for the model thread/start named.
func TestCodexStoppedMidTurnAtACap(t *testing.T) {
	bin := fakeagent.Build(t)
	for _, tc := range []struct {
		name   string
		mutate func(*bus.Config)
		want   string
	}{
		{"tokens", func(c *bus.Config) { c.Budget.PerRun.Tokens = 3000 },
			"budget.per_run.tokens reached: the run used 5000 tokens, the cap is 3000; codex was stopped mid-turn"},
		// 3000 fresh input at $1/M, 1000 cached at $0.5/M, 1000 output at $2/M.
		{"usd", func(c *bus.Config) {
			c.Budget.PerRun.USD = 0.001
			c.Pricing = map[string]bus.ModelPrice{"fake-codex-model": {Input: 1, CachedInput: 0.5, Output: 2}}
		}, "budget.per_run.usd reached: the run cost $0.0055, the cap is $0.001; codex was stopped mid-turn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			h := newHarness(t, "", codexConfig(bin, tc.mutate), fakeagent.EnvCodex+"=spend", fakeagent.EnvPIDFile+"="+pidFile)
			h.dispatch("run-cxb")
			end, _ := h.finished()
			if end.Status != bus.RunBudgetExceeded || end.Error != tc.want || end.Turn != 1 {
				t.Errorf("end %s %q turn %d, want budget_exceeded %q", end.Status, end.Error, end.Turn, tc.want)
			}
			if u := end.Usage; u == nil || u.InputTokens != 4000 || u.OutputTokens != 1000 {
				t.Errorf("run usage %+v, want the totals seen", end.Usage)
			}
			sleeperGone(t, pidFile)
		})
	}
}

// TestCodexUnpricedModelEscapesTheUSDCap: without a pricing entry for the
// model codex names, a USD cap does not apply (validate warns); the token
// cap still would.
func TestCodexUnpricedModelEscapesTheUSDCap(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) {
		c.Budget.PerRun.USD = 0.000001
		c.Pricing = map[string]bus.ModelPrice{"another-model": {Input: 1, CachedInput: 1, Output: 1}}
	}), fakeagent.EnvCodex+"=ok")
	h.dispatch("run-cxu")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 {
		t.Errorf("end %s %q turn %d", end.Status, end.Error, end.Turn)
	}
}

// TestRunStoppedAtTheIssueRemainder: a run whose issue's earlier runs
// spent part of its lifetime caps (budget.per_issue, carried by the
// dispatch) is bounded by what remains: claude's --max-budget-usd gets the
// issue's remainder when it is under the per-run cap, the run ends
// budget_exceeded naming budget.per_issue when its spend carries the
// issue past a cap, and the turns cap cuts the turn loop (the fake claude
// reports 18 tokens and $0.25 a turn, max_turns 3). The run's end carries
// the cost the caps counted.
func TestRunStoppedAtTheIssueRemainder(t *testing.T) {
	for _, tc := range []struct {
		name   string
		left   bus.IssueBudgetLeft
		status bus.RunStatus
		turn   int
		want   string
		flags  []string
	}{
		{"usd", bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 1}}, Spent: bus.IssueSpend{USD: 0.6}},
			bus.RunBudgetExceeded, 2, "budget.per_issue.usd reached: the issue's runs cost $1.1 (this run $0.5), the cap is $1", []string{"0.4", "0.15"}},
		{"tokens", bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{Tokens: 50}}, Spent: bus.IssueSpend{Tokens: 20}},
			bus.RunBudgetExceeded, 2, "budget.per_issue.tokens reached: the issue's runs used 56 tokens (this run 36), the cap is 50", []string{"2", "1.75"}},
		{"turns", bus.IssueBudgetLeft{Caps: bus.IssueBudget{Turns: 10}, Spent: bus.IssueSpend{Turns: 8}},
			bus.RunSucceeded, 2, "", []string{"2", "1.75"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "ok", func(c *bus.Config) { c.Budget.PerRun.USD = 2; c.Budget.PerIssue = tc.left.Caps })
			h.issueBudget = &tc.left
			h.dispatch("run-issue-cap")
			end, all := h.finished()
			if end.Status != tc.status || end.Error != tc.want || end.Turn != tc.turn {
				t.Fatalf("end %s %q turn %d, want %s %q after turn %d", end.Status, end.Error, end.Turn, tc.status, tc.want, tc.turn)
			}
			var got []string
			for _, e := range all {
				if e.Event == bus.RunTurnStarted {
					got = append(got, flagValue(e.Command, "--max-budget-usd"))
				}
			}
			if !slices.Equal(got, tc.flags) {
				t.Errorf("--max-budget-usd per turn %q, want %q (the tighter remainder)", got, tc.flags)
			}
			if end.BudgetUSD == nil || *end.BudgetUSD != 0.5 {
				t.Errorf("run_finished budget_usd %v, want the $0.5 the caps counted", end.BudgetUSD)
			}
		})
	}
}

// TestBudgetTokens: what a token cap counts, per agent.
func TestBudgetTokens(t *testing.T) {
	u := bus.Usage{InputTokens: 100, OutputTokens: 10, CacheCreationInputTokens: 5, CacheReadInputTokens: 30}
	if got := u.BudgetTokens(bus.AgentClaude); got != 145 {
		t.Errorf("claude %d, want 145 (cache reads and writes are beside input_tokens)", got)
	}
	if got := u.BudgetTokens(bus.AgentCodex); got != 110 {
		t.Errorf("codex %d, want 110 (cached tokens are inside inputTokens)", got)
	}
	if why, over := overRunCaps(bus.BudgetCaps{USD: 1}, spend{usd: 5}); over {
		t.Errorf("an unpriced run is over a USD cap: %s", why.why)
	}
	w := &run{snap: bus.ConfigSnapshot{Config: bus.Config{Budget: bus.BudgetConfig{PerRun: bus.BudgetCaps{USD: 0.0025}}}}}
	for _, tc := range []struct {
		spent float64
		want  string
	}{{0, "0.0025"}, {0.002, "0.0005"}, {0.0000015, "0.002498"}, {0.0025, "0.000001"}} {
		c := tc.spent
		w.cost = &c
		if got := w.remainingUSD(); got != tc.want {
			t.Errorf("remaining after $%v: %q, want %q (rounded down to the micro-dollar)", tc.spent, got, tc.want)
		}
	}
	if usdText(0.1+0.2) != "0.3" {
		t.Errorf("usdText %q", usdText(0.1+0.2))
	}
}

// TestRunStoppedAtTheDayRemainder: a run dispatched when the fleet's
// turns had spent part of today's caps (budget.per_day, carried by the
// dispatch) is bounded by what remains: claude's --max-budget-usd gets
// the day's remainder when it is the tightest of the three, and the run
// ends budget_exceeded naming budget.per_day with the cap's key, value and
// day on its end and on the turn that crossed (the fake claude: 18
// tokens and $0.25 a turn). Every turn_finished carries its own share of
// the cost (budget_usd), which the scheduler adds to the day.
func TestRunStoppedAtTheDayRemainder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		left  bus.DayBudgetLeft
		want  string
		cap   string
		limit float64
		flags []string
	}{
		{"usd", bus.DayBudgetLeft{Day: "2026-12-08", Caps: bus.BudgetCaps{USD: 10}, USD: 9.6},
			"budget.per_day.usd reached: the fleet's turns on 2026-12-08 cost $10.1 (this run $0.5), the cap is $10", bus.CapDayUSD, 10, []string{"0.4", "0.15"}},
		{"tokens", bus.DayBudgetLeft{Day: "2026-12-08", Caps: bus.BudgetCaps{Tokens: 1000}, Tokens: 970},
			"budget.per_day.tokens reached: the fleet's turns on 2026-12-08 used 1006 tokens (this run 36), the cap is 1000", bus.CapDayTokens, 1000, []string{"2", "1.75"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "ok", func(c *bus.Config) {
				c.Budget.PerRun.USD = 2
				c.Budget.PerIssue.USD = 5
				c.Budget.PerDay.BudgetCaps = tc.left.Caps
			})
			h.issueBudget = &bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 5}}, Spent: bus.IssueSpend{USD: 1}}
			h.dayBudget = &tc.left
			h.dispatch("run-day-cap")
			end, all := h.finished()
			if end.Status != bus.RunBudgetExceeded || end.Error != tc.want || end.Turn != 2 {
				t.Fatalf("end %s %q turn %d, want budget_exceeded %q after turn 2", end.Status, end.Error, end.Turn, tc.want)
			}
			if end.BudgetCap != tc.cap || end.BudgetLimit != tc.limit || end.BudgetDay != "2026-12-08" {
				t.Errorf("run_finished names cap %q limit %v day %q, want %q %v 2026-12-08", end.BudgetCap, end.BudgetLimit, end.BudgetDay, tc.cap, tc.limit)
			}
			var flags []string
			for _, e := range all {
				switch e.Event {
				case bus.RunTurnStarted:
					flags = append(flags, flagValue(e.Command, "--max-budget-usd"))
				case bus.RunTurnFinished:
					if e.BudgetUSD == nil || *e.BudgetUSD != 0.25 {
						t.Errorf("turn %d budget_usd %v, want the turn's own $0.25", e.Turn, e.BudgetUSD)
					}
					if e.Turn == 2 && e.BudgetCap != tc.cap {
						t.Errorf("the crossing turn names cap %q", e.BudgetCap)
					}
				}
			}
			if !slices.Equal(flags, tc.flags) {
				t.Errorf("--max-budget-usd per turn %q, want %q (the day's remainder is the tightest)", flags, tc.flags)
			}
		})
	}
}

// TestClaudeStoppedByItsFlagAtTheDayRemainder: a claude turn that its own
// --max-budget-usd stopped, when the day's remainder was the flag, ends
// the run naming budget.per_day.usd.
func TestClaudeStoppedByItsFlagAtTheDayRemainder(t *testing.T) {
	w := &run{snap: bus.ConfigSnapshot{Config: bus.Config{Budget: bus.BudgetConfig{PerRun: bus.BudgetCaps{USD: 2}}}}}
	w.d.IssueBudget = &bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 5}}, Spent: bus.IssueSpend{USD: 4}}
	w.d.DayBudget = &bus.DayBudgetLeft{Day: "2026-12-08", Caps: bus.BudgetCaps{USD: 10}, USD: 9.5}
	c := 0.2
	w.cost = &c
	out := w.budgetEnd(turnOutcome{status: bus.RunFailed, result: &bus.TurnResult{Subtype: claudeBudgetSubtype}})
	want := "budget.per_day.usd reached: claude stopped at --max-budget-usd; the fleet's turns on 2026-12-08 cost $9.7 (this run $0.2), the cap is $10"
	if out.status != bus.RunBudgetExceeded || out.err != want || out.hit == nil || out.hit.cap != bus.CapDayUSD || out.hit.day != "2026-12-08" {
		t.Errorf("%s %q %+v, want budget_exceeded %q", out.status, out.err, out.hit, want)
	}
	if got := w.remainingUSD(); got != "0.3" {
		t.Errorf("--max-budget-usd %q, want the day's 0.3", got)
	}
}

// TestCodexStoppedMidTurnAtTheRemainders: codex's totals (5000 tokens,
// $0.0055 at the fake's prices) are checked mid-turn against what remains
// of the issue's and of the day's caps; the turn is stopped and the run
// ends budget_exceeded naming the cap that was reached, its process gone.
func TestCodexStoppedMidTurnAtTheRemainders(t *testing.T) {
	bin := fakeagent.Build(t)
	price := map[string]bus.ModelPrice{"fake-codex-model": {Input: 1, CachedInput: 0.5, Output: 2}}
	for _, tc := range []struct {
		name  string
		issue *bus.IssueBudgetLeft
		day   *bus.DayBudgetLeft
		cap   string
		want  string
	}{
		{"issue tokens", &bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{Tokens: 6000}}, Spent: bus.IssueSpend{Tokens: 2000}}, nil, bus.CapIssueTokens,
			"budget.per_issue.tokens reached: the issue's runs used 7000 tokens (this run 5000), the cap is 6000; codex was stopped mid-turn"},
		{"issue usd", &bus.IssueBudgetLeft{Caps: bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 1}}, Spent: bus.IssueSpend{USD: 0.998}}, nil, bus.CapIssueUSD,
			"budget.per_issue.usd reached: the issue's runs cost $1.0035 (this run $0.0055), the cap is $1; codex was stopped mid-turn"},
		{"day tokens", nil, &bus.DayBudgetLeft{Day: "2026-12-08", Caps: bus.BudgetCaps{Tokens: 100000}, Tokens: 99000}, bus.CapDayTokens,
			"budget.per_day.tokens reached: the fleet's turns on 2026-12-08 used 104000 tokens (this run 5000), the cap is 100000; codex was stopped mid-turn"},
		{"day usd", nil, &bus.DayBudgetLeft{Day: "2026-12-08", Caps: bus.BudgetCaps{USD: 50}, USD: 49.999}, bus.CapDayUSD,
			"budget.per_day.usd reached: the fleet's turns on 2026-12-08 cost $50.0045 (this run $0.0055), the cap is $50; codex was stopped mid-turn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) { c.Pricing = price }), fakeagent.EnvCodex+"=spend", fakeagent.EnvPIDFile+"="+pidFile)
			h.issueBudget, h.dayBudget = tc.issue, tc.day
			h.dispatch("run-cx-left")
			end, all := h.finished()
			if end.Status != bus.RunBudgetExceeded || end.Error != tc.want || end.Turn != 1 || end.BudgetCap != tc.cap {
				t.Errorf("end %s %q turn %d cap %q, want budget_exceeded %q (%s)", end.Status, end.Error, end.Turn, end.BudgetCap, tc.want, tc.cap)
			}
			for _, e := range all {
				if e.Event == bus.RunTurnFinished && (e.BudgetUSD == nil || *e.BudgetUSD != 0.0055) {
					t.Errorf("turn_finished budget_usd %v, want the priced $0.0055", e.BudgetUSD)
				}
			}
			sleeperGone(t, pidFile)
		})
	}
}

// TestBudgetCancelNamesItsCap: the scheduler stops a run at the fleet's
// daily cap (crossed by another run's turn) with a budget_exceeded cancel
// naming the cap; the run's end carries the cap, its value and the day,
// so its park says which cap made it.
func TestBudgetCancelNamesItsCap(t *testing.T) {
	bin := fakeagent.Build(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := newHarness(t, "", codexConfig(bin, nil), fakeagent.EnvCodex+"=spend", fakeagent.EnvPIDFile+"="+pidFile)
	h.dispatch("run-day-stop")
	h.waitAgentRunning("run-day-stop")
	reason := "budget.per_day.usd reached: the fleet's turns on 2026-12-08 cost $10.5, the cap is $10; the run was stopped"
	res, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-day-stop", Reason: reason, Status: bus.RunBudgetExceeded,
		BudgetCap: bus.CapDayUSD, BudgetLimit: 10, BudgetDay: "2026-12-08"})
	if err != nil || !res.Found {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	end, _ := h.finished()
	if end.Status != bus.RunBudgetExceeded || end.Error != reason || end.BudgetCap != bus.CapDayUSD || end.BudgetLimit != 10 || end.BudgetDay != "2026-12-08" {
		t.Errorf("end %s %q cap %q %v %q", end.Status, end.Error, end.BudgetCap, end.BudgetLimit, end.BudgetDay)
	}
	sleeperGone(t, pidFile)
}
