package tracker

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// github_api shares the token's quota with the poller: an agent (a
// hijacked one included) must not be able to spend it all, nor trip
// GitHub's secondary limits on content creation for every run. Two
// bounds, both refused without a request, class rate_limited, with the
// wait in RateLimit.RetryAfterMS:
//
//   - quota_reserve: once the last answer on the token reported fewer
//     requests left than the reserve — a tenth of the window's limit, at
//     least githubReserveMin — until the window resets (or a later answer,
//     the poller's, reports more), the tool is refused; the poller's
//     own requests are not.
//   - run_write_rate: a run makes at most githubRunWritesPerMinute
//     writes (POST, PATCH, PUT, DELETE) in any minute.

// Bounds of github_api on the shared quota.
const (
	githubReserveMin          = 100
	githubReservePercent      = 10
	githubRunWritesPerMinute  = 30
	githubRunWriteWindow      = time.Minute
	githubReserveDefaultRetry = time.Minute
	// maxWriteRuns bounds the runs whose writes are counted at once
	// (as tool sessions are).
	maxWriteRuns = maxToolSessions
)

// githubQuotaReserve is the part of a window of limit requests kept for
// the poller.
func githubQuotaReserve(limit int64) int64 {
	return max(limit*githubReservePercent/100, githubReserveMin)
}

// noteQuota records the provider's latest report of its primary quota.
func (g *rateGate) noteQuota(remaining, limit int64, reset time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.quota.remaining, g.quota.reset, g.quota.known = remaining, reset, true
	if limit > 0 {
		g.quota.limit = limit
	}
}

// quotaLeft returns the last report: remaining, limit (0 unknown) and
// reset (zero unknown); ok is false before any report.
func (g *rateGate) quotaLeft() (remaining, limit int64, reset time.Time, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.quota.remaining, g.quota.limit, g.quota.reset, g.quota.known
}

// toolQuota refuses a call of run that would eat into the poller's
// reserve or go over the run's write rate; nil lets it go.
func (g *github) toolQuota(runID, method string) *bus.ToolResult {
	now := g.now()
	limited := func(rule string, wait time.Duration, msg string) *bus.ToolResult {
		return &bus.ToolResult{Class: bus.TrackerRateLimited, Rule: rule, Error: msg,
			RateLimit: &bus.ToolRateLimit{Limited: true, RetryAfterMS: wait.Milliseconds()}}
	}
	if rem, lim, reset, ok := g.gate.quotaLeft(); ok && (reset.IsZero() || now.Before(reset)) {
		if reserve := githubQuotaReserve(lim); rem < reserve {
			wait := githubReserveDefaultRetry
			if !reset.IsZero() {
				wait = max(reset.Sub(now), time.Second)
			}
			return limited("quota_reserve", wait, fmt.Sprintf("github_api is held back: the token has %d requests left, under the reserve of %d kept for Symphony's polling (a tenth of the limit, at least %d); try again after the window resets", rem, reserve, githubReserveMin))
		}
	}
	if method == http.MethodGet {
		return nil
	}
	if wait := g.writes.take(runID, now); wait > 0 {
		return limited("run_write_rate", wait, fmt.Sprintf("github_api allows a run at most %d writes a minute (GitHub's secondary limits on content creation apply to every run on the token)", githubRunWritesPerMinute))
	}
	return nil
}

// runWrites counts the writes of each run in the last minute.
type runWrites struct {
	mu    sync.Mutex
	byRun map[string][]time.Time
}

// take counts a write of run at now and returns 0, or, when the run has
// made its writes for the window already, how long until the oldest one
// leaves it (the write is not counted then).
func (w *runWrites) take(runID string, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byRun == nil {
		w.byRun = map[string][]time.Time{}
	}
	recent := w.byRun[runID][:0:0]
	for _, t := range w.byRun[runID] {
		if now.Sub(t) < githubRunWriteWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) >= githubRunWritesPerMinute {
		w.byRun[runID] = recent
		return recent[0].Add(githubRunWriteWindow).Sub(now)
	}
	if _, ok := w.byRun[runID]; !ok && len(w.byRun) >= maxWriteRuns {
		w.forgetIdle(now)
	}
	w.byRun[runID] = append(recent, now)
	return 0
}

// forgetIdle drops the runs without a write in the window; if none is,
// all are forgotten (a bound on memory, not on writes).
func (w *runWrites) forgetIdle(now time.Time) {
	for id, ts := range w.byRun {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= githubRunWriteWindow {
			delete(w.byRun, id)
		}
	}
	if len(w.byRun) >= maxWriteRuns {
		clear(w.byRun)
	}
}
