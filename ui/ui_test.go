package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// waitBound is the generous bound for anything asynchronous in these tests.
const waitBound = 20 * time.Second

const xssTitle = `<script>alert(1)</script> & "quotes"`

// harness is a live dashboard on a real bus, listening on a free loopback
// port, with a stand-in scheduler answering controls.
type harness struct {
	b        *bus.Bus
	srv      *Server
	url      string
	mu       sync.Mutex
	controls []bus.Control
	readied  atomic.Int32 // OnReady calls
}

// eventStream reads a finished run's API event stream to its end (from
// after, a Last-Event-ID, when set): the data lines of stored events and
// the SSE id each came with.
func (h *harness) eventStream(t *testing.T, runID, after string) (data, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/api/v1/runs/"+runID+"/events", nil)
	if after != "" {
		req.Header.Set("Last-Event-ID", after)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(raw), "event: end") {
		t.Fatalf("stream after %q did not end: %v\n%s", after, err, raw)
	}
	var id string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok && strings.HasPrefix(d, `{"stream"`) {
			data, ids = append(data, d), append(ids, id)
		}
	}
	return data, ids
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with the dashboard's options changed by
// opt (when not nil).
func newHarnessWith(t *testing.T, opt func(*Options)) *harness {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	h := &harness{b: b}
	urls := make(chan string, 1)
	opts := Options{Bus: b, Port: 0, OnListen: func(u string) { urls <- u }, OnReady: func() { h.readied.Add(1) }}
	if opt != nil {
		opt(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(ctx) }()
	var served <-chan struct{}
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("dashboard Run: %v", err)
		}
		if served != nil {
			<-served
		}
	})
	select {
	case h.url = <-urls:
	case err := <-stopped:
		t.Fatalf("dashboard stopped: %v", err)
	case <-time.After(waitBound):
		t.Fatal("dashboard did not listen")
	}
	served, err = bus.Serve(ctx, b, bus.SchedulerControl, func(_ context.Context, _ string, c bus.Control) (bus.ControlResult, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.controls = append(h.controls, c)
		return bus.ControlResult{Message: "ok", Coalesced: len(h.controls) > 1}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.waitReady(t)
	// Called right after the model turns ready, once.
	h.eventually(t, "OnReady called", func() bool { return h.readied.Load() > 0 })
	if n := h.readied.Load(); n != 1 {
		t.Fatalf("OnReady called %d times, want once", n)
	}
	return h
}

func (h *harness) waitReady(t *testing.T) {
	t.Helper()
	h.eventually(t, "dashboard ready", func() bool {
		resp, err := http.Get(h.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (h *harness) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// record stores a run's lifecycle and agent events through the real bus,
// as the agent runner does.
func (h *harness) record(t *testing.T, runID, ident, title string, finish bool) {
	t.Helper()
	ctx := t.Context()
	ref := bus.IssueRef{ID: "id-" + ident, Identifier: ident, Title: title, State: "In Progress", URL: "javascript:alert(2)"}
	at := time.Now().UTC().Add(-time.Minute)
	ev := func(kind bus.RunEventKind, mut func(*bus.RunEvent)) {
		at = at.Add(time.Second)
		e := bus.RunEvent{RunID: runID, Event: kind, At: at, Issue: ref}
		if mut != nil {
			mut(&e)
		}
		if err := runlog.Record(ctx, h.b, e, runID+"-"+string(kind)+fmt.Sprint(e.Turn)); err != nil {
			t.Fatal(err)
		}
	}
	turn := func(seq int64, kind bus.TurnEventKind, text string, tool *bus.ToolCall) {
		at = at.Add(time.Second)
		te := bus.TurnEvent{RunID: runID, Turn: 1, Seq: seq, At: at, Kind: kind, Text: text, Tool: tool}
		if _, err := bus.PublishDurable(ctx, h.b, bus.TurnEvents, te, fmt.Sprintf("%s-%d", runID, seq), runID, "1"); err != nil {
			t.Fatal(err)
		}
		// The runner's coalesced progress (here one per event).
		if err := bus.Publish(h.b, bus.AgentProgress, bus.RunProgress{RunID: runID, Turn: 1, Events: seq, New: 1, Last: te.Brief()}, runID); err != nil {
			t.Fatal(err)
		}
	}
	ev(bus.RunDispatched, nil)
	ev(bus.RunWorkspaceReady, func(e *bus.RunEvent) { e.Workspace = "/tmp/ws/" + ident })
	ev(bus.RunTurnStarted, func(e *bus.RunEvent) {
		started := e.At.Add(time.Millisecond)
		e.Turn, e.AgentPID, e.AgentStartedAt = 1, 4242, &started
	})
	turn(1, bus.TurnPrompt, "Work on "+title, nil)
	turn(2, bus.TurnText, "I will look at "+title, nil)
	turn(3, bus.TurnToolUse, "", &bus.ToolCall{ID: "t1", Name: "Bash", Input: json.RawMessage(`{"command":"echo \"<img src=x onerror=alert(3)>\""}`)})
	turn(4, bus.TurnToolResult, "<img src=x onerror=alert(4)>", &bus.ToolCall{ID: "t1"})
	if finish {
		u := bus.Usage{InputTokens: 100, OutputTokens: 50}
		c := 0.5
		ev(bus.RunTurnFinished, func(e *bus.RunEvent) { e.Turn, e.Usage, e.CostUSD = 1, &u, &c })
		ev(bus.RunFinished, func(e *bus.RunEvent) { e.Turn, e.Status, e.Usage, e.CostUSD = 1, bus.RunSucceeded, &u, &c })
	}
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url, "", hdr...)
}

func do(t *testing.T, method, url, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(raw)
}

func wantStatus(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, body)
	}
}

// wantAPIError checks the error envelope.
func wantAPIError(t *testing.T, body, code string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not the JSON envelope: %v\n%s", err, body)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("error = %+v, want code %q with a message", e.Error, code)
	}
}

func TestAPIState(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-done", "ABC-1", "first", true)
	h.record(t, "run-live", "ABC-2", "second", false)
	due := time.Now().Add(time.Minute).UTC()
	k, _ := bus.Retries.Key("id-ABC-3")
	if _, err := bus.Put(t.Context(), h.b, k, bus.RetryEntry{IssueID: "id-ABC-3", Identifier: "ABC-3", Attempt: 2, DueAt: due, Error: "no available orchestrator slots"}); err != nil {
		t.Fatal(err)
	}
	var st struct {
		GeneratedAt time.Time      `json:"generated_at"`
		Counts      map[string]int `json:"counts"`
		Running     []struct {
			IssueID         string `json:"issue_id"`
			IssueIdentifier string `json:"issue_identifier"`
			State           string `json:"state"`
			LastEvent       string `json:"last_event"`
			TurnCount       int    `json:"turn_count"`
		}
		Retrying []struct {
			IssueIdentifier string `json:"issue_identifier"`
			Attempt         int
			DueAt           time.Time `json:"due_at"`
			Error           *string
		}
		CodexTotals struct {
			InputTokens    int64   `json:"input_tokens"`
			OutputTokens   int64   `json:"output_tokens"`
			TotalTokens    int64   `json:"total_tokens"`
			SecondsRunning float64 `json:"seconds_running"`
		} `json:"codex_totals"`
		RateLimits any `json:"rate_limits"`
	}
	h.eventually(t, "state with one running, one retrying", func() bool {
		resp, body := get(t, h.url+"/api/v1/state")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			return false
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return st.Counts["running"] == 1 && st.Counts["retrying"] == 1 && st.Counts["runs"] == 2
	})
	if st.GeneratedAt.IsZero() || len(st.Running) != 1 || st.Running[0].IssueIdentifier != "ABC-2" || st.Running[0].State != "In Progress" || st.Running[0].TurnCount != 1 {
		t.Fatalf("running = %+v", st.Running)
	}
	if len(st.Retrying) != 1 || st.Retrying[0].Attempt != 2 || !st.Retrying[0].DueAt.Equal(due.Truncate(time.Second)) || st.Retrying[0].Error == nil {
		t.Fatalf("retrying = %+v", st.Retrying)
	}
	if st.CodexTotals.InputTokens != 100 || st.CodexTotals.TotalTokens != 150 || st.CodexTotals.SecondsRunning <= 0 {
		t.Fatalf("totals = %+v", st.CodexTotals)
	}
	// The raw body keeps the reference's field names.
	_, body := get(t, h.url+"/api/v1/state")
	for _, field := range []string{`"generated_at"`, `"counts"`, `"running"`, `"retrying"`, `"codex_totals"`, `"rate_limits"`, `"issue_identifier"`, `"last_event_at"`, `"seconds_running"`} {
		if !strings.Contains(body, field) {
			t.Errorf("state lacks %s", field)
		}
	}
}

func TestAPIIssueAndRuns(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-a", "ABC-1", "first", true)
	// The run's end, not just its first summary: the model may show an
	// earlier state of a run for a moment (its events and its summary
	// arrive on separate watches).
	h.eventually(t, "run summary", func() bool { r, ok := h.srv.model.Run("run-a"); return ok && r.Status != "running" })

	// The reference's endpoint answers only for an issue held (running,
	// retrying, blocked): ABC-1's run is over.
	resp, body := get(t, h.url+"/api/v1/ABC-1")
	wantStatus(t, resp, body, 404)
	wantAPIError(t, body, "issue_not_found")
	if !strings.Contains(body, "/api/v1/issues/ABC-1") {
		t.Errorf("the 404 does not point at /api/v1/issues/ABC-1: %s", body)
	}
	// Symphony's answers for any issue it knows.
	resp, body = get(t, h.url+"/api/v1/issues/ABC-1")
	wantStatus(t, resp, body, 200)
	var iss struct {
		IssueIdentifier string `json:"issue_identifier"`
		IssueID         string `json:"issue_id"`
		Status          string
		Workspace       struct{ Path string }
		RecentEvents    []struct{ Event, Message string } `json:"recent_events"`
		Runs            []bus.RunSummary
	}
	if err := json.Unmarshal([]byte(body), &iss); err != nil {
		t.Fatal(err)
	}
	if iss.IssueIdentifier != "ABC-1" || iss.IssueID != "id-ABC-1" || iss.Status != "idle" || iss.Workspace.Path != "/tmp/ws/ABC-1" || len(iss.Runs) != 1 || len(iss.RecentEvents) == 0 {
		t.Fatalf("issue = %+v", iss)
	}

	for _, path := range []string{"/api/v1/NOPE-9", "/api/v1/issues/NOPE-9"} {
		resp, body = get(t, h.url+path)
		wantStatus(t, resp, body, 404)
		wantAPIError(t, body, "issue_not_found")
	}
	resp, body = get(t, h.url+"/api/v1/bad%20id")
	wantStatus(t, resp, body, 404)
	wantAPIError(t, body, "issue_not_found")

	resp, body = get(t, h.url+"/api/v1/runs?status=succeeded")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, `"run-a"`) || !strings.Contains(body, `"count": 1`) {
		t.Fatalf("runs = %s", body)
	}
	// An unknown status is refused as the runs page refuses it.
	resp, body = get(t, h.url+"/api/v1/runs?status=bogus")
	wantStatus(t, resp, body, 400)
	wantAPIError(t, body, "bad_request")
	if !strings.Contains(body, "succeeded") || !strings.Contains(body, "running") {
		t.Errorf("the error does not name the valid statuses: %s", body)
	}
	resp, body = get(t, h.url+"/runs?status=bogus")
	wantStatus(t, resp, body, 400)
	resp, body = get(t, h.url+"/api/v1/runs?limit=0")
	wantStatus(t, resp, body, 400)
	wantAPIError(t, body, "bad_request")
	resp, body = get(t, h.url+"/api/v1/runs/run-a")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, `"status": "succeeded"`) {
		t.Fatalf("run = %s", body)
	}
	resp, body = get(t, h.url+"/api/v1/runs/nope")
	wantStatus(t, resp, body, 404)
	wantAPIError(t, body, "run_not_found")
	resp, body = get(t, h.url+"/api/v1/no/such/thing")
	wantStatus(t, resp, body, 404)
	wantAPIError(t, body, "not_found")
}

