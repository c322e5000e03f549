package agentrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// The fake app-server's hostile scenarios (testkit/fakeagent/codex_hostile.go):
// each test is a regression test of a bug a review found in the codex
// backend with a scripted server. Bounds on time are generous (the bugs
// cost a 100 s or a 20 s wait); nothing sleeps to assert.

// hostileTimeout bounds how long a run that must end promptly may take,
// under load: the bugs took 20 s (turn_timeout_ms) to 100 s.
const hostileTimeout = 10 * time.Second

// otherEvents are the texts of the run's other events.
func otherEvents(evs []bus.TurnEvent) []string {
	var out []string
	for _, e := range evs {
		if e.Kind == bus.TurnOther {
			out = append(out, e.Text)
		}
	}
	return out
}

// TestCodexStdinFloodCancel: a server that stops reading its stdin and
// floods requests (5000 of 1000-byte methods): the first reply Symphony
// cannot write within read_timeout_ms ends the turn (response_timeout),
// or the cancel sent meanwhile does; before the fix each reply waited its
// own timeout, and a cancel took 100 s.
func TestCodexStdinFloodCancel(t *testing.T) {
	bin := fakeagent.Build(t)
	// read_timeout_ms 2 s: short beside the bound, long enough for the
	// handshake of a loaded machine.
	h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1; c.Codex.ReadTimeoutMS = 2000 }), fakeagent.EnvCodex+"=stdin_flood")
	h.dispatch("run-sf")
	// The flood is being handled once its first requests are recorded.
	deadline := time.Now().Add(testTimeout)
	for !anyPrefixed(otherEvents(h.turns("run-sf")), "request x/mmm") {
		if time.Now().After(deadline) {
			t.Fatalf("the flood's requests were never recorded; events %+v", h.turns("run-sf"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if _, err := bus.Ask(t.Context(), h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-sf", Reason: "operator cancel", Status: bus.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	end, _ := h.finished()
	if d := time.Since(start); d > hostileTimeout {
		t.Errorf("the run ended %s after the cancel", d)
	}
	switch {
	case end.Status == bus.RunCanceled && end.Error == "operator cancel":
	case end.Status == bus.RunFailed && strings.Contains(end.Error, codexResponseTimeout) && strings.Contains(end.Error, "codex.read_timeout_ms"):
	default:
		t.Errorf("end %s %q, want canceled, or failed with %s", end.Status, end.Error, codexResponseTimeout)
	}
}

// anyPrefixed says whether one of ss starts with prefix.
func anyPrefixed(ss []string, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestCodexToolFloodCancel: five dynamic tool calls in one write, the
// first held by the tracker until the run is canceled: the cancel stops
// the rest, so no tool call reaches the tracker after it, and the run ends
// at once.
func TestCodexToolFloodCancel(t *testing.T) {
	bin := fakeagent.Build(t)
	h := startHarness(t, "", defaultTemplate, codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1 }), []string{"/unused/mcp"}, fakeagent.EnvCodex+"=tool_flood")
	var mu sync.Mutex
	calls := 0
	called, release := make(chan struct{}, 10), make(chan struct{})
	defer close(release)
	ctx := t.Context()
	if _, err := bus.Serve(ctx, h.b, bus.TrackerTools, func(context.Context, string, bus.ListTools) (bus.ToolSpecs, error) {
		return bus.ToolSpecs{Tracker: "files", Tools: []bus.ToolSpec{{Name: "files_set_state", InputSchema: json.RawMessage(`{"type":"object"}`)}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Concurrent handlers, so a call made after the cancel is counted
	// even while the first one is held.
	if _, err := bus.ServeN(ctx, h.b, bus.TrackerToolCall, 8, func(cctx context.Context, _ string, _ bus.CallTool) (bus.ToolResult, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		called <- struct{}{}
		select {
		case <-release:
		case <-cctx.Done():
		}
		return bus.ToolResult{OK: true, Output: json.RawMessage(`{"state":"Done"}`)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Serve(ctx, h.b, bus.TrackerToolsRelease, func(context.Context, string, bus.ReleaseTools) (bus.ToolsReleased, error) {
		return bus.ToolsReleased{Found: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	h.dispatch("run-tf")
	select {
	case <-called:
	case <-time.After(testTimeout):
		t.Fatal("the first tool call never reached the tracker")
	}
	start := time.Now()
	if _, err := bus.Ask(ctx, h.b, bus.AgentCancel, bus.CancelRun{RunID: "run-tf", Reason: "operator cancel", Status: bus.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	end, _ := h.finished()
	if d := time.Since(start); d > hostileTimeout {
		t.Errorf("the run ended %s after the cancel", d)
	}
	if end.Status != bus.RunCanceled || end.Error != "operator cancel" {
		t.Errorf("end %s %q", end.Status, end.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("%d tool calls reached the tracker; want only the one before the cancel", calls)
	}
}

// TestCodexOtherThreadCompleted: a failed turn/completed of another
// thread on the connection does not end the run's turn: it is recorded as
// an other event, and the turn succeeds with its own message.
func TestCodexOtherThreadCompleted(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1 }), fakeagent.EnvCodex+"=other_completed")
	h.dispatch("run-oc")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 1 {
		t.Fatalf("end %s %q turn %d: another thread's failed turn/completed ended the run's turn", end.Status, end.Error, end.Turn)
	}
	evs := h.turns("run-oc")
	if texts := codexText(evs); len(texts) != 1 || texts[0] != "turn 1 own message" {
		t.Errorf("agent messages %q", texts)
	}
	if others := otherEvents(evs); len(others) != 1 || others[0] != "turn/completed of another turn or thread" {
		t.Errorf("other events %q", others)
	}
}

// TestCodexOtherThreadTokens: another thread's token totals are recorded
// as an other event, not taken as the run's.
func TestCodexOtherThreadTokens(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1 }), fakeagent.EnvCodex+"=other_tokens")
	h.dispatch("run-ot")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded {
		t.Fatalf("end %s %q", end.Status, end.Error)
	}
	if u := end.Usage; u == nil || u.InputTokens != 100 || u.OutputTokens != 10 {
		t.Errorf("run usage %+v, want the run thread's totals 100/10", end.Usage)
	}
	if others := otherEvents(h.turns("run-ot")); len(others) != 1 || others[0] != "token totals of another thread" {
		t.Errorf("other events %q", others)
	}
}

// TestCodexStaleCompleted: a duplicate turn/completed of turn 1, arriving
// between the turns, does not end turn 2 before it ran: each turn records
// its own message under its own number.
func TestCodexStaleCompleted(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, nil), fakeagent.EnvCodex+"=stale_completed")
	h.dispatch("run-sc")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 {
		t.Fatalf("end %s %q turn %d", end.Status, end.Error, end.Turn)
	}
	byTurn := map[int][]string{}
	outcomes := map[int]int{}
	for _, e := range h.turns("run-sc") {
		switch e.Kind {
		case bus.TurnText:
			byTurn[e.Turn] = append(byTurn[e.Turn], e.Text)
		case bus.TurnOutcome:
			outcomes[e.Turn]++
		}
	}
	for n := 1; n <= 3; n++ {
		if want := fmt.Sprintf("turn %d own message", n); len(byTurn[n]) != 1 || byTurn[n][0] != want {
			t.Errorf("turn %d recorded messages %q, want [%q]", n, byTurn[n], want)
		}
		if outcomes[n] != 1 {
			t.Errorf("turn %d has %d outcomes", n, outcomes[n])
		}
	}
}

// TestCodexHugeToolName: an unknown dynamic tool with a 200 KB name, while
// the server does not read its stdin for longer (3 s) than read_timeout_ms
// (2 s, long enough for the handshake of a loaded machine): the
// reply (with the name bounded) fits the pipe, so the server reads two
// whole JSON lines and the turn goes on — or, if a write did time out,
// the run ends at once with response_timeout; never a corrupted stream
// the turn then waits turn_timeout_ms on.
func TestCodexHugeToolName(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, func(c *bus.Config) { c.Agent.MaxTurns = 1; c.Codex.ReadTimeoutMS = 2000 }), fakeagent.EnvCodex+"=huge_tool_name")
	start := time.Now()
	h.dispatch("run-hn")
	end, _ := h.finished()
	if d := time.Since(start); d > hostileTimeout {
		t.Errorf("the run took %s", d)
	}
	switch end.Status {
	case bus.RunSucceeded:
		texts := codexText(h.turns("run-hn"))
		if len(texts) != 1 {
			t.Fatalf("agent messages %q", texts)
		}
		m := regexp.MustCompile(`^reply 1: valid id 3000, (\d+) bytes; reply 2: valid id 3001, \d+ bytes$`).FindStringSubmatch(texts[0])
		if m == nil {
			t.Fatalf("the server read %q, want two whole JSON replies", texts[0])
		}
		if n, _ := strconv.Atoi(m[1]); n > 4*MaxNameBytes {
			t.Errorf("the reply to the unknown tool is %d bytes: its name is not bounded", n)
		}
	case bus.RunFailed:
		if !strings.Contains(end.Error, codexResponseTimeout) {
			t.Errorf("end failed %q, want %s", end.Error, codexResponseTimeout)
		}
	default:
		t.Errorf("end %s %q", end.Status, end.Error)
	}
}

// TestCodexTotalsBackwards: absolute totals that go back (100, 50, 120
// input tokens across the turns) leave the run's usage equal to the last
// totals, 120/12.
func TestCodexTotalsBackwards(t *testing.T) {
	bin := fakeagent.Build(t)
	h := newHarness(t, "", codexConfig(bin, nil), fakeagent.EnvCodex+"=totals_backwards")
	h.dispatch("run-tb")
	end, _ := h.finished()
	if end.Status != bus.RunSucceeded || end.Turn != 3 {
		t.Fatalf("end %s %q turn %d", end.Status, end.Error, end.Turn)
	}
	if u := end.Usage; u == nil || u.InputTokens != 120 || u.OutputTokens != 12 {
		t.Errorf("run usage %+v, want the last totals 120/12", end.Usage)
	}
}
