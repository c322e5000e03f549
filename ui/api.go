package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
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

// refTimeRe matches a JSON string value that is an RFC 3339 time as
// time.Time marshals it: the opening quote is not escaped (so never text
// inside another string), the fraction and a numeric offset optional.
var refTimeRe = regexp.MustCompile(`([^\\])"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))"`)

// refTimes rewrites every time in an encoded reference-shaped answer to
// whole seconds in UTC with a Z, as the reference writes its times (it
// truncates; jq's fromdateiso8601 refuses fractions). It works on the
// encoding rather than on each field so the times inside embedded bus
// types (a run summary's started, an issue's created_at, a block's at) are
// covered as well as the named ones. A time is truncated, never rounded.
func refTimes(b []byte) []byte {
	return refTimeRe.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := refTimeRe.FindSubmatch(m)
		t, err := time.Parse(time.RFC3339Nano, string(sub[2]))
		if err != nil {
			return m
		}
		out := append([]byte{}, sub[1]...)
		return append(append(append(out, '"'), t.UTC().Truncate(time.Second).Format(time.RFC3339)...), '"')
	})
}

// writeRefJSON is writeJSON for the reference-shaped answers (state, an
// issue, refresh): their times in whole seconds (refTimes). Symphony's own
// endpoints (/api/v1/runs…) keep full precision.
func writeRefJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{apiErrorBody{Code: "internal_error", Message: "encode: " + err.Error()}})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(refTimes(buf.Bytes()))
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

// apiTokens are a run's tokens. input_tokens, output_tokens and
// total_tokens mean what they mean in the reference implementation, whose
// input_tokens are codex's, cached ones included: every input token the
// model read, so claude's cache reads and writes are in it too and the
// figures of the two agents compare. The parts follow.
type apiTokens struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
	// UncachedInput is input_tokens less the cache reads and writes.
	UncachedInput int64 `json:"uncached_input_tokens"`
	CacheRead     int64 `json:"cache_read_input_tokens"`
	CacheCreate   int64 `json:"cache_creation_input_tokens"`
}

// toTokens reads u as agent counts it (bus.Usage.BudgetTokens: claude
// reports cache tokens beside its input tokens, codex inside them).
func toTokens(u bus.Usage, agent string) apiTokens {
	total := u.BudgetTokens(agent)
	out := max(u.OutputTokens, 0)
	in := total - out
	return apiTokens{InputTokens: in, OutputTokens: out, TotalTokens: total,
		UncachedInput: max(in-max(u.CacheReadInputTokens, 0)-max(u.CacheCreationInputTokens, 0), 0),
		CacheRead:     u.CacheReadInputTokens, CacheCreate: u.CacheCreationInputTokens}
}

// apiRunning is a running issue. The reference's fields come first; the
// rest are Symphony's. state is the issue's state as the latest poll saw
// it (the reference refreshes it as it reconciles), state_at_dispatch the
// one the run started with. last_event names the latest event in the
// reference's vocabulary (refevents.go), last_event_kind in Symphony's.
type apiRunning struct {
	IssueID         string    `json:"issue_id"`
	IssueIdentifier string    `json:"issue_identifier"`
	IssueURL        *string   `json:"issue_url"`
	State           string    `json:"state"`
	SessionID       *string   `json:"session_id"`
	TurnCount       int       `json:"turn_count"`
	LastEvent       *string   `json:"last_event"`
	LastMessage     *string   `json:"last_message"`
	StartedAt       time.Time `json:"started_at"`
	LastEventAt     *string   `json:"last_event_at"`
	Tokens          apiTokens `json:"tokens"`
	WorkspacePath   *string   `json:"workspace_path"`
	WorkerHost      *string   `json:"worker_host"`
	StateAtDispatch string    `json:"state_at_dispatch"`
	LastEventKind   *string   `json:"last_event_kind"`
	RunID           string    `json:"run_id"`
	Attempt         *int      `json:"attempt"`
	CostUSD         *float64  `json:"cost_usd"`
	Workspace       string    `json:"workspace,omitempty"`
	Agent           string    `json:"agent,omitempty"`
	// BudgetUSD is the cost the budget caps count, priced from the
	// pricing table when the agent reports none (codex).
	BudgetUSD *float64 `json:"budget_usd,omitempty"`
}