func TestAPIRunEventsStream(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-s", "ABC-5", "stream", false)
	h.eventually(t, "run summary", func() bool { _, ok := h.srv.model.Run("run-s"); return ok })
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+"/api/v1/runs/run-s/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan runlog.Event, 64)
	ids := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				ids <- id
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var ev runlog.Event
				if json.Unmarshal([]byte(data), &ev) == nil {
					events <- ev
				}
			}
		}
	}()
	next := func() runlog.Event {
		select {
		case ev := <-events:
			return ev
		case <-time.After(waitBound):
			t.Fatal("no event on the stream")
		}
		return runlog.Event{}
	}
	// Three lifecycle events and four agent events are stored: all come.
	got := map[string]int{}
	for range 7 {
		got[next().Stream]++
	}
	if got[bus.StreamRuns] != 3 || got[bus.StreamTurns] != 4 {
		t.Fatalf("stored events by stream = %v", got)
	}
	// A new event arrives live.
	if err := runlog.Record(t.Context(), h.b, bus.RunEvent{RunID: "run-s", Event: bus.RunFinished, At: time.Now(), Status: bus.RunFailed, Error: "boom"}, "run-s-end"); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Stream != bus.StreamRuns || !strings.Contains(string(ev.Event), "boom") {
		t.Fatalf("live event = %+v", ev)
	}
	var last string
	for len(ids) > 0 {
		last = <-ids
	}
	if _, err := runlog.ParseCursor(last); err != nil {
		t.Fatalf("event id %q is not a cursor: %v", last, err)
	}
	// Resuming after the last id replays nothing old.
	req2, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+"/api/v1/runs/run-s/events", nil)
	req2.Header.Set("Last-Event-ID", last)
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	resp2, err := http.DefaultClient.Do(req2.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if strings.Contains(string(raw), "data: {\"stream") || !strings.Contains(string(raw), "event: end") {
		t.Fatalf("resumed stream of the finished run:\n%s", raw)
	}
}

