package agentrunner

import (
	"fmt"
	"os"
	"path/filepath"
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
