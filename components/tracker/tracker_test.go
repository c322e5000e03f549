package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

const testTimeout = 30 * time.Second

type harness struct {
	t     *testing.T
	b     *bus.Bus
	logs  *logBuf
	snaps *bus.Subscription[bus.CandidateSnapshot]
	fails *bus.Subscription[bus.PollFailed]
	// comp is the component under test.
	comp *Component
	// raw records every message on every Symphony subject.
	raw chan *nats.Msg
}

func startTracker(t *testing.T, env map[string]string) *harness {
	t.Helper()
	h := &harness{t: t, logs: &logBuf{}, raw: make(chan *nats.Msg, 10000)}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	if _, err := b.Conn().ChanSubscribe(bus.Root+".>", h.raw); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if h.snaps, err = bus.Subscribe(ctx, b, bus.TrackerSnapshots); err != nil {
		t.Fatal(err)
	}
	if h.fails, err = bus.Subscribe(ctx, b, bus.TrackerPollFailures); err != nil {
		t.Fatal(err)
	}
	comp, err := New(Options{Bus: b, Log: log, HTTPClient: &http.Client{Timeout: 5 * time.Second}, Env: workflowfile.Env{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.comp = comp
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := b.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

func (h *harness) config(version int64, tc bus.TrackerConfig, interval time.Duration) {
	h.t.Helper()
	snap := bus.ConfigSnapshot{Version: version, Checksum: "c", Path: "/x/WORKFLOW.md", Config: bus.Config{
		Tracker: tc,
		Polling: bus.PollingConfig{IntervalMS: interval.Milliseconds()},
	}}
	if _, err := bus.Put(h.t.Context(), h.b, bus.ConfigCurrent, snap); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) snapshot() bus.CandidateSnapshot {
	h.t.Helper()
	select {
	case m := <-h.snaps.C():
		return m.Data
	case <-time.After(testTimeout):
		h.t.Fatal("no snapshot")
	}
	return bus.CandidateSnapshot{}
}

func (h *harness) failure() bus.PollFailed {
	h.t.Helper()
	select {
	case m := <-h.fails.C():
		return m.Data
	case <-time.After(testTimeout):
		h.t.Fatal("no poll failure")
	}
	return bus.PollFailed{}
}

func TestComponentFilesTracker(t *testing.T) {
	dir := t.TempDir()
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Todo\n---\n")
	writeIssue(t, dir, "A-2.md", "---\ntitle: two\nstate: Done\n---\n")
	h := startTracker(t, nil)

	// Before any config, requests fail with a clear, classed reason. (The
	// component may not be serving yet: ask until it answers.)
	var re *bus.RemoteError
	deadline := time.Now().Add(testTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		_, err := bus.Ask(ctx, h.b, bus.TrackerCandidates, bus.IssuesByStates{States: []string{"Todo"}})
		cancel()
		if errors.As(err, &re) || time.Now().After(deadline) {
			if re == nil || re.Code != bus.TrackerConfigError {
				t.Errorf("before config: %v", err)
			}
			break
		}
	}

	tc := bus.TrackerConfig{Kind: bus.TrackerFiles, Provider: bus.TrackerProvider{Path: dir}, ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"}}
	h.config(1, tc, 50*time.Millisecond)
	s := h.snapshot()
	if len(s.Issues) != 1 || s.Issues[0].Identifier != "A-1" || s.ConfigVersion != 1 || s.FetchedAt.IsZero() {
		t.Fatalf("snapshot %+v", s)
	}
	// The next poll sees an edit.
	writeIssue(t, dir, "A-1.md", "---\ntitle: one\nstate: Done\n---\n")
	for {
		s = h.snapshot()
		if len(s.Issues) == 0 {
			break
		}
	}
	list, err := bus.Ask(t.Context(), h.b, bus.TrackerTerminal, bus.IssuesByStates{States: []string{"Done"}})
	if err != nil || len(list.Issues) != 2 {
		t.Errorf("terminal: %+v %v", list, err)
	}
	list, err = bus.Ask(t.Context(), h.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{"A-2"}})
	if err != nil || len(list.Issues) != 1 || list.Issues[0].State != "Done" {
		t.Errorf("refresh: %+v %v", list, err)
	}

	// A config pointing at a missing directory: polls fail and say why,
	// and the component keeps running.
	tc.Provider.Path = filepath.Join(dir, "missing")
	h.config(2, tc, 50*time.Millisecond)
	f := h.failure()
	if f.Class != bus.TrackerRequestError || !strings.Contains(f.Message, "missing") {
		t.Errorf("poll failure %+v", f)
	}
	tc.Provider.Path = dir
	h.config(3, tc, time.Hour)
	if s := h.snapshot(); s.ConfigVersion != 3 {
		t.Errorf("recovered snapshot %+v", s)
	}
}

// TestComponentLinearNeverLeaksKey runs the component against the fake
// Linear server and checks every bus message and log line for the key.
func TestComponentLinearNeverLeaksKey(t *testing.T) {
	f := newFakeLinear(t)
	f.setIssues([]map[string]any{linearIssue(1, "Todo"), linearIssue(2, "Todo")})
	h := startTracker(t, map[string]string{"LINEAR_API_KEY": testAPIKey})
	key := bus.NewSecret("LINEAR_API_KEY", "") // as it arrives from KV: a reference
	tc := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url(), APIKey: key, Assignee: "me"},
		ActiveStates: []string{"Todo"}, TerminalStates: []string{"Done"}}
	h.config(1, tc, time.Hour)
	if s := h.snapshot(); len(s.Issues) != 2 || !s.Issues[0].Dispatchable {
		t.Fatalf("snapshot %+v", s)
	}
	list, err := bus.Ask(t.Context(), h.b, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{"uuid-001"}})
	if err != nil || len(list.Issues) != 1 {
		t.Fatalf("refresh: %v", err)
	}
	// A failing poll (rate limited) is reported with its retry-after.
	f.inject = func(w http.ResponseWriter, n int, op string) bool {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(429)
		return true
	}
	tc.RequiredLabels = []string{"x"} // a tracker change triggers a poll now
	h.config(2, tc, time.Hour)
	pf := h.failure()
	if pf.Class != bus.TrackerRateLimited || pf.RetryAfterMS < 119000 {
		t.Errorf("poll failure %+v", pf)
	}
	_, err = bus.Ask(t.Context(), h.b, bus.TrackerCandidates, bus.IssuesByStates{States: []string{"Todo"}})
	var re *bus.RemoteError
	if !errors.As(err, &re) || re.Code != bus.TrackerRateLimited {
		t.Errorf("request while rate limited: %v", err)
	}
	// The limit is the key's and outlives reloads; here it has passed.
	gate := h.comp.gates.of(f.url(), testAPIKey)
	gate.mu.Lock()
	gate.till = time.Time{}
	gate.mu.Unlock()

	// A tracker that echoes the key (the fake checked that the request's
	// Authorization is testAPIKey) in a 401 body, a GraphQL error and a
	// non-JSON 500: each poll fails and says so, without the key.
	echoes := []struct {
		class string
		body  func(w http.ResponseWriter)
	}{
		{bus.TrackerStatusError, func(w http.ResponseWriter) {
			http.Error(w, `{"errors":[{"message":"bad key `+testAPIKey+`"}]}`, http.StatusUnauthorized)
		}},
		{bus.TrackerGraphQLError, func(w http.ResponseWriter) {
			fmt.Fprintf(w, `{"data":null,"errors":[{"message":"Authorization %s is not allowed"}]}`, testAPIKey)
		}},
		{bus.TrackerStatusError, func(w http.ResponseWriter) {
			http.Error(w, "<html>upstream error for "+testAPIKey+"</html>", http.StatusInternalServerError)
		}},
	}
	for i, echo := range echoes {
		f.mu.Lock()
		f.inject = func(w http.ResponseWriter, n int, op string) bool { echo.body(w); return true }
		f.mu.Unlock()
		tc.RequiredLabels = []string{fmt.Sprint("echo-", i)}
		h.config(int64(3+i), tc, time.Hour)
		pf := h.failure()
		if pf.Class != echo.class || strings.Contains(pf.Message, testAPIKey) || !strings.Contains(pf.Message, "[redacted]") {
			t.Errorf("echo %d: poll failure %+v, want class %s with the key redacted", i, pf, echo.class)
		}
	}

	// Missing secret: classed, named, never a crash.
	h2 := startTracker(t, map[string]string{})
	h2.config(1, tc, time.Hour)
	if pf := h2.failure(); pf.Class != bus.TrackerMissingSecret || !strings.Contains(pf.Message, "$LINEAR_API_KEY") {
		t.Errorf("missing secret: %+v", pf)
	}

	for _, hh := range []*harness{h, h2} {
		if strings.Contains(hh.logs.String(), testAPIKey) {
			t.Error("the API key is in the logs")
		}
	drain:
		for {
			select {
			case m := <-hh.raw:
				if strings.Contains(string(m.Data), testAPIKey) || strings.Contains(m.Header.Get(bus.HeaderError), testAPIKey) {
					t.Errorf("the API key is in a bus message on %s", m.Subject)
				}
			default:
				break drain
			}
		}
	}
}

func TestPollDelayHonoursRetryAfter(t *testing.T) {
	f := newFakeLinear(t)
	f.inject = func(w http.ResponseWriter, n int, op string) bool {
		w.Header().Set("Retry-After", "90")
		w.WriteHeader(429)
		return true
	}
	h := startTracker(t, nil)
	c, err := New(Options{Bus: h.b, Env: workflowfile.Env{LookupEnv: func(string) (string, bool) { return testAPIKey, true }}})
	if err != nil {
		t.Fatal(err)
	}
	c.apply(bus.ConfigSnapshot{Version: 1, Config: bus.Config{
		Tracker: bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: f.url(), APIKey: bus.NewSecret("K", "")}, ActiveStates: []string{"Todo"}},
		Polling: bus.PollingConfig{IntervalMS: 5000},
	}})
	if d := c.poll(t.Context()); d < 89*time.Second || d > 91*time.Second {
		t.Errorf("next poll in %v, want the provider's 90s", d)
	}
	f.inject = nil
}