func TestAPIRefreshAndMethods(t *testing.T) {
	h := newHarness(t)
	resp, body := do(t, http.MethodPost, h.url+"/api/v1/refresh", "")
	wantStatus(t, resp, body, http.StatusAccepted)
	var r struct {
		Queued      bool      `json:"queued"`
		Coalesced   bool      `json:"coalesced"`
		RequestedAt time.Time `json:"requested_at"`
		Operations  []string  `json:"operations"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Queued || r.Coalesced || r.RequestedAt.IsZero() || strings.Join(r.Operations, ",") != "poll,reconcile" {
		t.Fatalf("refresh = %+v", r)
	}
	resp, body = do(t, http.MethodPost, h.url+"/api/v1/refresh", "{}")
	wantStatus(t, resp, body, http.StatusAccepted)
	if !strings.Contains(body, `"coalesced": true`) {
		t.Fatalf("second refresh not reported coalesced: %s", body)
	}
	h.mu.Lock()
	if len(h.controls) != 2 || h.controls[0].Action != bus.ControlRefresh {
		t.Fatalf("controls = %+v", h.controls)
	}
	h.mu.Unlock()
	// Any body is taken and ignored, as the reference takes it: form,
	// text, JSON, malformed, large.
	for _, c := range []struct{ body, ctype string }{
		{"[1,2", "application/json"}, {"null", ""}, {`{"a":1} junk`, "application/json"}, {" \n", ""},
		{` {"reason": "test"} `, "application/json"}, {"reason=test&x=1", "application/x-www-form-urlencoded"},
		{"please refresh", "text/plain"}, {strings.Repeat("x", 3*maxRefreshBody), "text/plain"},
	} {
		resp, body = do(t, http.MethodPost, h.url+"/api/v1/refresh", c.body, "Content-Type", c.ctype)
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(body, `"queued": true`) {
			t.Errorf("body %.30q (%s): %d %s", c.body, c.ctype, resp.StatusCode, body)
		}
	}
	// A cross-site form is still refused by the origin guard.
	resp, body = do(t, http.MethodPost, h.url+"/api/v1/refresh", "x=1", "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example")
	wantStatus(t, resp, body, http.StatusForbidden)
	wantAPIError(t, body, "cross_origin_refused")

	for _, c := range []struct{ method, path, allow string }{
		{http.MethodGet, "/api/v1/refresh", "POST"},
		{http.MethodPost, "/api/v1/state", "GET"},
		{http.MethodDelete, "/api/v1/ABC-1", "GET"},
		{http.MethodPut, "/api/v1/runs", "GET"},
		{http.MethodPost, "/api/v1/runs/x", "GET"},
		{http.MethodPost, "/api/v1/runs/x/events", "GET"},
	} {
		resp, body := do(t, c.method, h.url+c.path, "")
		wantStatus(t, resp, body, http.StatusMethodNotAllowed)
		wantAPIError(t, body, "method_not_allowed")
		if resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q", c.method, c.path, resp.Header.Get("Allow"))
		}
	}
	// Outside /api/ too, as the reference answers every route: a wrong
	// method is a JSON 405 with Allow, an unknown path a JSON 404; the
	// pages themselves stay HTML.
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodPost, "/", "GET, HEAD"},
		{http.MethodDelete, "/healthz", "GET, HEAD"},
		{http.MethodGet, "/control/pause", "POST"},
		{http.MethodPut, "/runs", "GET, HEAD"},
	} {
		resp, body = do(t, c.method, h.url+c.path, "")
		wantStatus(t, resp, body, http.StatusMethodNotAllowed)
		wantAPIError(t, body, "method_not_allowed")
		if resp.Header.Get("Allow") != c.allow || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Allow %q, Content-Type %q", c.method, c.path, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/nope", "/runs/x/y/z", "/static-not"} {
		resp, body = get(t, h.url+path)
		wantStatus(t, resp, body, http.StatusNotFound)
		wantAPIError(t, body, "not_found")
	}
	resp, body = get(t, h.url+"/runs")
	wantStatus(t, resp, body, http.StatusOK)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("the runs page is %s", resp.Header.Get("Content-Type"))
	}
}

func TestHostAndOriginGuards(t *testing.T) {
	h := newHarness(t)
	port := h.url[strings.LastIndex(h.url, ":")+1:]
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port, "app.localhost:" + port, "127.0.0.2"} {
		resp, body := get(t, h.url+"/api/v1/state", "Host", host)
		wantStatus(t, resp, body, 200)
	}
	for _, host := range []string{"evil.example", "evil.example:" + port, "127.0.0.1.evil.example", "10.0.0.1:" + port, "localhost.evil.example"} {
		resp, body := get(t, h.url+"/api/v1/state", "Host", host)
		wantStatus(t, resp, body, http.StatusMisdirectedRequest)
		wantAPIError(t, body, "host_not_allowed")
		resp, body = get(t, h.url+"/", "Host", host)
		wantStatus(t, resp, body, http.StatusMisdirectedRequest)
	}
	self := "http://127.0.0.1:" + port
	for _, c := range []struct {
		hdr  []string
		want int
	}{
		{nil, http.StatusAccepted}, // not a browser (curl)
		{[]string{"Origin", self}, http.StatusAccepted},
		{[]string{"Sec-Fetch-Site", "same-origin", "Origin", self}, http.StatusAccepted},
		{[]string{"Referer", self + "/"}, http.StatusAccepted},
		{[]string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{[]string{"Origin", "null"}, http.StatusForbidden},
		{[]string{"Origin", "http://localhost:" + port}, http.StatusForbidden}, // another origin, though loopback
		{[]string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{[]string{"Sec-Fetch-Site", "same-site", "Origin", "http://app.localhost:" + port}, http.StatusForbidden},
		{[]string{"Referer", "http://evil.example/page"}, http.StatusForbidden},
	} {
		resp, body := do(t, http.MethodPost, h.url+"/api/v1/refresh", "", c.hdr...)
		if resp.StatusCode != c.want {
			t.Errorf("POST with %v: %d, want %d: %s", c.hdr, resp.StatusCode, c.want, body)
		}
		if c.want == http.StatusForbidden {
			wantAPIError(t, body, "cross_origin_refused")
		}
		// The same rule guards the dashboard's forms.
		resp, body = do(t, http.MethodPost, h.url+"/control/refresh", "", c.hdr...)
		if want := map[int]int{http.StatusAccepted: http.StatusSeeOther}[c.want]; want != 0 && resp.StatusCode != want || c.want == http.StatusForbidden && resp.StatusCode != http.StatusForbidden {
			t.Errorf("form POST with %v: %d: %s", c.hdr, resp.StatusCode, body)
		}
	}
	// Security headers on every answer.
	resp, _ := get(t, h.url+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers = %v", resp.Header)
	}
}

func TestBindRefusesNonLoopback(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for _, bind := range []string{"0.0.0.0", "10.1.2.3", "::", "example.com"} {
		if _, err := New(Options{Bus: b, Bind: bind}); err == nil || !strings.Contains(err.Error(), "--bind-unsafe") {
			t.Errorf("bind %q: err = %v", bind, err)
		}
	}
	for _, bind := range []string{"127.0.0.1", "::1", "localhost", "127.0.0.5"} {
		if _, err := New(Options{Bus: b, Bind: bind}); err != nil {
			t.Errorf("bind %q: %v", bind, err)
		}
	}
	if _, err := New(Options{Bus: b, Bind: "0.0.0.0", BindUnsafe: true}); err != nil {
		t.Errorf("unsafe bind refused: %v", err)
	}
	s, err := New(Options{Bus: b, Bind: "192.0.2.7", BindUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.hostAllowed("192.0.2.7:4000") || s.hostAllowed("192.0.2.8:4000") {
		t.Error("the configured bind host should be the one extra Host accepted")
	}
}

// TestOutsideStringsRenderedInert puts markup in every issue- and
// agent-provided string and checks every page shows it as text.
func TestOutsideStringsRenderedInert(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-x", "XSS-1", xssTitle, true)
	h.record(t, "run-y", "XSS-2", xssTitle, false)
	h.eventually(t, "runs", func() bool {
		_, ok1 := h.srv.model.Run("run-x")
		_, ok2 := h.srv.model.Run("run-y")
		return ok1 && ok2
	})
	for _, path := range []string{"/", "/runs", "/runs/run-x", "/runs/run-y", "/issues/XSS-1", "/runs/run-y/cancel"} {
		resp, body := get(t, h.url+path)
		wantStatus(t, resp, body, 200)
		for _, bad := range []string{"<script>alert", "<img src=x", `href="javascript:`} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q unescaped", path, bad)
			}
		}
		if path != "/runs/run-y/cancel" && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the title as text", path)
		}
		// No inline script: every <script> has a src under /static/.
		for _, part := range strings.Split(body, "<script")[1:] {
			if !strings.HasPrefix(part, ` src="/static/`) {
				t.Errorf("%s has an inline script: <script%s", path, clip(part, 80))
			}
		}
	}
}

