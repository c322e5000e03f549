package ui

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// openStream starts a GET of a stream and returns its response once the
// headers are in; cancel ends it.
func openStream(t *testing.T, url string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return resp, func() { cancel(); resp.Body.Close() }
}

// getBounded is get for a request that must answer in full: a stream that
// was not refused fails the test at waitBound instead of hanging it.
func getBounded(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v (a stream that was not refused?)", url, err)
	}
	return resp, string(body)
}

// TestStreamCapRefusesWithRetryAfter: with the cap at 3, three streams of
// the three kinds (overview, run page, API run events) are served; one
// more of any kind is refused with 503 and Retry-After, while a flood of
// refused streams goes on every page and API request still answers 200;
// once a stream ends, the next is served.
func TestStreamCapRefusesWithRetryAfter(t *testing.T) {
	h := newHarnessWith(t, func(o *Options) { o.MaxStreams = 3 })
	h.record(t, "run-c", "ENG-7", "capped", false) // running: its streams stay open
	h.eventually(t, "run in the model", func() bool { _, ok := h.srv.Model().Run("run-c"); return ok })
	kinds := []string{"/events", "/runs/run-c/stream", "/api/v1/runs/run-c/events"}
	var cancels []context.CancelFunc
	var api *http.Response
	for _, path := range kinds {
		resp, cancel := openStream(t, h.url+path)
		defer cancel()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s under the cap: %d", path, resp.StatusCode)
		}
		cancels = append(cancels, cancel)
		api = resp
	}
	var flood sync.WaitGroup
	for i := range 30 {
		flood.Go(func() {
			path := kinds[i%len(kinds)]
			resp, body := getBounded(t, h.url+path)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
				t.Errorf("%s past the cap: %d, Retry-After %q: %s", path, resp.StatusCode, resp.Header.Get("Retry-After"), clip(body, 200))
			}
			if strings.HasPrefix(path, "/api/") {
				wantAPIError(t, body, "too_many_streams")
			}
		})
	}
	for _, path := range []string{"/", "/runs", "/runs/run-c", "/issues/ENG-7", "/api/v1/state", "/api/v1/runs", "/api/v1/runs/run-c", "/api/v1/ENG-7", "/healthz", "/metrics"} {
		resp, body := getBounded(t, h.url+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with the streams at the cap: %d %s", path, resp.StatusCode, clip(body, 200))
		}
	}
	flood.Wait()
	// The streams served go on working through the flood: a new agent
	// event reaches the API stream.
	if _, err := bus.PublishDurable(t.Context(), h.b, bus.TurnEvents, bus.TurnEvent{RunID: "run-c", Turn: 1, Seq: 5, At: time.Now().UTC(), Kind: bus.TurnText, Text: "after the flood"}, "run-c-5", "run-c", "1"); err != nil {
		t.Fatal(err)
	}
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(api.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "after the flood") {
				got <- true
				return
			}
		}
		got <- false
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the API stream ended before the new event")
		}
	case <-time.After(waitBound):
		t.Fatal("the new event did not reach the API stream")
	}
	if _, body := getBounded(t, h.url+"/metrics"); !strings.Contains(body, "symphony_dashboard_sse_refused_total 30") {
		t.Fatal("refusals not counted in /metrics")
	}
	// A slot freed is taken by the next stream.
	cancels[0]()
	h.eventually(t, "a stream served after one ended", func() bool {
		resp, cancel := openStream(t, h.url+"/events")
		defer cancel()
		return resp.StatusCode == http.StatusOK
	})
}

