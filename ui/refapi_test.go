package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
	"github.com/symphony-oss/symphony/testkit/apischema"
)

// TestNotReadyIsTheReferenceCode: a scheduler that does not answer is 503
// orchestrator_unavailable, the reference's code, in the error envelope.
func TestNotReadyIsTheReferenceCode(t *testing.T) {
	schemas, err := apischema.Load()
	if err != nil {
		t.Fatal(err)
	}
	var s Server
	for _, cause := range []error{bus.ErrNoResponder, fmt.Errorf("ask: %w", context.DeadlineExceeded)} {
		w := httptest.NewRecorder()
		s.controlError(w, httptest.NewRequest(http.MethodPost, "/api/v1/refresh", nil), cause)
		body := w.Body.Bytes()
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"code": "orchestrator_unavailable"`) {
			t.Errorf("%v: %d %s", cause, w.Code, body)
		}
		if err := schemas.Check(apischema.Error, body); err != nil {
			t.Error(err)
		}
	}
}

// TestReferenceEventNames: Symphony's events are named in the reference's
// vocabulary for last_event.
func TestReferenceEventNames(t *testing.T) {
	at := time.Now()
	cases := []struct {
		got, want string
	}{
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnInit}), "session_started"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnText}), "notification"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnOutcome, Result: &bus.TurnResult{}}), "turn_completed"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnOutcome, Result: &bus.TurnResult{IsError: true}}), "turn_failed"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnParseError}), "malformed"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnOther}), "other_message"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnTrackerTool, TrackerTool: &bus.ToolCallRecord{OK: true}}), "tool_call_completed"},
		{refTurnEvent(bus.TurnEvent{Kind: bus.TurnTrackerTool, TrackerTool: &bus.ToolCallRecord{}}), "tool_call_failed"},
		{refRunEvent(bus.RunEvent{Event: bus.RunDispatched, At: at}), "notification"},
		{refRunEvent(bus.RunEvent{Event: bus.RunSessionStarted}), "session_started"},
		{refRunEvent(bus.RunEvent{Event: bus.RunTurnFinished, Status: bus.RunSucceeded}), "turn_completed"},
		{refRunEvent(bus.RunEvent{Event: bus.RunTurnFinished, Status: bus.RunFailed}), "turn_failed"},
		{refRunEvent(bus.RunEvent{Event: bus.RunFinished, Status: bus.RunCanceled}), "turn_cancelled"},
		{refRunEvent(bus.RunEvent{Event: bus.RunFinished, Status: bus.RunBlocked}), "turn_ended_with_error"},
		{refRunEvent(bus.RunEvent{Event: bus.RunFinished, Status: bus.RunSucceeded}), "notification"},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: %q, want %q", i, c.got, c.want)
		}
	}
}

// TestReferenceTokens: input_tokens count every input token the model
// read, whatever the agent, and the parts add up.
func TestReferenceTokens(t *testing.T) {
	claude := toTokens(bus.Usage{InputTokens: 10, OutputTokens: 5, CacheReadInputTokens: 100, CacheCreationInputTokens: 20}, bus.AgentClaude)
	if claude.InputTokens != 130 || claude.TotalTokens != 135 || claude.UncachedInput != 10 || claude.CacheRead != 100 {
		t.Errorf("claude: %+v", claude)
	}
	codex := toTokens(bus.Usage{InputTokens: 130, OutputTokens: 5, CacheReadInputTokens: 100}, bus.AgentCodex)
	if codex.InputTokens != 130 || codex.TotalTokens != 135 || codex.UncachedInput != 30 {
		t.Errorf("codex: %+v", codex)
	}
}

// TestRunningTokensMoveMidTurn: a running row's tokens follow the live
// totals a codex run's progress reports, not only the summary's, which
// moves when a turn ends; totals behind the summary are ignored.
func TestRunningTokensMoveMidTurn(t *testing.T) {
	m := NewModel()
	m.PutRun(bus.RunSummary{RunID: "r1", Issue: bus.IssueRef{ID: "i1", Identifier: "ABC-1", State: "Todo"}, Status: bus.RunRunning,
		Agent: bus.AgentCodex, Usage: bus.Usage{InputTokens: 100, OutputTokens: 10}})
	m.ApplyProgress(bus.RunProgress{RunID: "r1", Last: bus.TurnEvent{RunID: "r1", Kind: bus.TurnSystem}, Totals: &bus.Usage{InputTokens: 300, OutputTokens: 40, CacheReadInputTokens: 200}})
	r, _ := m.Run("r1")
	if tok := toRunning(r, nil).Tokens; tok.InputTokens != 300 || tok.TotalTokens != 340 || tok.UncachedInput != 100 {
		t.Errorf("live tokens: %+v", tok)
	}
	m.PutRun(bus.RunSummary{RunID: "r1", Issue: bus.IssueRef{ID: "i1", Identifier: "ABC-1"}, Status: bus.RunRunning,
		Agent: bus.AgentCodex, Usage: bus.Usage{InputTokens: 500, OutputTokens: 50}})
	r, _ = m.Run("r1")
	if tok := toRunning(r, nil).Tokens; tok.TotalTokens != 550 {
		t.Errorf("the summary, ahead of the live totals, should win: %+v", tok)
	}
}

// FuzzRateLimits: whatever codex put in its rate-limit snapshot (bounded
// by the runner), rate_limits is null or an object that encodes, and
// Symphony's own keys are never taken over by codex's.
func FuzzRateLimits(f *testing.F) {
	f.Add([]byte(`{"rateLimits":{"limitId":"codex","primary":{"usedPercent":12.5,"windowDurationMins":300},"secondary":null,"credits":null}}`))
	f.Add([]byte(`{"rateLimits":{"agent":"spoof","tracker":1}}`))
	f.Add([]byte(`{"rateLimits":null}`))
	f.Add([]byte(`[1,2`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev := bus.TurnEvent{RunID: "r", Kind: bus.TurnRateLimit, At: time.Unix(0, 0), Raw: raw}
		out := rateLimitsOf(View{AgentLimit: &ev})
		if out == nil {
			t.Fatal("a rate-limit signal gave null rate_limits")
		}
		if _, ok := out["agent"].(*apiAgentLimit); !ok {
			t.Fatalf("agent key is %T, not Symphony's", out["agent"])
		}
		if v, ok := out["tracker"]; ok {
			t.Fatalf("codex's snapshot set the tracker key: %v", v)
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReferenceTimesWholeSeconds: the reference-shaped answers carry every
// time in whole UTC seconds with a Z, truncated — the named fields and the
// embedded ones alike — while text that merely contains a time is left
// alone, and /api/v1/runs (writeJSON) keeps its precision.
func TestReferenceTimesWholeSeconds(t *testing.T) {
	at := time.Date(2026, 12, 8, 3, 4, 5, 999_999_999, time.FixedZone("X", 3600))
	type inner struct {
		At *time.Time `json:"at"`
	}
	v := struct {
		GeneratedAt time.Time `json:"generated_at"`
		Started     string    `json:"started"`
		Message     string    `json:"message"`
		Nested      []inner   `json:"nested"`
	}{at, at.UTC().Format(time.RFC3339Nano), `said "2026-12-08T02:04:05.5Z" then`, []inner{{&at}}}
	w := httptest.NewRecorder()
	writeRefJSON(w, http.StatusOK, v)
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err, w.Body.String())
	}
	if got["generated_at"] != "2026-12-08T02:04:05Z" || got["started"] != "2026-12-08T02:04:05Z" {
		t.Errorf("times not whole UTC seconds: %s", w.Body.String())
	}
	if n := got["nested"].([]any)[0].(map[string]any)["at"]; n != "2026-12-08T02:04:05Z" {
		t.Errorf("nested at = %v", n)
	}
	if got["message"] != `said "2026-12-08T02:04:05.5Z" then` {
		t.Errorf("text inside a string was rewritten: %v", got["message"])
	}
	if _, err := time.Parse(time.RFC3339, got["generated_at"].(string)); err != nil {
		t.Error(err)
	}
	w = httptest.NewRecorder()
	writeJSON(w, http.StatusOK, v)
	if !strings.Contains(w.Body.String(), ".999999999") {
		t.Errorf("writeJSON lost precision: %s", w.Body.String())
	}
}

// TestLastErrorIsTheBlockOrRetry: last_error of GET /api/v1/<identifier>
// is the block's or the queued retry's error, as in the reference: an
// issue running again after a failed run has none (its runs[] keep the
// old failure).
func TestLastErrorIsTheBlockOrRetry(t *testing.T) {
	h := newHarness(t)
	ref := bus.IssueRef{ID: "id-ABC-5", Identifier: "ABC-5", Title: "again", State: "In Progress"}
	at := time.Now().UTC().Add(-10 * time.Minute)
	for i, e := range []bus.RunEvent{
		{RunID: "run-old", Event: bus.RunDispatched, At: at, Issue: ref},
		{RunID: "run-old", Event: bus.RunFinished, At: at.Add(time.Second), Issue: ref, Status: bus.RunFailed, Error: "old boom"},
	} {
		if err := runlog.Record(t.Context(), h.b, e, fmt.Sprint("old-", i)); err != nil {
			t.Fatal(err)
		}
	}
	h.record(t, "run-new", "ABC-5", "again", false)
	var got struct {
		Status    string
		LastError *string `json:"last_error"`
		Runs      []struct {
			RunID string `json:"run_id"`
			Error string `json:"error"`
		}
	}
	h.eventually(t, "ABC-5 running with both runs", func() bool {
		resp, body := get(t, h.url+"/api/v1/ABC-5")
		if resp.StatusCode != http.StatusOK {
			return false
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		return got.Status == "running" && len(got.Runs) == 2
	})
	if got.LastError != nil {
		t.Errorf("last_error = %q for a running issue; want null (the old run's failure is in runs[])", *got.LastError)
	}
	if got.Runs[1].RunID != "run-old" || got.Runs[1].Error != "old boom" {
		t.Errorf("runs = %+v", got.Runs)
	}
}

// TestRowsCarryWorkspacePathAndWorkerHost: running rows and the issue
// endpoint give workspace_path and worker_host as the reference's do;
// worker_host is null (agents run on this host), and so is the issue's
// workspace.host.
func TestRowsCarryWorkspacePathAndWorkerHost(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-w", "ABC-8", "where", false)
	var st struct {
		Running []map[string]any `json:"running"`
	}
	h.eventually(t, "ABC-8 running with its workspace", func() bool {
		_, body := get(t, h.url+"/api/v1/state")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return len(st.Running) == 1 && st.Running[0]["workspace_path"] != nil
	})
	row := st.Running[0]
	if host, ok := row["worker_host"]; !ok || host != nil || row["workspace_path"] != "/tmp/ws/ABC-8" {
		t.Errorf("running row: workspace_path %v, worker_host %v (present %v)", row["workspace_path"], host, ok)
	}
	_, body := get(t, h.url+"/api/v1/ABC-8")
	var iss struct {
		Workspace map[string]any `json:"workspace"`
		Running   map[string]any `json:"running"`
	}
	if err := json.Unmarshal([]byte(body), &iss); err != nil {
		t.Fatal(err)
	}
	if host, ok := iss.Workspace["host"]; !ok || host != nil || iss.Workspace["path"] != "/tmp/ws/ABC-8" || iss.Running["workspace_path"] != "/tmp/ws/ABC-8" {
		t.Errorf("issue: workspace %v, running.workspace_path %v", iss.Workspace, iss.Running["workspace_path"])
	}
	if host, ok := iss.Running["worker_host"]; !ok || host != nil {
		t.Errorf("issue running.worker_host = %v (present %v), want null", host, ok)
	}
}