func TestPagesAndControls(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-p", "PAGE-1", "page test", false)
	bk, _ := bus.Blocks.Key("id-PAGE-2")
	if _, err := bus.Put(t.Context(), h.b, bk, bus.BlockedEntry{IssueID: "id-PAGE-2", Identifier: "PAGE-2", State: "Todo", Reason: "canceled by the operator", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "model", func() bool {
		_, ok := h.srv.model.Run("run-p")
		iv, _ := h.srv.model.Issue("PAGE-2")
		return ok && iv.Blocked != nil
	})
	resp, body := get(t, h.url+"/")
	wantStatus(t, resp, body, 200)
	for _, want := range []string{"PAGE-1", "PAGE-2", `sse-connect="/events"`, "Refresh now", "Pause dispatch", "/runs/run-p/cancel"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	resp, body = get(t, h.url+"/runs/run-p")
	wantStatus(t, resp, body, 200)
	// The turn's header names the agent's process.
	for _, want := range []string{"Turn 1", "pid 4242", "Prompt (", "Bash", "sse-connect=\"/runs/run-p/stream?after=", "Cancel this run"} {
		if !strings.Contains(body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	resp, body = get(t, h.url+"/runs/nope")
	wantStatus(t, resp, body, 404)
	resp, body = get(t, h.url+"/issues/NOPE-1")
	wantStatus(t, resp, body, 404)

	// Cancel: a confirmation page, then the POST reaches the scheduler.
	resp, body = get(t, h.url+"/runs/run-p/cancel")
	wantStatus(t, resp, body, 200)
	resp, body = do(t, http.MethodPost, h.url+"/runs/run-p/cancel", "")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/runs/run-p?done=cancel" {
		t.Fatalf("redirect to %q", loc)
	}
	resp, body = do(t, http.MethodPost, h.url+"/issues/PAGE-2/clear-blocked", "")
	wantStatus(t, resp, body, http.StatusSeeOther)
	for _, a := range []string{"pause", "resume", "refresh"} {
		resp, body = do(t, http.MethodPost, h.url+"/control/"+a, "")
		wantStatus(t, resp, body, http.StatusSeeOther)
	}
	resp, body = do(t, http.MethodPost, h.url+"/control/explode", "")
	wantStatus(t, resp, body, 404)
	h.mu.Lock()
	var got []string
	for _, c := range h.controls {
		got = append(got, string(c.Action)+":"+c.RunID+c.IssueID)
	}
	h.mu.Unlock()
	if strings.Join(got, " ") != "cancel:run-pid-PAGE-1 clear_blocked:id-PAGE-2 pause: resume: refresh:" {
		t.Fatalf("controls sent = %v", got)
	}
	resp, body = get(t, h.url+"/runs/run-p?done=cancel")
	if !strings.Contains(body, "Cancel sent") {
		t.Errorf("no notice after cancel")
	}
	resp, body = get(t, h.url+"/?done=<b>x</b>")
	wantStatus(t, resp, body, 200)
	if strings.Contains(body, "<b>x") || strings.Contains(body, `class="flash"`) {
		t.Error("a notice came from the query string")
	}
	resp, body = get(t, h.url+"/static/htmx-2.0.11.min.js")
	wantStatus(t, resp, body, 200)
	if !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(body, "htmx") {
		t.Fatalf("htmx not served: %s", resp.Header.Get("Content-Type"))
	}
}

func TestPauseShownFromKV(t *testing.T) {
	h := newHarness(t)
	if _, err := bus.Put(t.Context(), h.b, bus.DispatchPause, bus.PauseState{Paused: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "paused", func() bool {
		_, body := get(t, h.url+"/api/v1/state")
		return strings.Contains(body, `"paused": true`)
	})
	_, body := get(t, h.url+"/")
	if !strings.Contains(body, "Dispatch paused") || !strings.Contains(body, "Resume dispatch") {
		t.Fatal("overview does not show the pause")
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-m", "MET-1", "metrics", true)
	if err := bus.Publish(h.b, bus.TrackerSnapshots, bus.CandidateSnapshot{IssueList: bus.IssueList{FetchedAt: time.Now()}, DurationMS: 12}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(h.b, bus.TrackerPollFailures, bus.PollFailed{Class: bus.TrackerRateLimited, Message: "slow down", At: time.Now(), RetryAfterMS: 3000}); err != nil {
		t.Fatal(err)
	}
	var body string
	h.eventually(t, "metrics", func() bool {
		_, body = get(t, h.url+"/metrics")
		return strings.Contains(body, `symphony_runs{status="succeeded"} 1`) && strings.Contains(body, `symphony_poll_errors_total{class="rate_limited"} 1`)
	})
	for _, want := range []string{"symphony_running_agents 0", "symphony_retry_queue_length 0", `symphony_tokens{kind="input"} 100`,
		"symphony_cost_usd 0.5", "symphony_poll_duration_seconds_count 2", `symphony_bus_events_total{stream="TURNS"}`, "symphony_go_goroutines",
		`symphony_log_write_errors_total{reason="failed"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for line := range strings.SplitSeq(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "symphony_") {
			t.Errorf("series without the symphony_ prefix: %s", line)
		}
	}
}

// TestLogWriteErrorsMetric: the log outputs' counts are read at scrape
// time.
func TestLogWriteErrorsMetric(t *testing.T) {
	x := newMetrics(NewModel())
	failed := uint64(3)
	x.logWriteErrors(func() (uint64, uint64) { return failed, 4 })
	failed = 7
	rec := httptest.NewRecorder()
	x.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`symphony_log_write_errors_total{reason="failed"} 7`, `symphony_log_write_errors_total{reason="dropped"} 4`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestReplayServesRecordedRunReadOnly(t *testing.T) {
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{b: b}
	h.record(t, "run-r", "REP-1", "replayed", true)
	events, _, err := runlog.Timeline(t.Context(), b, "run-r")
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close(context.Background())
	urls := make(chan string, 1)
	srv, err := New(Options{Replay: &Replay{RunID: "run-r", Events: events, Speed: 0}, OnListen: func(u string) { urls <- u }, MaxStreams: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = srv.Run(ctx) }()
	url := <-urls
	h.url = url
	h.eventually(t, "replay played", func() bool {
		_, body := get(t, url+"/api/v1/state")
		return strings.Contains(body, `"done": true`)
	})
	// The replay object speaks the API's snake_case.
	_, state := get(t, url+"/api/v1/state")
	for _, field := range []string{`"run_id": "run-r"`, `"speed": 0`, `"events": 9`, `"played": 9`} {
		if !strings.Contains(state, field) {
			t.Errorf("state's replay lacks %s:\n%s", field, state)
		}
	}
	resp, body := get(t, url+"/runs/run-r")
	wantStatus(t, resp, body, 200)
	for _, want := range []string{"Replay of run-r", "succeeded", "Turn 1", "Bash", "replayed"} {
		if !strings.Contains(body, want) {
			t.Errorf("replayed run page lacks %q", want)
		}
	}
	resp, body = do(t, http.MethodPost, url+"/api/v1/refresh", "")
	wantStatus(t, resp, body, http.StatusConflict)
	wantAPIError(t, body, "read_only")
	resp, body = get(t, url+"/")
	if strings.Contains(body, "Refresh now") {
		t.Error("replay shows controls")
	}
	// A replay's streams are capped like a live dashboard's (here at 1).
	stream, cancelStream := openStream(t, url+"/events")
	defer cancelStream()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("replay overview stream: %d", stream.StatusCode)
	}
	resp, body = getBounded(t, url+"/api/v1/runs/run-r/events")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("replay stream past the cap: %d %q", resp.StatusCode, clip(body, 200))
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// TestSSEDataCannotStartAField: CR, LF and CRLF inside text from an agent
// or an issue all stay inside data: lines.
func TestSSEDataCannotStartAField(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/x", nil)
	ctx, cancel := context.WithCancel(req.Context())
	s := &Server{metrics: newMetrics(NewModel())}
	st, err := s.startSSE(rec, req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.send("transcript", "1.2.3", "a\revent: done\rid: 0.0.0\r\nretry: 1\nb"); err != nil {
		t.Fatal(err)
	}
	if err := st.send("x\ny", "", "z"); err == nil {
		t.Error("an event name with a line break was sent")
	}
	cancel()
	st.close()
	body := rec.Body.String()
	fields := 0
	for _, line := range strings.FieldsFunc(body, func(r rune) bool { return r == '\r' || r == '\n' }) {
		switch {
		case strings.HasPrefix(line, "data: "), strings.HasPrefix(line, ":"):
		case line == "event: transcript", line == "id: 1.2.3", line == "retry: 2000":
			fields++
		default:
			t.Errorf("line %q is a field the data started", line)
		}
	}
	if fields != 3 {
		t.Errorf("want our 3 fields, got %d in %q", fields, body)
	}
}

// finishedStream reads the API event stream of a finished run to its end
// (it fails the test if the stream does not end within waitBound).
func (h *harness) finishedStream(t *testing.T, runID string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/api/v1/runs/"+runID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body) // returns only if the stream ends
	resp.Body.Close()
	if err != nil {
		t.Fatalf("stream of finished run %s did not end: %v", runID, err)
	}
	return raw
}

func TestAPIRunEventsEndForAFinishedRun(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-f", "FIN-1", "finished", true)
	h.eventually(t, "run summary", func() bool { r, ok := h.srv.model.Run("run-f"); return ok && r.Status != "running" })
	raw := h.finishedStream(t, "run-f")
	if n := strings.Count(string(raw), "\ndata: {\"stream\""); n != 9 || !strings.Contains(string(raw), "event: end") {
		t.Fatalf("%d events, body:\n%s", n, raw)
	}
	resp, body := do(t, http.MethodHead, h.url+"/api/v1/runs/run-f/events", "")
	wantStatus(t, resp, body, 200)
	if body != "" {
		t.Errorf("HEAD streamed a body")
	}
}

// TestOverviewStreamSendsEverySectionOnConnect: the page may be older than
// the stream; the first message brings every section up to date.
func TestOverviewStreamSendsEverySectionOnConnect(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(seen) < 8 {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			seen[name] = true
		}
	}
	for _, name := range []string{"counts", "controls", "spend", "running", "retrying", "blocked", "notes", "recent"} {
		if !seen[name] {
			t.Errorf("section %s not sent on connect", name)
		}
	}
}

// TestBatchedAgentEventsShownOnceEach: agent events stored several to a
// message (as the runner stores what it read in one go) are each shown on
// the run page with an element id of their own, each streamed once with a
// cursor of its own, and a stream resumed from inside the message goes on
// with the next event of it.
func TestBatchedAgentEventsShownOnceEach(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-b", "BAT-1", "batched", false)
	w := runlog.NewWriter(h.b, 0)
	for seq := int64(5); seq <= 8; seq++ {
		if err := w.AppendTurn(t.Context(), bus.TurnEvent{RunID: "run-b", Turn: 1, Seq: seq, At: time.Now().UTC(), Kind: bus.TurnText, Text: fmt.Sprint("batched-", seq)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := runlog.Record(t.Context(), h.b, bus.RunEvent{RunID: "run-b", Event: bus.RunFinished, At: time.Now().UTC(), Status: bus.RunSucceeded}, "run-b-end"); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "run ended", func() bool { r, ok := h.srv.model.Run("run-b"); return ok && r.Status != "running" })

	// The page: eight agent entries, eight distinct ids.
	resp, page := get(t, h.url+"/runs/run-b")
	wantStatus(t, resp, page, 200)
	ids := regexp.MustCompile(`id="(ev-TURNS-[0-9-]+)"`).FindAllStringSubmatch(page, -1)
	seen := map[string]bool{}
	for _, m := range ids {
		seen[m[1]] = true
	}
	if len(ids) != 8 || len(seen) != 8 {
		t.Fatalf("run page: %d agent entries, %d distinct ids: %v", len(ids), len(seen), ids)
	}
	for seq := 5; seq <= 8; seq++ {
		if !strings.Contains(page, fmt.Sprint("batched-", seq)) {
			t.Errorf("run page lacks batched-%d", seq)
		}
	}

	// The API stream of the finished run: every event once, then its end.
	stream := func(after string) (texts []string, cursors []string) {
		t.Helper()
		data, ids := h.eventStream(t, "run-b", after)
		for i, d := range data {
			if !strings.HasPrefix(d, `{"stream":"TURNS"`) {
				continue
			}
			var ev runlog.Event
			var te bus.TurnEvent
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ev.Event, &te); err != nil {
				t.Fatal(err)
			}
			texts, cursors = append(texts, fmt.Sprint(te.Seq)), append(cursors, ids[i])
		}
		return texts, cursors
	}
	all, cursors := stream("")
	if got := strings.Join(all, " "); got != "1 2 3 4 5 6 7 8" {
		t.Fatalf("streamed agent events %s", got)
	}
	distinct := map[string]bool{}
	for _, c := range cursors {
		distinct[c] = true
	}
	if len(distinct) != 8 {
		t.Fatalf("cursors %v are not one per event", cursors)
	}
	// Resume after the second event of the batch (event 6): 7 and 8 follow.
	rest, _ := stream(cursors[5])
	if got := strings.Join(rest, " "); got != "7 8" {
		t.Fatalf("resumed after %s: %s, want 7 8", cursors[5], got)
	}
}

// TestAPIRunEventsEndPastAnUnreadableMessage: a finished run whose last
// stored agent message cannot be read (a newer schema) still ends its
// event stream; the message is not sent.
func TestAPIRunEventsEndPastAnUnreadableMessage(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-u", "UNR-1", "unreadable", true)
	subject, err := bus.TurnEvents.Subject("run-u", "1")
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = []byte(`{"run_id":"run-u"}`)
	m.Header.Set(bus.HeaderType, "TurnEvent")
	m.Header.Set(bus.HeaderSchema, "99")
	if _, err := h.b.JetStream().PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "run ended", func() bool { r, ok := h.srv.model.Run("run-u"); return ok && r.Status != "running" })
	raw := h.finishedStream(t, "run-u")
	if n := strings.Count(string(raw), "\ndata: {\"stream\""); n != 9 || !strings.Contains(string(raw), "event: end") {
		t.Fatalf("%d events, body:\n%s", n, raw)
	}
}

// TestAPIRunEventsInTimeOrder: the event stream of a finished run gives
// its stored events in time order across the three streams, exactly as the
// JSONL export does (a client stopping at run_finished has the whole
// transcript), and a resume from an id in the middle gives exactly the
// rest.
func TestAPIRunEventsInTimeOrder(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-o", "ORD-1", "ordered", true)
	stored, _, err := runlog.Timeline(t.Context(), h.b, "run-o")
	if err != nil {
		t.Fatal(err)
	}
	// Hook events between the lifecycle events: one before the first turn
	// and one after the agent's last event.
	for i, at := range []time.Time{stored[1].At.Add(100 * time.Millisecond), stored[len(stored)-3].At.Add(100 * time.Millisecond)} {
		hook := bus.HookEvent{Hook: bus.HookBeforeRun, Phase: bus.HookStarted, RunID: "run-o", At: at, Issue: bus.IssueRef{ID: "id-ORD-1", Identifier: "ORD-1"}}
		if _, err := bus.PublishDurable(t.Context(), h.b, bus.WorkspaceHookEvents, hook, fmt.Sprint("run-o-hook-", i), "run-o", bus.HookBeforeRun); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually(t, "run ended", func() bool { r, ok := h.srv.model.Run("run-o"); return ok && r.Status != "running" })
	stored, _, err = runlog.Timeline(t.Context(), h.b, "run-o")
	if err != nil {
		t.Fatal(err)
	}
	var export []string // as `symphony replay --jsonl` writes them
	for _, ev := range stored {
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		export = append(export, string(line))
	}
	if len(export) != 11 {
		t.Fatalf("stored %d events, want 11", len(export))
	}
	stream := func(after string) (data, ids []string) { return h.eventStream(t, "run-o", after) }
	data, ids := stream("")
	if strings.Join(data, "\n") != strings.Join(export, "\n") {
		t.Fatalf("streamed events differ from the export:\nstream:\n%s\nexport:\n%s", strings.Join(data, "\n"), strings.Join(export, "\n"))
	}
	for _, mid := range []int{2, 5, 8} {
		rest, _ := stream(ids[mid])
		if strings.Join(rest, "\n") != strings.Join(export[mid+1:], "\n") {
			t.Fatalf("resumed after event %d (%s):\n%s\nwant:\n%s", mid, ids[mid], strings.Join(rest, "\n"), strings.Join(export[mid+1:], "\n"))
		}
	}
}

// TestLiveSessionIDBeforeSessionStarted: the session id an agent reports
// at its start (session_started is recorded only at the turn's end) shows
// in the state and issue APIs and on the run page during the first turn,
// and a summary written meanwhile does not hide it.
func TestLiveSessionIDBeforeSessionStarted(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-l", "SES-1", "session", false)
	h.eventually(t, "run summary", func() bool { r, ok := h.srv.model.Run("run-l"); return ok && r.Status == "running" })
	init := bus.TurnEvent{RunID: "run-l", Turn: 1, Seq: 5, At: time.Now().UTC(), Kind: bus.TurnInit, SessionID: "sess-live-1"}
	if err := bus.Publish(h.b, bus.AgentProgress, bus.RunProgress{RunID: "run-l", Turn: 1, Events: 5, New: 1, Last: init.Brief()}, "run-l"); err != nil {
		t.Fatal(err)
	}
	sessionOf := func() string {
		var st struct {
			Running []struct {
				SessionID string `json:"session_id"`
			} `json:"running"`
		}
		_, body := get(t, h.url+"/api/v1/state")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Running) != 1 {
			return ""
		}
		return st.Running[0].SessionID
	}
	h.eventually(t, "live session id in the state", func() bool { return sessionOf() == "sess-live-1" })
	// A later summary (without a session) keeps it.
	r, _ := h.srv.model.Run("run-l")
	h.srv.model.PutRun(r.RunSummary)
	if got := sessionOf(); got != "sess-live-1" {
		t.Fatalf("after a summary update, session_id %q", got)
	}
	_, body := get(t, h.url+"/api/v1/SES-1")
	if !strings.Contains(body, `"session_id": "sess-live-1"`) {
		t.Errorf("issue API lacks the live session id:\n%s", body)
	}
	_, page := get(t, h.url+"/runs/run-l")
	if !strings.Contains(page, "sess-live-1") {
		t.Error("run page lacks the live session id")
	}
}

// TestIssuePageReadsTheFullIssue: the poll's snapshot carries outlines
// (no description, no blockers); the issue page and the issue endpoint read
// the full issue from the tracker by id, so the description still shows.
func TestIssuePageReadsTheFullIssue(t *testing.T) {
	h := newHarness(t)
	desc, blocker := "The whole description, from the tracker."+strings.Repeat(" More.", 500), "OUT-0"
	full := bus.Issue{ID: "id-out-1", Identifier: "OUT-1", Title: "outlined", State: "Todo", Description: &desc,
		BlockedBy: []bus.Blocker{{Identifier: &blocker}}, Labels: []string{}, Dispatchable: true}
	if _, err := bus.Serve(t.Context(), h.b, bus.TrackerRefresh, func(_ context.Context, _ string, req bus.IssuesByIDs) (bus.IssueList, error) {
		if len(req.IDs) != 1 || req.IDs[0] != full.ID || req.Outline {
			return bus.IssueList{}, fmt.Errorf("asked for %v (outline %v)", req.IDs, req.Outline)
		}
		return bus.IssueList{Issues: []bus.Issue{full}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !full.Outline().IsOutline {
		t.Fatal("the issue is small enough to go whole")
	}
	if err := bus.Publish(h.b, bus.TrackerSnapshots, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: []bus.Issue{full.Outline()}, FetchedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "the issue's page", func() bool {
		resp, _ := get(t, h.url+"/issues/OUT-1")
		return resp.StatusCode == http.StatusOK
	})
	if _, body := get(t, h.url+"/issues/OUT-1"); !strings.Contains(body, desc) || !strings.Contains(body, blocker) {
		t.Errorf("issue page lacks the description or the blocker:\n%s", body)
	}
	if _, body := get(t, h.url+"/api/v1/issues/OUT-1"); !strings.Contains(body, desc) {
		t.Errorf("issue endpoint lacks the description:\n%s", body)
	}
}