// liveUsage is the run's usage as of now: the mid-turn totals its agent
// reported (codex), when they are ahead of the summary, which moves only
// when a turn ends.
func (r RunView) liveUsage() bus.Usage {
	if t := r.LiveTotals; t != nil && t.BudgetTokens(r.Agent) > r.Usage.BudgetTokens(r.Agent) {
		return *t
	}
	return r.Usage
}

// polledIssues are the latest poll's issues by identifier.
type polledIssues map[string]bus.Issue

func polledOf(v View) polledIssues {
	out := polledIssues{}
	if v.LastPoll != nil {
		for _, iss := range v.LastPoll.Issues {
			out[iss.Identifier] = iss
		}
	}
	return out
}

// nonEmpty is s, or nil (null) when empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toRunning(r RunView, polled polledIssues) apiRunning {
	out := apiRunning{IssueID: r.Issue.ID, IssueIdentifier: r.Issue.Identifier, IssueURL: nonEmpty(r.Issue.URL), State: r.Issue.State,
		SessionID: nonEmpty(r.Session()), TurnCount: r.Turns, LastEvent: nonEmpty(r.LastEventRef), LastMessage: nonEmpty(r.LastMessage),
		StartedAt: r.Started, Tokens: toTokens(r.liveUsage(), r.Agent), StateAtDispatch: r.Issue.State, LastEventKind: nonEmpty(r.LastEvent),
		RunID: r.RunID, Attempt: r.Attempt, CostUSD: r.CostUSD, Workspace: r.Workspace, Agent: r.Agent, BudgetUSD: r.BudgetUSD,
		WorkspacePath: nonEmpty(r.Workspace)}
	if iss, ok := polled[r.Issue.Identifier]; ok && iss.ID == r.Issue.ID {
		out.State = iss.State
		if iss.URL != nil {
			out.IssueURL = iss.URL
		}
	}
	if !r.LastEventAt.IsZero() {
		s := r.LastEventAt.UTC().Format(time.RFC3339Nano)
		out.LastEventAt = &s
	}
	return out
}

// apiRetry is a queued retry. workspace_path is where the issue's
// workspace is (its latest run's, else where the root puts it);
// worker_host, the reference's SSH worker, is always null: Symphony runs
// its agents on this host.
type apiRetry struct {
	IssueID         string    `json:"issue_id"`
	IssueIdentifier string    `json:"issue_identifier"`
	IssueURL        *string   `json:"issue_url"`
	Attempt         int       `json:"attempt"`
	DueAt           time.Time `json:"due_at"`
	Error           *string   `json:"error"`
	WorkspacePath   *string   `json:"workspace_path"`
	WorkerHost      *string   `json:"worker_host"`
}

func toRetry(r bus.RetryEntry, url *string, workspace string) apiRetry {
	return apiRetry{IssueID: r.IssueID, IssueIdentifier: r.Identifier, IssueURL: url, Attempt: r.Attempt, DueAt: r.DueAt, Error: nonEmpty(r.Error),
		WorkspacePath: nonEmpty(workspace)}
}

// apiBlocked is a parked issue: Symphony's entry (identifier, reason, at,
// cap…) with the reference's names for the same facts (issue_identifier,
// error, blocked_at) and what the run that parked it last did.
type apiBlocked struct {
	bus.BlockedEntry
	IssueIdentifier string  `json:"issue_identifier"`
	IssueURL        *string `json:"issue_url"`
	Error           string  `json:"error"`
	BlockedAt       string  `json:"blocked_at"`
	SessionID       *string `json:"session_id"`
	LastEvent       *string `json:"last_event"`
	LastMessage     *string `json:"last_message"`
	LastEventAt     *string `json:"last_event_at"`
	LastEventKind   *string `json:"last_event_kind"`
	WorkspacePath   *string `json:"workspace_path"`
	WorkerHost      *string `json:"worker_host"`
}

// toBlocked adds the reference's fields to a block; run is the run that
// parked it, when the dashboard knows it.
func toBlocked(b bus.BlockedEntry, url *string, run *RunView, workspace string) apiBlocked {
	out := apiBlocked{BlockedEntry: b, IssueIdentifier: b.Identifier, IssueURL: url, Error: b.Reason,
		BlockedAt: b.At.UTC().Format(time.RFC3339Nano), WorkspacePath: nonEmpty(workspace)}
	if run != nil {
		out.SessionID, out.LastEvent, out.LastMessage, out.LastEventKind =
			nonEmpty(run.Session()), nonEmpty(run.LastEventRef), nonEmpty(run.LastMessage), nonEmpty(run.LastEvent)
		if !run.LastEventAt.IsZero() {
			s := run.LastEventAt.UTC().Format(time.RFC3339Nano)
			out.LastEventAt = &s
		}
	}
	return out
}

