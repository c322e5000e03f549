package agentrunner

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/mockanthropic"
)

// realCLI returns the installed claude CLI; a missing CLI fails the test
// with the install command (it is never skipped).
func realCLI(t *testing.T) string {
	t.Helper()
	bin, err := mockanthropic.CLIPath()
	if err != nil {
		t.Fatalf("the real claude CLI is required: %v", err)
	}
	return bin
}

// TestRealClaudeCLI drives the real claude CLI through the runner against
// the mock Messages API: two turns on one session, a file really written
// in the workspace, the events on the bus in the CLI's order, usage and
// cost summed.
func TestRealClaudeCLI(t *testing.T) {
	bin := realCLI(t)
	srv := mockanthropic.New(
		mockanthropic.Write("hello.txt", "hello from the mock model\n"),
		mockanthropic.Text("I created hello.txt."),
		mockanthropic.Text("Nothing left to do."),
	)
	defer srv.Close()
	env := append([]string{"CLAUDE_CLI=" + bin}, mockanthropic.Env(srv.URL(), t.TempDir())...)
	env = append(env, "LINEAR_API_KEY=lin_must_not_reach_claude")
	h := newHarness(t, "unused", func(c *bus.Config) {
		c.Agent.MaxTurns = 2
		c.Claude.Model = ""
		c.Claude.AllowedTools = nil
		c.Claude.TurnTimeoutMS = 120000
	}, env...)
	h.dispatch("run-real")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 2 {
		t.Fatalf("end %+v", end)
	}
	got, err := os.ReadFile(filepath.Join(h.root, "ABC-1", "hello.txt"))
	if err != nil || string(got) != "hello from the mock model\n" {
		t.Errorf("the file the agent wrote: %q %v", got, err)
	}
	var kinds []string
	sessions := map[string]bool{}
	results := 0
	for _, e := range h.turns("run-real") {
		kinds = append(kinds, fmt.Sprintf("%d:%s", e.Turn, e.Kind))
		if e.Kind == bus.TurnInit {
			sessions[e.SessionID] = true
		}
		if e.Kind == bus.TurnOutcome {
			results++
			if e.Result.IsError || e.Result.CostUSD == nil {
				t.Errorf("result %+v", e.Result)
			}
		}
	}
	want := "1:prompt 1:system_init 1:tool_use 1:tool_result 1:assistant_text 1:result 2:prompt 2:system_init 2:assistant_text 2:result"
	if strings.Join(kinds, " ") != want {
		t.Errorf("turn events:\n got %s\nwant %s", strings.Join(kinds, " "), want)
	}
	if len(sessions) != 1 || results != 2 {
		t.Errorf("the continuation must reuse the session: %v", sessions)
	}
	if end.Usage == nil || end.Usage.InputTokens < 2*100 || end.CostUSD == nil || *end.CostUSD <= 0 {
		t.Errorf("usage and cost not summed: %+v %v", end.Usage, end.CostUSD)
	}
	msgs := srv.Messages()
	if len(msgs) != 3 || !strings.EqualFold(msgs[0].Cwd, filepath.Join(h.root, "ABC-1")) {
		t.Errorf("the mock saw %d model calls, cwd %q", len(msgs), msgs[0].Cwd)
	}
}

// TestRealClaudeCLIAPIError: an API error ends the run as failed with the
// CLI's own message.
func TestRealClaudeCLIAPIError(t *testing.T) {
	bin := realCLI(t)
	srv := mockanthropic.New(mockanthropic.Error(500, "mock injected 500"))
	defer srv.Close()
	env := append([]string{"CLAUDE_CLI=" + bin}, mockanthropic.Env(srv.URL(), t.TempDir())...)
	h := newHarness(t, "unused", func(c *bus.Config) {
		c.Claude.Model = ""
		c.Claude.AllowedTools = nil
		c.Claude.TurnTimeoutMS = 120000
	}, env...)
	h.dispatch("run-apierr")
	end, _ := h.finished()
	if end.Status != bus.RunFailed || !strings.Contains(end.Error, "API Error: 500") || !strings.Contains(end.Error, "mock injected 500") {
		t.Errorf("end %s %q", end.Status, end.Error)
	}
}

// TestRealClaudeCLIBudget: the real CLI takes --max-budget-usd with what
// remains of budget.per_run.usd — on turn 2 the cap minus turn 1's cost —
// and stops itself once its cost passes it (result subtype
// error_max_budget_usd, after one model call); the run ends
// budget_exceeded after that turn.
func TestRealClaudeCLIBudget(t *testing.T) {
	bin := realCLI(t)
	srv := mockanthropic.New(
		mockanthropic.Write("hello.txt", "hello from the mock model\n"),
		mockanthropic.Text("I created hello.txt."),
		mockanthropic.Text("Nothing left to do."),
		mockanthropic.Text("Still nothing."),
	)
	defer srv.Close()
	env := append([]string{"CLAUDE_CLI=" + bin}, mockanthropic.Env(srv.URL(), t.TempDir())...)
	const capUSD = 0.0025
	h := newHarness(t, "unused", func(c *bus.Config) {
		c.Agent.MaxTurns = 3
		c.Claude.Model = ""
		c.Claude.AllowedTools = nil
		c.Claude.TurnTimeoutMS = 120000
		c.Budget.PerRun.USD = capUSD
	}, env...)
	h.dispatch("run-real-budget")
	end, all := h.finished()
	var flags []string
	var cost1 float64
	for _, e := range all {
		if e.Event == bus.RunTurnStarted {
			flags = append(flags, flagValue(e.Command, "--max-budget-usd"))
		}
		if e.Event == bus.RunTurnFinished && e.Turn == 1 && e.CostUSD != nil {
			cost1 = *e.CostUSD
		}
	}
	if cost1 <= 0 || cost1 >= capUSD {
		t.Fatalf("turn 1 cost $%v: the test needs a first turn under the cap ($%v)", cost1, capUSD)
	}
	if want := []string{usdText(capUSD), usdText(capUSD - cost1)}; !slices.Equal(flags, want) {
		t.Errorf("--max-budget-usd per turn %q, want %q (the cap, then the cap minus turn 1's $%v)", flags, want, cost1)
	}
	var subtypes []string
	for _, e := range h.turns("run-real-budget") {
		if e.Kind == bus.TurnOutcome {
			subtypes = append(subtypes, e.Result.Subtype)
		}
	}
	if len(subtypes) != 2 || subtypes[1] != claudeBudgetSubtype {
		t.Errorf("result subtypes %q: want claude to stop turn 2 itself (%s)", subtypes, claudeBudgetSubtype)
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("%d model calls, want 3 (two in turn 1, one in turn 2)", n)
	}
	if end.Status != bus.RunBudgetExceeded || end.Turn != 2 || !strings.HasPrefix(end.Error, "budget.per_run.usd reached") {
		t.Errorf("end %s %q after turn %d, want budget_exceeded after turn 2", end.Status, end.Error, end.Turn)
	}
}