// storeLongRun stores a finished run of about size bytes of agent events.
func storeLongRun(t *testing.T, b *bus.Bus, runID string, size int) {
	t.Helper()
	ctx := t.Context()
	ref := bus.IssueRef{ID: "id-long", Identifier: "ENG-9", Title: "long", State: "In Progress"}
	at := time.Now().UTC().Add(-time.Hour)
	if err := runlog.Record(ctx, b, bus.RunEvent{RunID: runID, Event: bus.RunDispatched, At: at, Issue: ref}, runID+"-d"); err != nil {
		t.Fatal(err)
	}
	w := runlog.NewWriter(b, 0)
	text := strings.Repeat("x", 4000)
	for i := range size / len(text) {
		at = at.Add(time.Millisecond)
		if err := w.AppendTurn(ctx, bus.TurnEvent{RunID: runID, Turn: 1, Seq: int64(i + 1), At: at, Kind: bus.TurnText, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := runlog.Record(ctx, b, bus.RunEvent{RunID: runID, Event: bus.RunFinished, At: at.Add(time.Second), Issue: ref, Status: bus.RunSucceeded}, runID+"-f"); err != nil {
		t.Fatal(err)
	}
}

// consumers counts the consumers on the run streams.
func consumers(t *testing.T, b *bus.Bus) int {
	t.Helper()
	n := 0
	for _, name := range []string{bus.StreamRuns, bus.StreamTurns, bus.StreamHooks} {
		s, err := b.JetStream().Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n += info.State.Consumers
	}
	return n
}

// TestNeverReadingClientsAreDroppedAndLeaveNothing: clients that ask for
// a long run (12 MB: more than the sockets hold, 4 MiB or so on loopback) through the API event
// stream, the run page and the run page's stream, and never read, are
// dropped by the server within the write timeout while still connected;
// others leave at once. Afterwards every goroutine, stream slot, read
// slot and consumer they had is gone. Before, the run page had no write
// deadline at all (its goroutine and its copy of the run stayed as long
// as the client did) and each stream held the run whole until dropped.
func TestNeverReadingClientsAreDroppedAndLeaveNothing(t *testing.T) {
	h := newHarnessWith(t, func(o *Options) { o.WriteTimeout = 500 * time.Millisecond })
	storeLongRun(t, h.b, "run-l", 12<<20)
	h.eventually(t, "run in the model", func() bool { r, ok := h.srv.Model().Run("run-l"); return ok && r.Status != "running" })
	host := strings.TrimPrefix(h.url, "http://")
	settle := func() int {
		http.DefaultClient.CloseIdleConnections()
		runtime.GC()
		return runtime.NumGoroutine()
	}
	base, baseConsumers := settle(), consumers(t, h.b)
	paths := []string{"/api/v1/runs/run-l/events", "/api/v1/runs/run-l/events", "/api/v1/runs/run-l/events",
		"/runs/run-l", "/runs/run-l", "/runs/run-l/stream", "/runs/run-l/stream"}
	var stay []net.Conn
	for i := range 2 * len(paths) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", paths[i%len(paths)], host); err != nil {
			t.Fatal(err)
		}
		if i < len(paths) {
			stay = append(stay, c) // never reads, never leaves
		} else {
			c.Close() // leaves at once
		}
	}
	h.eventually(t, "the clients being served", func() bool {
		return len(h.srv.streams.slots) > 0 && len(h.srv.streams.reads) > 0
	})
	h.eventually(t, "the never-reading clients dropped and everything they had released", func() bool {
		return len(h.srv.streams.slots) == 0 && len(h.srv.streams.reads) == 0 &&
			consumers(t, h.b) == baseConsumers && settle() <= base
	})
	// They were dropped by the server, not by leaving: each connection is
	// closed from the server's side (what it had sent, then the end).
	for _, c := range stay {
		_ = c.SetReadDeadline(time.Now().Add(waitBound))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("a dropped client's connection was not closed by the server: %v", err)
		}
	}
}

// TestReadsAndTrackerAsksAreBounded: slow readers may hold every read
// slot for as long as they keep reading. A run page then answers 503 with
// Retry-After after its wait, the issue API answers without recent
// events, and a made-up run id is not found, each within a bounded time
// instead of waiting for a slot without end. And the dashboard asks the
// tracker for one full issue at a time: an issue page that finds the ask
// taken shows the poll's outline at once, queueing nothing in front of
// the scheduler's and the agent runner's requests.
func TestReadsAndTrackerAsksAreBounded(t *testing.T) {
	h := newHarness(t)
	h.record(t, "run-b", "ENG-8", "busy", true)
	h.eventually(t, "run in the model", func() bool { _, ok := h.srv.Model().Run("run-b"); return ok })
	desc := "The whole description." + strings.Repeat(" More.", 500)
	full := bus.Issue{ID: "id-out-2", Identifier: "OUT-2", Title: "outlined", State: "Todo", Description: &desc, Labels: []string{}, Dispatchable: true}
	var mu sync.Mutex
	asks := 0
	if _, err := bus.Serve(t.Context(), h.b, bus.TrackerRefresh, func(context.Context, string, bus.IssuesByIDs) (bus.IssueList, error) {
		mu.Lock()
		asks++
		mu.Unlock()
		return bus.IssueList{Issues: []bus.Issue{full}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(h.b, bus.TrackerSnapshots, bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: []bus.Issue{full.Outline()}, FetchedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	h.eventually(t, "the issue's page", func() bool { resp, _ := get(t, h.url+"/issues/OUT-2"); return resp.StatusCode == http.StatusOK })
	mu.Lock()
	asks = 0
	mu.Unlock()

	// Every read slot taken, and the tracker ask.
	h.srv.streams.pageWait, h.srv.streams.detailWait = 200*time.Millisecond, 100*time.Millisecond
	for range cap(h.srv.streams.reads) {
		h.srv.streams.reads <- struct{}{}
	}
	h.srv.streams.tracker <- struct{}{}

	if resp, _ := getBounded(t, h.url+"/runs/run-b"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("run page with every read slot taken: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, body := getBounded(t, h.url+"/api/v1/issues/ENG-8"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"recent_events": []`) {
		t.Errorf("issue API with every read slot taken: %d %s", resp.StatusCode, clip(body, 300))
	}
	if resp, _ := getBounded(t, h.url+"/api/v1/runs/not-a-stored-run"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown run with every read slot taken: %d", resp.StatusCode)
	}
	if resp, body := getBounded(t, h.url+"/issues/OUT-2"); resp.StatusCode != http.StatusOK || strings.Contains(body, desc) {
		t.Errorf("issue page with the tracker ask taken: %d, full description shown: %v", resp.StatusCode, strings.Contains(body, desc))
	}
	mu.Lock()
	if asks != 0 {
		t.Errorf("the tracker was asked %d times while the dashboard's ask was taken", asks)
	}
	mu.Unlock()

	// Freed: everything is served in full again.
	for range cap(h.srv.streams.reads) {
		<-h.srv.streams.reads
	}
	<-h.srv.streams.tracker
	if resp, _ := getBounded(t, h.url+"/runs/run-b"); resp.StatusCode != http.StatusOK {
		t.Errorf("run page after: %d", resp.StatusCode)
	}
	if _, body := getBounded(t, h.url+"/issues/OUT-2"); !strings.Contains(body, desc) {
		t.Error("issue page after: no full description")
	}
}