// issueURL is an issue's URL: as the latest poll saw it, else as its runs
// recorded it; nil when neither knows one.
func (s *Server) issueURL(ident string, polled polledIssues) *string {
	if iss, ok := polled[ident]; ok && iss.URL != nil {
		return iss.URL
	}
	if iv, ok := s.model.Issue(ident); ok {
		return nonEmpty(iv.Ref.URL)
	}
	return nil
}

// blockedRow is toBlocked with the URL and the run looked up.
func (s *Server) blockedRow(b bus.BlockedEntry, polled polledIssues, workspace string) apiBlocked {
	var run *RunView
	if r, ok := s.model.Run(b.RunID); ok && b.RunID != "" {
		run = &r
	}
	return toBlocked(b, s.issueURL(b.Identifier, polled), run, workspace)
}

// workspaceIn is where the configured root (workspaceRoot) puts the
// issue's workspace, "" when no root is known. A state row takes it from
// here rather than from the issue's runs: one lookup per row, not a scan.
func workspaceIn(root, ident string) string {
	if root == "" {
		return ""
	}
	return root + "/" + ident
}

// workspaceRoot is the configured workspace root without its trailing
// slash, "" when no configuration is loaded.
func workspaceRoot(v View) string {
	if v.Config == nil {
		return ""
	}
	return strings.TrimSuffix(v.Config.Config.Workspace.Root, "/")
}

// apiTotals are every run's tokens, runtime and cost, whatever the agent
// (the reference's name, codex_totals, is kept for its readers); tokens
// count as in apiTokens.
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
	GeneratedAt time.Time      `json:"generated_at"`
	Counts      map[string]int `json:"counts"`
	Running     []apiRunning   `json:"running"`
	Retrying    []apiRetry     `json:"retrying"`
	Blocked     []apiBlocked   `json:"blocked"`
	CodexTotals apiTotals      `json:"codex_totals"`
	RateLimits  map[string]any `json:"rate_limits"`
	Paused      bool           `json:"paused"`
	Workflow    *apiWorkflow   `json:"workflow"`
	LastPoll    *apiPoll       `json:"last_poll"`
	PollError   *apiTrackerErr `json:"poll_error"`
	Replay      *ReplayInfo    `json:"replay,omitempty"`
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
	out := apiState{GeneratedAt: v.Now.UTC(), Running: []apiRunning{}, Retrying: []apiRetry{}, Blocked: []apiBlocked{}, Paused: v.Paused.Paused, Replay: v.Replay}
	polled, root := polledOf(v), workspaceRoot(v)
	for _, b := range v.Blocked {
		out.Blocked = append(out.Blocked, s.blockedRow(b, polled, workspaceIn(root, b.Identifier)))
	}
	t := v.Totals
	out.Counts = map[string]int{"running": t.Running, "retrying": t.Retrying, "blocked": t.Blocked,
		"succeeded_today": t.SucceededToday, "failed_today": t.FailedToday, "runs": t.Runs}
	for _, r := range v.Running {
		out.Running = append(out.Running, toRunning(r, polled))
	}
	for _, r := range v.Retries {
		out.Retrying = append(out.Retrying, toRetry(r, s.issueURL(r.Identifier, polled), workspaceIn(root, r.Identifier)))
	}
	out.CodexTotals = apiTotals{t.AllTokens - max(t.Usage.OutputTokens, 0), max(t.Usage.OutputTokens, 0), t.AllTokens, t.AgentSeconds, t.CostUSD}
	out.RateLimits = rateLimitsOf(v)
	out.Workflow = workflowOf(v)
	if v.LastPoll != nil {
		out.LastPoll = &apiPoll{At: v.LastPoll.FetchedAt, Issues: len(v.LastPoll.Issues), DurationMS: v.LastPoll.DurationMS}
	}
	if p := v.PollFail; p != nil {
		out.PollError = &apiTrackerErr{p.Class, p.Message, p.At, p.RetryAfterMS}
	}
	out.Budget = budgetOf(v)
	out.Scheduler = s.schedulerOf(r.Context())
	writeRefJSON(w, http.StatusOK, out)
}

