package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// DefaultMaxStreams is how many event streams the dashboard serves at once
// unless Options.MaxStreams (--max-streams) says otherwise: far more than
// an operator's browser tabs and API clients need (a browser opens at most
// six connections to one host over HTTP/1.1), few enough that their
// buffers stay small (each stream holds a bounded amount: see sseStream
// and runlog.Each). 800 unbounded streams took the process from 40 to
// 676 MB.
const DefaultMaxStreams = 64

// streamRetryAfter is the Retry-After of a stream refused at the cap, in
// seconds; the page's own stream (EventSource, htmx) retries by itself.
const streamRetryAfter = 5

// streamLimit counts the open event streams of every kind — the overview's
// live sections (/events), a run page's live transcript (/runs/{id}/stream,
// live or replayed), and the API's run event stream
// (/api/v1/runs/{id}/events) — against one cap. Only streams count: a
// page, the JSON state or a control is never refused because streams are
// at the cap, so the operator's own page answers during a flood of
// streams. There is no cap per client address: the dashboard listens on
// loopback, where every client, the operator's browser and a flooding
// local process alike, has the same address.
//
// A page that reads a run's stored events (the run page's transcript, the
// issue API's recent events) is not refused either, but it waits for one
// of as many read slots (reads): each read holds a few bounded pieces of
// the run (runlog.Each) while its client takes them, so a flood of
// run pages is bounded in memory like a flood of streams, and queues
// (each waiting request holds only its connection) instead of failing.
//
// The wait for a read slot is bounded (see the read* constants): slow
// readers may hold every slot for as long as they keep reading, and the
// pages and API answers that wait must still answer.
//
// tracker counts the dashboard's own requests for a full issue
// (fullIssue): one at a time, and a page that finds it taken shows the
// poll's outline at once. The tracker answers requests one by one, before
// the scheduler's and the agent runner's: a flood of issue pages must not
// queue work in front of them.
type streamLimit struct {
	slots   chan struct{}
	reads   chan struct{}
	tracker chan struct{}
	// pageWait and detailWait bound the wait for a read slot (tests
	// shorten them).
	pageWait, detailWait time.Duration
}

func newStreamLimit(n int) *streamLimit {
	return &streamLimit{slots: make(chan struct{}, n), reads: make(chan struct{}, n), tracker: make(chan struct{}, 1),
		pageWait: readWaitPage, detailWait: readWaitDetail}
}

// How long a request waits for a read slot: a run page (then 503 with
// Retry-After), the issue API's recent events and a run missing from the
// model (then answered without them).
const (
	readWaitPage   = 10 * time.Second
	readWaitDetail = time.Second
)

// errReadsBusy is a read slot not found within its wait.
var errReadsBusy = errors.New("every read slot is taken")

// read waits up to wait for a read slot (errReadsBusy after it, ctx's
// error if ctx ends first); release gives it back.
func (l *streamLimit) read(ctx context.Context, wait time.Duration) (release func(), err error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.reads <- struct{}{}:
		return func() { <-l.reads }, nil
	case <-t.C:
		return nil, errReadsBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// askTracker takes the dashboard's one tracker request slot if it is free.
func (l *streamLimit) askTracker() (release func(), ok bool) {
	select {
	case l.tracker <- struct{}{}:
		return func() { <-l.tracker }, true
	default:
		return nil, false
	}
}

// streaming admits h while fewer than the cap of streams are open and
// answers 503 with Retry-After otherwise. The slot is held until h
// returns, which sseStream bounds for a client that stops reading.
func (s *Server) streaming(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.streams.slots <- struct{}{}:
		default:
			s.metrics.sseRefused.Inc()
			w.Header().Set("Retry-After", strconv.Itoa(streamRetryAfter))
			writeError(w, r, http.StatusServiceUnavailable, "too_many_streams",
				fmt.Sprintf("the dashboard already serves %d event streams (its limit, --max-streams); try again in %d s", cap(s.streams.slots), streamRetryAfter))
			return
		}
		defer func() { <-s.streams.slots }()
		h(w, r)
	}
}

// deadlineWriter writes a response that may be long (a run page with a
// long transcript) under a write deadline that moves with progress: a
// client that stops reading is dropped after timeout, not served for
// ever. It moves the deadline at most once a second.
type deadlineWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	movedAt time.Time
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration) *deadlineWriter {
	d := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	d.move(true)
	return d
}

func (d *deadlineWriter) move(force bool) {
	moveDeadline(d.rc, d.timeout, &d.movedAt, force)
}

// moveDeadline sets rc's write deadline timeout ahead, unless it was moved
// (at *movedAt) within the last second and force is false: a deadline per
// write would cost a timer reset each.
func moveDeadline(rc *http.ResponseController, timeout time.Duration, movedAt *time.Time, force bool) {
	now := time.Now()
	if !force && now.Sub(*movedAt) < time.Second {
		return
	}
	*movedAt = now
	_ = rc.SetWriteDeadline(now.Add(timeout))
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.move(false)
	return d.w.Write(p)
}
