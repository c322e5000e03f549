package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/runlog"
)

// The JSON API: GET /api/v1/state, GET /api/v1/<identifier> and POST
// /api/v1/refresh keep the reference specification's shapes (§13.7.2);
// the run endpoints are ours. Errors are {"error":{"code","message"}}.

type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers with the JSON error envelope under /api/ and plain
// text elsewhere.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, status, apiError{apiErrorBody{Code: code, Message: msg}})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// only wraps an API handler so other methods get a JSON 405.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+method)
			return
		}
		h(w, r)
	}
}

type apiTokens struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
	CacheRead    int64 `json:"cache_read_input_tokens"`
	CacheCreate  int64 `json:"cache_creation_input_tokens"`
}

func toTokens(u bus.Usage) apiTokens {
	return apiTokens{u.InputTokens, u.OutputTokens, u.InputTokens + u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens}
}

type apiRunning struct {
	IssueID         string    `json:"issue_id"`
	IssueIdentifier string    `json:"issue_identifier"`
	State           string    `json:"state"`
	SessionID       string    `json:"session_id"`
	TurnCount       int       `json:"turn_count"`
	LastEvent       string    `json:"last_event"`
	LastMessage     string    `json:"last_message"`
	StartedAt       time.Time `json:"started_at"`
	LastEventAt     *string   `json:"last_event_at"`
	Tokens          apiTokens `json:"tokens"`
	RunID           string    `json:"run_id"`
	Attempt         *int      `json:"attempt"`
	CostUSD         *float64  `json:"cost_usd"`
	Workspace       string    `json:"workspace,omitempty"`
	// BudgetUSD is the cost the budget caps count, priced from the
	// pricing table when the agent reports none (codex).
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
}

func toRunning(r RunView) apiRunning {
	out := apiRunning{IssueID: r.Issue.ID, IssueIdentifier: r.Issue.Identifier, State: r.Issue.State, SessionID: r.Session(),
		TurnCount: r.Turns, LastEvent: r.LastEvent, LastMessage: r.LastMessage, StartedAt: r.Started, Tokens: toTokens(r.Usage),
		RunID: r.RunID, Attempt: r.Attempt, CostUSD: r.CostUSD, Workspace: r.Workspace, BudgetUSD: r.BudgetUSD}
	if !r.LastEventAt.IsZero() {
		s := r.LastEventAt.UTC().Format(time.RFC3339Nano)
		out.LastEventAt = &s
	}
	return out
}

type apiRetry struct {
	IssueID         string    `json:"issue_id"`
	IssueIdentifier string    `json:"issue_identifier"`
	Attempt         int       `json:"attempt"`
	DueAt           time.Time `json:"due_at"`
	Error           *string   `json:"error"`
}

func toRetry(r bus.RetryEntry) apiRetry {
	out := apiRetry{IssueID: r.IssueID, IssueIdentifier: r.Identifier, Attempt: r.Attempt, DueAt: r.DueAt}
	if r.Error != "" {
		out.Error = &r.Error
	}
	return out
}

type apiTotals struct {
	InputTokens    int64   `json:"input_tokens"`
	OutputTokens   int64   `json:"output_tokens"`
	TotalTokens    int64   `json:"total_tokens"`
	SecondsRunning float64 `json:"seconds_running"`
	CostUSD        float64 `json:"cost_usd"`
}

type apiRateLimits struct {
	Agent   *apiAgentLimit `json:"agent,omitempty"`
	Tracker *apiTrackerErr `json:"tracker,omitempty"`
}