// rateLimitsOf is rate_limits: null, or an object holding codex's latest
// rate-limit snapshot as codex sent it (limitId, primary, secondary,
// credits…, the reference's shape) when a codex run reported one, and
// Symphony's latest signals under agent (an agent's API retry, 429 or
// snapshot) and tracker (the tracker's rate_limited poll failure).
func rateLimitsOf(v View) map[string]any {
	rl := rateLimits(v)
	out := map[string]any{}
	if a := v.AgentLimit; a != nil && a.Kind == bus.TurnRateLimit && len(a.Raw) > 0 {
		var params struct {
			RateLimits map[string]any `json:"rateLimits"`
		}
		if json.Unmarshal(a.Raw, &params) == nil {
			for k, val := range params.RateLimits {
				if k != "agent" && k != "tracker" { // Symphony's own keys
					out[k] = val
				}
			}
		}
	}
	if rl.Agent != nil {
		out["agent"] = rl.Agent
	}
	if rl.Tracker != nil {
		out["tracker"] = rl.Tracker
	}
	if len(out) == 0 {
		return nil
	}
	return out
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

// apiIssue is GET /api/v1/<identifier>: the reference's fields, then
// Symphony's (blocked, issue, runs).
type apiIssue struct {
	IssueIdentifier string         `json:"issue_identifier"`
	IssueID         string         `json:"issue_id"`
	Status          string         `json:"status"`
	Workspace       *apiWorkspace  `json:"workspace"`
	Attempts        apiAttempts    `json:"attempts"`
	Running         *apiRunning    `json:"running"`
	Retry           *apiRetry      `json:"retry"`
	Blocked         *apiBlocked    `json:"blocked"`
	Logs            apiLogs        `json:"logs"`
	RecentEvents    []apiEvent     `json:"recent_events"`
	LastError       *string        `json:"last_error"`
	Tracked         map[string]any `json:"tracked"`
	Issue           *bus.Issue     `json:"issue"`
	Runs            []apiRun       `json:"runs"`
	// Spend is the issue's lifetime spend against its caps (spendapi.go).
	Spend *apiIssueSpend `json:"spend"`
}

// apiLogs keeps the reference's logs key; Symphony keeps agent output in the
// run store (see runs[].run_id and /api/v1/runs/<id>/events), not in files.
type apiLogs struct {
	CodexSessionLogs []any `json:"codex_session_logs"`
}

// apiWorkspace is the issue's workspace; host (the reference's SSH worker
// host) is always null: Symphony runs its agents on this host.
type apiWorkspace struct {
	Path string  `json:"path"`
	Host *string `json:"host"`
}

// apiAttempts counts as the reference does: current_retry_attempt is the
// queued retry's attempt (0 when none), restart_count one less (never
// below 0). runs counts every run of the issue the store holds.
type apiAttempts struct {
	RestartCount        int `json:"restart_count"`
	CurrentRetryAttempt int `json:"current_retry_attempt"`
	Runs                int `json:"runs"`
}

// apiEvent is one of recent_events: event in the reference's vocabulary,
// kind Symphony's own name for it.
type apiEvent struct {
	At      time.Time `json:"at"`
	Event   string    `json:"event"`
	Message string    `json:"message"`
	Kind    string    `json:"kind"`
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

// apiIssue is GET /api/v1/<identifier>: the issue if this instance holds
// it — running, waiting for a retry or parked (blocked). Any other issue
// is 404 issue_not_found, as in the reference, whose scripts read a 404 as
// "not in flight".
func (s *Server) apiIssue(w http.ResponseWriter, r *http.Request) { s.answerIssue(w, r, true) }

// apiIssueAny is GET /api/v1/issues/<identifier>: the same answer for any
// issue this instance knows (polled, run, retried or blocked), status
// idle when it holds it no longer: a finished issue's runs and recent
// events, which the reference's endpoint does not give.
func (s *Server) apiIssueAny(w http.ResponseWriter, r *http.Request) { s.answerIssue(w, r, false) }

// answerIssue answers for an issue; held limits it to the issues held.
func (s *Server) answerIssue(w http.ResponseWriter, r *http.Request, held bool) {
	ident := r.PathValue("identifier")
	if !safeid.Valid(ident) {
		writeError(w, r, http.StatusNotFound, "issue_not_found", "no issue "+strconvQuote(clip(ident, 80))+": identifiers match "+safeid.Rule)
		return
	}
	iv, ok := s.model.Issue(ident)
	running := ok && len(iv.Runs) > 0 && iv.Runs[0].Status == bus.RunRunning
	switch {
	case held && !running && (!ok || (iv.Retry == nil && iv.Blocked == nil)):
		writeError(w, r, http.StatusNotFound, "issue_not_found", "issue "+ident+" is not running, retrying or blocked here (what is known of it: /api/v1/issues/"+ident+")")
		return
	case !ok:
		writeError(w, r, http.StatusNotFound, "issue_not_found", "no issue "+ident+" is known to this instance (not polled, run, retried or blocked)")
		return
	}
	s.fullIssue(r.Context(), &iv)
	polled := polledOf(s.model.Snapshot(s.opts.Now(), 0))
	out := apiIssue{IssueIdentifier: ident, IssueID: iv.Ref.ID, Issue: iv.Issue, Runs: []apiRun{}, RecentEvents: []apiEvent{}, Tracked: map[string]any{}, Logs: apiLogs{CodexSessionLogs: []any{}}}
	out.Attempts.Runs = len(iv.Runs)
	ws := s.workspaceOf(iv)
	switch {
	case running:
		out.Status = "running"
		run := toRunning(iv.Runs[0], polled)
		out.Running = &run
	case iv.Retry != nil:
		out.Status = "retrying"
	case iv.Blocked != nil:
		out.Status = "blocked"
	default:
		out.Status = "idle"
	}
	if iv.Retry != nil {
		rt := toRetry(*iv.Retry, s.issueURL(ident, polled), ws)
		out.Retry = &rt
		out.Attempts.CurrentRetryAttempt = iv.Retry.Attempt
		out.Attempts.RestartCount = max(iv.Retry.Attempt-1, 0)
		out.LastError = out.Retry.Error
	}
	if iv.Blocked != nil {
		bl := s.blockedRow(*iv.Blocked, polled, ws)
		out.Blocked = &bl
		out.LastError = &bl.Error
	}
	if ws != "" {
		out.Workspace = &apiWorkspace{Path: ws}
	}
	// last_error is the block's or the queued retry's error, as in the
	// reference: an older run's failure is not the state of a running
	// issue (runs[].error keeps each run's).
	for _, run := range iv.Runs {
		out.Runs = append(out.Runs, toRun(run))
	}
	if len(iv.Runs) > 0 {
		out.RecentEvents = s.recentEvents(r.Context(), iv.Runs[0].RunID)
	}
	out.Spend = issueSpendOf(iv.Spend)
	writeRefJSON(w, http.StatusOK, out)
}

// workspaceOf is the issue's workspace path: as its latest run recorded it,
// else where the configured root puts it.
func (s *Server) workspaceOf(iv IssueView) string {
	if iv.Workspace != "" {
		return iv.Workspace
	}
	return workspaceIn(workspaceRoot(s.model.Snapshot(s.opts.Now(), 0)), iv.Identifier)
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
		out = append(out, apiEvent{At: ev.At, Event: refStoredEvent(ev), Message: msg, Kind: name})
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

// maxRefreshBody bounds what POST /api/v1/refresh reads of its (ignored)
// body; the server drops a connection with more unread.
const maxRefreshBody = 64 << 10

// maxControlBody bounds a control request's body (it carries nothing we
// need, but it is read).
const maxControlBody = 4 << 10

func (s *Server) apiRefresh(w http.ResponseWriter, r *http.Request) {
	// Any body is taken and ignored, as the reference takes it (form,
	// text, JSON or none): a refresh carries nothing. Read, bounded, so
	// the connection can be reused; the origin guard still applies.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxRefreshBody))
	at := s.opts.Now().UTC()
	res, err := s.control(r.Context(), bus.Control{Action: bus.ControlRefresh, Reason: "POST /api/v1/refresh"})
	if err != nil {
		s.controlError(w, r, err)
		return
	}
	writeRefJSON(w, http.StatusAccepted, apiRefresh{Queued: true, Coalesced: res.Coalesced, RequestedAt: at, Operations: []string{"poll", "reconcile"}})
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
		// The reference's code: its scripts retry on it.
		writeError(w, r, http.StatusServiceUnavailable, "orchestrator_unavailable", "the scheduler did not answer: "+err.Error())
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
