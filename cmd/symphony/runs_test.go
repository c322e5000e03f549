package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// recordRun stores a small but complete run: lifecycle and turn events.
func recordRun(t *testing.T, b *bus.Bus, runID, identifier string, start time.Time, status bus.RunStatus) {
	t.Helper()
	ref := bus.IssueRef{ID: "id-" + identifier, Identifier: identifier, Title: "Fix " + identifier}
	cost := 0.25
	life := []bus.RunEvent{
		{RunID: runID, Event: bus.RunDispatched, At: start, Issue: ref},
		{RunID: runID, Event: bus.RunWorkspaceReady, At: start.Add(time.Second), Issue: ref, Workspace: "/ws/" + identifier},
		{RunID: runID, Event: bus.RunTurnStarted, At: start.Add(2 * time.Second), Issue: ref, Turn: 1},
	}
	for _, ev := range life {
		if err := runlog.Record(t.Context(), b, ev, ""); err != nil {
			t.Fatal(err)
		}
	}
	hook := bus.HookEvent{Hook: bus.HookBeforeRun, Phase: bus.HookFinished, Issue: ref, RunID: runID, Workspace: "/ws/" + identifier, At: start.Add(1500 * time.Millisecond), DurationMS: 120}
	if _, err := bus.PublishDurable(t.Context(), b, bus.WorkspaceHookEvents, hook, "", runID, bus.HookBeforeRun); err != nil {
		t.Fatal(err)
	}
	turns := []bus.TurnEvent{
		{RunID: runID, Turn: 1, Seq: 1, At: start.Add(2 * time.Second), Kind: bus.TurnPrompt, Text: "Do " + identifier},
		{RunID: runID, Turn: 1, Seq: 2, At: start.Add(3 * time.Second), Kind: bus.TurnText, Text: "working on it"},
		{RunID: runID, Turn: 1, Seq: 3, At: start.Add(4 * time.Second), Kind: bus.TurnToolUse, Tool: &bus.ToolCall{ID: "t1", Name: "Write", Input: json.RawMessage(`{"file_path":"a.txt"}`)}},
		{RunID: runID, Turn: 1, Seq: 4, At: start.Add(5 * time.Second), Kind: bus.TurnOutcome, Result: &bus.TurnResult{Usage: bus.Usage{InputTokens: 100, OutputTokens: 20}, CostUSD: &cost}, Text: "done"},
	}
	for _, ev := range turns {
		if _, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, ev, "", runID, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if status != "" {
		u := bus.Usage{InputTokens: 100, OutputTokens: 20}
		end := bus.RunEvent{RunID: runID, Event: bus.RunFinished, At: start.Add(6 * time.Second), Issue: ref, Turn: 1, Status: status, Usage: &u, CostUSD: &cost}
		if err := runlog.Record(t.Context(), b, end, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunsAndReplayOnAStoppedInstance(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	recordRun(t, b, "run-a", "AAA-1", base, bus.RunSucceeded)
	recordRun(t, b, "run-b", "BBB-2", base.Add(10*time.Minute), bus.RunFailed)
	recordRun(t, b, "run-c", "AAA-1", base.Add(20*time.Minute), "")
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	code, out := runCLI(t, "--data-dir", dataDir, "runs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[1], "run-c") || !strings.Contains(lines[1], "running") ||
		!strings.Contains(lines[3], "succeeded") || !strings.Contains(lines[3], "$0.2500") || !strings.Contains(lines[3], "100/20") {
		t.Fatalf("runs table (newest first): exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "runs", "--issue", "aaa-1", "--status", "succeeded", "--json")
	var s bus.RunSummary
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &s) != nil || s.RunID != "run-a" || s.Workspace != "/ws/AAA-1" || s.Turns != 1 {
		t.Errorf("filtered json: exit %d\n%s", code, out)
	}
	if code, out := runCLI(t, "--data-dir", dataDir, "runs", "--since", "45m", "--limit", "1"); code != 0 || !strings.Contains(out, "run-c") || strings.Contains(out, "run-b") {
		t.Errorf("since/limit: exit %d\n%s", code, out)
	}

	code, out = runCLI(t, "--data-dir", dataDir, "replay", "run-a", "--jsonl")
	var kinds []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct {
			Stream string          `json:"stream"`
			Type   string          `json:"type"`
			Event  json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad JSONL line %q: %v", sc.Text(), err)
		}
		var k struct {
			Event string `json:"event"`
			Kind  string `json:"kind"`
			Phase string `json:"phase"`
		}
		_ = json.Unmarshal(e.Event, &k)
		kinds = append(kinds, e.Stream+":"+k.Event+k.Kind+k.Phase)
	}
	want := "RUNS:dispatched RUNS:workspace_ready HOOKS:finished RUNS:turn_started TURNS:prompt TURNS:assistant_text TURNS:tool_use TURNS:result RUNS:run_finished"
	if code != 0 || strings.Join(kinds, " ") != want {
		t.Errorf("replay --jsonl order:\n got %s\nwant %s", strings.Join(kinds, " "), want)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "replay", "run-b", "--print", "--speed", "0")
	if code != 0 || !strings.Contains(out, "run dispatched BBB-2") || !strings.Contains(out, "hook before_run finished in 120ms") || !strings.Contains(out, "tool_use Write") || !strings.Contains(out, "run run_finished failed") {
		t.Errorf("replay --print: exit %d\n%s", code, out)
	}
	code, out = runCLI(t, "--data-dir", dataDir, "replay", "run-x", "--print")
	if code == 0 || !strings.Contains(out, `no run "run-x"; closest: run-a, run-b, run-c`) {
		t.Errorf("unknown run: exit %d\n%s", code, out)
	}
	if code, out := runCLI(t, "--data-dir", dataDir, "replay", "run-a", "--bind", "0.0.0.0"); code != exitUsage || !strings.Contains(out, "--bind-unsafe") {
		t.Errorf("replay on a public address: exit %d\n%s", code, out)
	}

	// By default the run plays through the dashboard, read-only.
	p := start(t, "--data-dir", dataDir, "replay", "run-b", "--port", "0", "--speed", "0")
	line := p.waitFor(t, "symphony: replaying run run-b")
	_, page, ok := strings.Cut(line, " on ")
	if !ok || !strings.HasPrefix(page, "http://127.0.0.1:") {
		t.Fatalf("no dashboard URL in %q", line)
	}
	var body string
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(body, "run finished") {
		if time.Now().After(deadline) {
			t.Fatalf("replayed run page never showed the end:\n%s", body)
		}
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"Replay of run-b", "BBB-2", "before_run", "Write", "failed"} {
		if !strings.Contains(body, want) {
			t.Errorf("replay page lacks %q", want)
		}
	}
	dashboard, _, _ := strings.Cut(page, "/runs/")
	resp, err := http.Post(dashboard+"/api/v1/refresh", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("refresh during a replay: %d, want 409", resp.StatusCode)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("replay dashboard exit %d:\n%s", code, p.all)
	}
}

// TestReplayMatchesNatsCLI: with an instance running (and listening), the
// real nats CLI replays a run's turn subjects from the stream and sees the
// same events as `symphony replay --jsonl`, which reaches the running
// instance through its listener.
func TestReplayMatchesNatsCLI(t *testing.T) {
	wf := writeWorkflow(t)
	dataDir := filepath.Join(filepath.Dir(wf), ".symphony")
	// The run is recorded before the instance starts: the listener's
	// token may read the store, not write it.
	b, err := bus.Open(t.Context(), bus.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	recordRun(t, b, "run-live", "LIVE-1", time.Now().Add(-time.Minute), bus.RunSucceeded)
	b.Close(context.Background())
	p := start(t, "run", wf, "--nats-listen", "127.0.0.1:0")
	p.waitFor(t, "symphony running")

	code, out := runCLI(t, "--data-dir", dataDir, "replay", "run-live", "--jsonl")
	if code != 0 {
		t.Fatalf("replay through the listener: exit %d\n%s", code, out)
	}
	var fromReplay []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Stream string          `json:"stream"`
			Event  json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if e.Stream == bus.StreamTurns {
			fromReplay = append(fromReplay, compact(t, e.Event))
		}
	}

	url, _ := os.ReadFile(filepath.Join(dataDir, bus.URLFileName))
	token, _ := os.ReadFile(filepath.Join(dataDir, bus.TokenFileName))
	nats, err := exec.Command("go", "tool", "-n", "nats").Output()
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := bus.TurnEvents.Filter("run-live")
	subject = strings.TrimSuffix(subject, "*") + ">"
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(nats)), "--server", strings.TrimSpace(string(url)), "--user", strings.TrimSpace(string(token)),
		"sub", subject, "--all", "--count", fmt.Sprint(len(fromReplay)), "--raw")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir())
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("nats sub --all: %v\n%s", err, raw)
	}
	var fromNats []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			fromNats = append(fromNats, compact(t, []byte(line)))
		}
	}
	if strings.Join(fromNats, "\n") != strings.Join(fromReplay, "\n") {
		t.Errorf("nats CLI and replay differ:\nnats:\n%s\nreplay:\n%s", strings.Join(fromNats, "\n"), strings.Join(fromReplay, "\n"))
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