type apiAgentLimit struct {
	RunID   string    `json:"run_id"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

type apiTrackerErr struct {
	Class        string    `json:"class"`
	Message      string    `json:"message"`
	At           time.Time `json:"at"`
	RetryAfterMS int64     `json:"retry_after_ms,omitempty"`
}

type apiState struct {
	GeneratedAt time.Time          `json:"generated_at"`
	Counts      map[string]int     `json:"counts"`
	Running     []apiRunning       `json:"running"`
	Retrying    []apiRetry         `json:"retrying"`
	Blocked     []bus.BlockedEntry `json:"blocked"`
	CodexTotals apiTotals          `json:"codex_totals"`
	RateLimits  *apiRateLimits     `json:"rate_limits"`
	Paused      bool               `json:"paused"`
	Workflow    *apiWorkflow       `json:"workflow"`
	LastPoll    *apiPoll           `json:"last_poll"`
	PollError   *apiTrackerErr     `json:"poll_error"`
	Replay      *ReplayInfo        `json:"replay,omitempty"`
	// Budget is spend control (spendapi.go).
	Budget *apiBudget `json:"budget"`
	// Scheduler is the cluster's active scheduler and standbys
	// (clusterapi.go); absent with the embedded server.
	Scheduler *apiScheduler `json:"scheduler,omitempty"`
}

type apiWorkflow struct {
	Version  int64              `json:"version"`
	Valid    bool               `json:"valid"`
	Path     string             `json:"path,omitempty"`
	LoadedAt *time.Time         `json:"loaded_at,omitempty"`
	Error    *bus.WorkflowError `json:"error,omitempty"`
}

type apiPoll struct {
	At         time.Time `json:"at"`
	Issues     int       `json:"issues"`
	DurationMS int64     `json:"duration_ms"`
}

func (s *Server) apiState(w http.ResponseWriter, r *http.Request) {
	v := s.model.Snapshot(s.opts.Now(), 0)
	out := apiState{GeneratedAt: v.Now.UTC(), Running: []apiRunning{}, Retrying: []apiRetry{}, Blocked: v.Blocked, Paused: v.Paused.Paused, Replay: v.Replay}
	if out.Blocked == nil {
		out.Blocked = []bus.BlockedEntry{}
	}
	t := v.Totals
	out.Counts = map[string]int{"running": t.Running, "retrying": t.Retrying, "blocked": t.Blocked,
		"succeeded_today": t.SucceededToday, "failed_today": t.FailedToday, "runs": t.Runs}
	for _, r := range v.Running {
		out.Running = append(out.Running, toRunning(r))
	}
	for _, r := range v.Retries {
		out.Retrying = append(out.Retrying, toRetry(r))
	}
	out.CodexTotals = apiTotals{t.Usage.InputTokens, t.Usage.OutputTokens, t.TotalTokens(), t.AgentSeconds, t.CostUSD}
	if rl := rateLimits(v); rl.Agent != nil || rl.Tracker != nil {
		out.RateLimits = &rl
	}
	out.Workflow = workflowOf(v)
	if v.LastPoll != nil {
		out.LastPoll = &apiPoll{At: v.LastPoll.FetchedAt, Issues: len(v.LastPoll.Issues), DurationMS: v.LastPoll.DurationMS}
	}
	if p := v.PollFail; p != nil {
		out.PollError = &apiTrackerErr{p.Class, p.Message, p.At, p.RetryAfterMS}
	}
	out.Budget = budgetOf(v)
	out.Scheduler = s.schedulerOf(r.Context())
	writeJSON(w, http.StatusOK, out)
}

func rateLimits(v View) apiRateLimits {
	var rl apiRateLimits
	if a := v.AgentLimit; a != nil {
		rl.Agent = &apiAgentLimit{RunID: a.RunID, At: a.At, Message: oneLine(a.Text, 300)}
	}
	if p := v.PollFail; p != nil && p.Class == bus.TrackerRateLimited {
		rl.Tracker = &apiTrackerErr{p.Class, p.Message, p.At, p.RetryAfterMS}
	}
	return rl
}

func workflowOf(v View) *apiWorkflow {
	if v.Config == nil && v.Workflow == nil {
		return nil
	}
	out := &apiWorkflow{Valid: true}
	if c := v.Config; c != nil {
		out.Version, out.Path = c.Version, c.Path
		at := c.LoadedAt
		out.LoadedAt = &at
	}
	if st := v.Workflow; st != nil {
		out.Valid, out.Error = st.Valid, st.Error
		if st.Version != 0 {
			out.Version = st.Version
		}
	}
	return out
}

type apiIssue struct {
	IssueIdentifier string            `json:"issue_identifier"`
	IssueID         string            `json:"issue_id"`
	Status          string            `json:"status"`
	Workspace       *apiWorkspace     `json:"workspace"`
	Attempts        apiAttempts       `json:"attempts"`
	Running         *apiRunning       `json:"running"`
	Retry           *apiRetry         `json:"retry"`
	Blocked         *bus.BlockedEntry `json:"blocked"`
	Issue           *bus.Issue        `json:"issue"`
	Runs            []apiRun          `json:"runs"`
	RecentEvents    []apiEvent        `json:"recent_events"`
	LastError       *string           `json:"last_error"`
	Logs            apiLogs           `json:"logs"`
	Tracked         map[string]any    `json:"tracked"`
	// Spend is the issue's lifetime spend against its caps (spendapi.go).
	Spend *apiIssueSpend `json:"spend"`
}

// apiLogs keeps the reference's logs key; Symphony keeps agent output in the
// run store (see runs[].run_id and /api/v1/runs/<id>/events), not in files.
type apiLogs struct {
	CodexSessionLogs []any `json:"codex_session_logs"`
}

type apiWorkspace struct {
	Path string `json:"path"`
}

type apiAttempts struct {
	RestartCount        int  `json:"restart_count"`
	CurrentRetryAttempt *int `json:"current_retry_attempt"`
}

type apiEvent struct {
	At      time.Time `json:"at"`
	Event   string    `json:"event"`
	Message string    `json:"message"`
}

type apiRun struct {
	bus.RunSummary
	LastEvent   string     `json:"last_event,omitempty"`
	LastEventAt *time.Time `json:"last_event_at,omitempty"`
}

func toRun(r RunView) apiRun {
	out := apiRun{RunSummary: r.RunSummary, LastEvent: r.LastEvent}
	out.SessionID = r.Session()
	if !r.LastEventAt.IsZero() {
		t := r.LastEventAt
		out.LastEventAt = &t
	}
	return out
}

// recentEventCount bounds recent_events of the issue endpoint.
const recentEventCount = 20

func (s *Server) apiIssue(w http.ResponseWriter, r *http.Request) {
	ident := r.PathValue("identifier")
	if !safeid.Valid(ident) {
		writeError(w, r, http.StatusNotFound, "issue_not_found", "no issue "+strconvQuote(clip(ident, 80))+": identifiers match "+safeid.Rule)
		return
	}
	iv, ok := s.model.Issue(ident)
	if !ok {
		writeError(w, r, http.StatusNotFound, "issue_not_found", "no issue "+ident+" is known to this instance (not polled, run, retried or blocked)")
		return
	}
	s.fullIssue(r.Context(), &iv)
	out := apiIssue{IssueIdentifier: ident, IssueID: iv.Ref.ID, Issue: iv.Issue, Blocked: iv.Blocked, Runs: []apiRun{}, RecentEvents: []apiEvent{}, Tracked: map[string]any{}, Logs: apiLogs{CodexSessionLogs: []any{}}}
	out.Status = "idle"
	switch {
	case len(iv.Runs) > 0 && iv.Runs[0].Status == bus.RunRunning:
		out.Status = "running"
		run := toRunning(iv.Runs[0])
		out.Running = &run
	case iv.Retry != nil:
		out.Status = "retrying"
	case iv.Blocked != nil:
		out.Status = "blocked"
	}
	if iv.Retry != nil {
		rt := toRetry(*iv.Retry)
		out.Retry = &rt
		out.Attempts.CurrentRetryAttempt = &iv.Retry.Attempt
	}
	if len(iv.Runs) > 1 {
		out.Attempts.RestartCount = len(iv.Runs) - 1
	}
	if ws := s.workspaceOf(iv); ws != "" {
		out.Workspace = &apiWorkspace{Path: ws}
	}
	for _, run := range iv.Runs {
		out.Runs = append(out.Runs, toRun(run))
		if out.LastError == nil && run.Error != "" {
			e := run.Error
			out.LastError = &e
		}
	}
	if len(iv.Runs) > 0 {
		out.RecentEvents = s.recentEvents(r.Context(), iv.Runs[0].RunID)
	}
	out.Spend = issueSpendOf(iv.Spend)
	writeJSON(w, http.StatusOK, out)
}

// workspaceOf is the issue's workspace path: as its latest run recorded it,
// else where the configured root puts it.
func (s *Server) workspaceOf(iv IssueView) string {
	if iv.Workspace != "" {
		return iv.Workspace
	}
	v := s.model.Snapshot(s.opts.Now(), 0)
	if v.Config != nil && v.Config.Config.Workspace.Root != "" {
		return strings.TrimSuffix(v.Config.Config.Workspace.Root, "/") + "/" + iv.Identifier
	}
	return ""
}

// recentEvents summarizes the last events of a run. The run is read
// through, keeping only the last recentEventCount.
func (s *Server) recentEvents(ctx context.Context, runID string) []apiEvent {
	release, err := s.streams.read(ctx, s.streams.detailWait)
	if err != nil {
		return []apiEvent{} // busy with other readers: answered without them
	}
	defer release()
	var last []runlog.Event
	n := 0
	_, err = s.feed.Timeline(ctx, runID, false, func(ev runlog.Event) error {
		if len(last) < recentEventCount {
			last = append(last, ev)
		} else {
			last[n%recentEventCount] = ev
		}
		n++
		return nil
	})
	if err != nil {
		s.log.Warn("read run events", "run_id", runID, "err", err)
		return []apiEvent{}
	}
	if len(last) == recentEventCount {
		k := n % recentEventCount
		last = append(last[k:], last[:k]...)
	}
	out := []apiEvent{}
	for _, ev := range last {
		name, msg := eventSummary(ev)
		out = append(out, apiEvent{At: ev.At, Event: name, Message: msg})
	}
	return out
}

// eventSummary names an event and says what it was in one line.
func eventSummary(ev runlog.Event) (string, string) {
	switch {
	case ev.Run != nil:
		msg := ev.Run.Error
		if ev.Run.Status != "" {
			msg = strings.TrimSuffix(string(ev.Run.Status)+": "+msg, ": ")
		}
		return "run_" + string(ev.Run.Event), msg
	case ev.Hook != nil:
		return "hook_" + ev.Hook.Hook + "_" + string(ev.Hook.Phase), ev.Hook.Error
	case ev.Turn != nil:
		return string(ev.Turn.Kind), eventMessage(*ev.Turn)
	}
	return "unknown", ""
}

type apiRefresh struct {
	Queued      bool      `json:"queued"`
	Coalesced   bool      `json:"coalesced"`
	RequestedAt time.Time `json:"requested_at"`
	Operations  []string  `json:"operations"`
}

// maxControlBody bounds a control request's body (it carries nothing we
// need, but it is read).
const maxControlBody = 4 << 10

func (s *Server) apiRefresh(w http.ResponseWriter, r *http.Request) {
	if err := checkControlBody(w, r); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", "the body must be empty or a JSON object: "+clip(err.Error(), 200))
		return
	}
	at := s.opts.Now().UTC()
	res, err := s.control(r.Context(), bus.Control{Action: bus.ControlRefresh, Reason: "POST /api/v1/refresh"})
	if err != nil {
		s.controlError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, apiRefresh{Queued: true, Coalesced: res.Coalesced, RequestedAt: at, Operations: []string{"poll", "reconcile"}})
}

// checkControlBody reads a control request's body, at most maxControlBody
// bytes, and accepts it only when it is empty (white space) or exactly one
// JSON object: anything else (null, an array, a trailing second value) is
// a client that means something we would silently ignore.
func checkControlBody(w http.ResponseWriter, r *http.Request) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if raw[0] != '{' {
		return errors.New("not a JSON object")
	}
	// Unmarshal refuses anything after the object.
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

// controlTimeout bounds a wait for the scheduler's answer.
const controlTimeout = 10 * time.Second

// control sends an operator command to the scheduler.
func (s *Server) control(ctx context.Context, c bus.Control) (bus.ControlResult, error) {
	if s.opts.Bus == nil {
		return bus.ControlResult{}, errReadOnly
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	return bus.Ask(ctx, s.opts.Bus, bus.SchedulerControl, c)
}

func (s *Server) controlError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errReadOnly):
		writeError(w, r, http.StatusConflict, "read_only", err.Error())
	case errors.Is(err, bus.ErrNoResponder), errors.Is(err, context.DeadlineExceeded):
		writeError(w, r, http.StatusServiceUnavailable, "scheduler_unavailable", "the scheduler did not answer: "+err.Error())
	default:
		writeError(w, r, http.StatusBadGateway, "control_failed", err.Error())
	}
}

// runsLimit bounds /api/v1/runs.
const runsLimit = 1000

func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 {
			writeError(w, r, http.StatusBadRequest, "bad_request", "limit must be a positive integer")
			return
		}
		limit = min(n, runsLimit)
	}
	status := r.URL.Query().Get("status")
	if err := checkStatusFilter(status); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	issue := r.URL.Query().Get("issue")
	v := s.model.Snapshot(s.opts.Now(), runsLimit*10)
	all := append(slices.Clone(v.Running), v.Recent...)
	out := []apiRun{}
	for _, run := range all {
		if status != "" && string(run.Status) != status {
			continue
		}
		if issue != "" && run.Issue.Identifier != issue && run.Issue.ID != issue {
			continue
		}
		out = append(out, toRun(run))
		if len(out) == limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out, "count": len(out)})
}

func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, ok := s.lookupRun(r.Context(), id)
	if !ok {
		writeError(w, r, http.StatusNotFound, "run_not_found", "no run "+strconvQuote(clip(id, 80)))
		return
	}
	writeJSON(w, http.StatusOK, toRun(run))
}

// lookupRun finds a run in the model, or failing that (a run the KV has
// not shown yet) from its stored events.
func (s *Server) lookupRun(ctx context.Context, id string) (RunView, bool) {
	if !safeid.Valid(id) {
		return RunView{}, false
	}
	if run, ok := s.model.Run(id); ok {
		return run, true
	}
	// Each such read opens consumers on the store: a flood of made-up ids
	// waits for the read slots like a flood of run pages.
	release, err := s.streams.read(ctx, s.streams.detailWait)
	if err != nil {
		return RunView{}, false
	}
	defer release()
	var v RunView
	if _, err := s.feed.Timeline(ctx, id, true, func(ev runlog.Event) error {
		if ev.Run != nil {
			runlog.Apply(&v.RunSummary, *ev.Run)
		}
		return nil
	}); err != nil {
		return RunView{}, false
	}
	return v, v.RunID != ""
}

// apiRunEvents streams a run's stored events as SSE (one JSON object per
// event, the JSONL export format), then every new one; Last-Event-ID
// resumes. The stored events go out as the run's timeline, in time order
// like `symphony replay --jsonl`: following alone hands each stream's
// backlog over in turn (every lifecycle event, then every agent event), so
// a client that stops at run_finished would miss the transcript. Only what
// was stored after the timeline was read comes from the follow.
func (s *Server) apiRunEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.lookupRun(r.Context(), id); !ok {
		writeError(w, r, http.StatusNotFound, "run_not_found", "no run "+strconvQuote(clip(id, 80)))
		return
	}
	after, err := cursorOf(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		return
	}
	// A store that cannot answer is a 502 before the stream starts.
	if _, err := s.feed.Stored(r.Context(), id); err != nil {
		s.log.Warn("read run events", "run_id", id, "err", err)
		writeError(w, r, http.StatusBadGateway, "events_unavailable", "the run's events could not be read: "+err.Error())
		return
	}
	sse, err := s.startSSE(w, r)
	if err != nil {
		return
	}
	defer sse.close()
	var line []byte
	send := func(ev runlog.Event, cur runlog.Cursor) error {
		var err error
		if line, err = ev.AppendJSON(line[:0]); err != nil {
			return fmt.Errorf("encode event %s/%d: %w", ev.Stream, ev.Seq, err)
		}
		return sse.queueBytes(ev.Stream, cur.String(), line)
	}
	// Each event's id is the cursor after it; a resume skips what its
	// cursor includes, which is the timeline up to that event. The
	// timeline is read as it is sent (a slow client holds a few pieces of
	// it, not the run).
	cur := after
	var sendErr error
	stored, err := s.feed.Timeline(r.Context(), id, true, func(ev runlog.Event) error {
		if after.Includes(ev) {
			return nil
		}
		cur.Advance(ev)
		sendErr = send(ev, cur)
		return sendErr
	})
	if err != nil {
		if sendErr == nil && r.Context().Err() == nil {
			// A read that failed part way: the client may resume from the
			// last id it got.
			s.log.Warn("read run events", "run_id", id, "err", err)
			msg, _ := json.Marshal(apiErrorBody{Code: "events_unavailable", Message: "the run's events could not be read: " + clip(err.Error(), 500)})
			_ = sse.send("error", "", string(msg))
		}
		return
	}
	if err := sse.flush(); err != nil {
		return
	}
	// The stream ends once the run has ended and everything it stored was
	// sent (so `curl` exports terminate); a live run streams on.
	_ = s.followRun(r.Context(), id, laterCursor(cur, stored), true,
		func(_ context.Context, ev runlog.Event, cur runlog.Cursor) error { return send(ev, cur) },
		sse.flush,
		func(ctx context.Context) (bool, error) {
			run, ok := s.lookupRun(ctx, id)
			return ok && run.Status != bus.RunRunning, nil
		},
		func(cur runlog.Cursor) error { return sse.send("end", cur.String(), "{}") })
}

// laterCursor is the cursor past both a and b: in each stream the further
// of the two (the timeline's cursor also passes messages it could not
// read, which a client's cursor need not).
func laterCursor(a, b runlog.Cursor) runlog.Cursor {
	out := runlog.Cursor{Runs: max(a.Runs, b.Runs), Hooks: max(a.Hooks, b.Hooks), Turns: a.Turns, TurnsPart: a.TurnsPart}
	if ta, tb := (runlog.Cursor{Turns: a.Turns, TurnsPart: a.TurnsPart}), (runlog.Cursor{Turns: b.Turns, TurnsPart: b.TurnsPart}); !ta.Covers(tb) {
		out.Turns, out.TurnsPart = b.Turns, b.TurnsPart
	}
	return out
}

// cursorOf reads where a stream resumes: Last-Event-ID (a reconnect) wins
// over ?after=.
func cursorOf(r *http.Request) (runlog.Cursor, error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("after")
	}
	if raw == "" {
		return runlog.Cursor{}, nil
	}
	return runlog.ParseCursor(raw)
}
