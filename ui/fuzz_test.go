package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// FuzzHandler sends arbitrary requests (method, path, Host, Origin,
// Last-Event-ID, body) through the dashboard's full handler, guards
// included: nothing may panic, every answer has a valid status, and a
// state-changing request from a foreign origin never reaches a handler.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/api/v1/state", "127.0.0.1:4000", "", "", "")
	f.Add("POST", "/api/v1/refresh", "localhost", "http://localhost", "", "{}")
	f.Add("POST", "/api/v1/refresh", "evil.example", "http://evil.example", "", "[1")
	f.Add("GET", "/api/v1/runs/r1/events", "[::1]:4000", "", "1.2.3", "")
	f.Add("GET", "/runs/r1/stream?after=9.9.9", "127.0.0.1", "", "x.y", "")
	f.Add("GET", "/api/v1/%00", "127.0.0.1", "", "", "")
	f.Add("POST", "/control/pause", "127.0.0.1", "null", "", "")
	f.Add("GET", "/issues/ABC-1", "127.0.0.1.", "", "", "")
	f.Add("GET", "/api/v1/spend?days=62", "127.0.0.1", "", "", "")
	f.Add("POST", "/api/v1/spend/ABC-1/reset", "127.0.0.1", "", "", "{}")
	f.Add("POST", "/issues/ABC-1/reset-spend", "localhost", "http://evil.example", "", "")
	events := []runlog.Event{{Stream: bus.StreamRuns, Seq: 1, At: time.Now(), Run: &bus.RunEvent{RunID: "r1", Event: bus.RunFinished, Status: bus.RunSucceeded}}}
	s, err := New(Options{Replay: &Replay{RunID: "r1", Events: events}})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path, host, origin, lastID, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") || strings.ContainsAny(host+origin+lastID, "\r\n\x00") {
			return
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		ctx, cancel := contextWithTimeout(t, 200*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if !s.hostAllowed(host) && rec.Code != http.StatusMisdirectedRequest {
			t.Fatalf("foreign Host %q served with %d", host, rec.Code)
		}
		if s.hostAllowed(host) && !safeMethod(method) && crossOrigin(req) != "" && rec.Code != http.StatusForbidden {
			t.Fatalf("cross-origin %s from %q answered %d", method, origin, rec.Code)
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return true
	}
	return false
}
