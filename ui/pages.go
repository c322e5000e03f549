package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/a-h/templ"
	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/runlog"
)

//go:embed static
var staticFiles embed.FS

// recentRuns is how many finished runs the overview lists; the runs page
// lists up to runsLimit.
const recentRuns = 25

// overviewThrottle is the least time between two overview updates on one
// live stream; ageTick refreshes ages and elapsed times while agents run.
const (
	overviewThrottle = 250 * time.Millisecond
	ageTick          = time.Second
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /{$}", s.pageOverview)
	mux.HandleFunc("GET /events", s.streaming(s.streamOverview))
	mux.HandleFunc("GET /runs", s.pageRuns)
	mux.HandleFunc("GET /runs/{id}", s.pageRun)
	mux.HandleFunc("GET /runs/{id}/stream", s.streaming(s.streamRun))
	mux.HandleFunc("GET /runs/{id}/cancel", s.pageCancel)
	mux.HandleFunc("POST /runs/{id}/cancel", s.postCancel)
	mux.HandleFunc("GET /issues/{identifier}", s.pageIssue)
	mux.HandleFunc("POST /issues/{identifier}/clear-blocked", s.postClearBlocked)
	mux.HandleFunc("POST /issues/{identifier}/reset-spend", s.postResetSpend)
	mux.HandleFunc("POST /control/{action}", s.postControl)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler())

	mux.HandleFunc("/api/v1/state", only(http.MethodGet, s.apiState))
	mux.HandleFunc("/api/v1/refresh", only(http.MethodPost, s.apiRefresh))
	mux.HandleFunc("/api/v1/runs", only(http.MethodGet, s.apiRuns))
	mux.HandleFunc("/api/v1/runs/{id}", only(http.MethodGet, s.apiRun))
	mux.HandleFunc("/api/v1/runs/{id}/events", only(http.MethodGet, s.streaming(s.apiRunEvents)))
	mux.HandleFunc("/api/v1/spend", only(http.MethodGet, s.apiSpend))
	mux.HandleFunc("/api/v1/spend/{identifier}/reset", only(http.MethodPost, s.apiResetSpend))
	mux.HandleFunc("/api/v1/issues/{identifier}", only(http.MethodGet, s.apiIssueAny))
	mux.HandleFunc("/api/v1/{identifier}", only(http.MethodGet, s.apiIssue))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", "no API endpoint "+strconvQuote(clip(r.URL.Path, 200)))
	})
	return s.guard(jsonFallbacks(mux))
}

// jsonFallbacks answers what mux has no route for in the JSON error
// envelope, as the reference does for every route: an unknown path is 404
// not_found, a known one with the wrong method 405 method_not_allowed
// (with mux's Allow header). The dashboard's pages stay HTML; only these
// fallbacks, plain text from ServeMux, change.
func jsonFallbacks(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No pattern: mux would answer 404 or 405; ask it which.
		probe := &statusProbe{header: http.Header{}}
		mux.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			if allow := probe.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeJSON(w, http.StatusMethodNotAllowed, apiError{apiErrorBody{Code: "method_not_allowed",
				Message: r.Method + " is not allowed on " + strconvQuote(clip(r.URL.Path, 200)) + "; allowed: " + probe.header.Get("Allow")}})
			return
		}
		if probe.status >= 300 && probe.status < 400 {
			// mux's own redirects (a cleaned path, a missing slash).
			for k, v := range probe.header {
				w.Header()[k] = v
			}
			w.WriteHeader(probe.status)
			return
		}
		writeJSON(w, http.StatusNotFound, apiError{apiErrorBody{Code: "not_found", Message: "no route " + strconvQuote(clip(r.URL.Path, 200))}})
	})
}

// statusProbe records the status and headers ServeMux's fallback would
// send, and drops its body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }

func (p *statusProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

// render writes a page; a render error (a bug) is logged and answered 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		s.log.Error("render page", "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusInternalServerError, "render_failed", "the page could not be rendered")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) view(recent int) View { return s.model.Snapshot(s.opts.Now(), recent) }

// flashes are the fixed notices a control redirect may show (the query
// names one; its text never comes from the request).
var flashes = map[string]string{
	"refresh": "Refresh queued: the tracker is polled and runs are reconciled now.",
	"pause":   "Dispatch paused: nothing new starts; running agents continue.",
	"resume":  "Dispatch resumed.",
	"cancel":  "Cancel sent: the agent is being stopped.",
	"cleared": "Blocked issue cleared: it can be dispatched again.",
	"spent":   "Lifetime spend reset: the issue's budget.per_issue counts start from zero and its park is cleared.",
}

func flashOf(r *http.Request) string { return flashes[r.URL.Query().Get("done")] }

func (s *Server) pageOverview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, overviewPage(s.view(recentRuns), flashOf(r)))
}

func (s *Server) pageRuns(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if err := checkStatusFilter(status); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	v := s.view(runsLimit)
	runs := append(slices.Clone(v.Running), v.Recent...)
	if status != "" {
		runs = slices.DeleteFunc(runs, func(r RunView) bool { return string(r.Status) != status })
	}
	s.render(w, r, http.StatusOK, runsPage(v, runs, status))
}

func (s *Server) pageIssue(w http.ResponseWriter, r *http.Request) {
	ident := r.PathValue("identifier")
	iv, ok := s.model.Issue(ident)
	if !safeid.Valid(ident) || !ok {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Issue not found", "No issue "+clip(ident, 80)+" is known to this instance: it was not among the latest poll's candidates and has no runs, retry or block."))
		return
	}
	s.fullIssue(r.Context(), &iv)
	s.render(w, r, http.StatusOK, issuePage(s.view(0), iv, s.workspaceOf(iv), flashOf(r)))
}

// fullIssue replaces the outline the latest poll gave (no description, no
// blockers: snapshots stay small however many issues the tracker holds)
// with the full issue read from the tracker by id. When the tracker cannot
// answer soon, the outline is shown.
func (s *Server) fullIssue(ctx context.Context, iv *IssueView) {
	if iv.Issue == nil || !iv.Issue.IsOutline || s.opts.Bus == nil {
		return
	}
	release, ok := s.streams.askTracker()
	if !ok {
		return // another page is asking: the outline it is
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list, err := bus.Ask(ctx, s.opts.Bus, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{iv.Issue.ID}})
	if err != nil {
		s.log.Debug("full issue unavailable; showing the poll's outline", "issue_id", iv.Issue.ID, "issue_identifier", iv.Issue.Identifier, "err", err)
		return
	}
	for _, iss := range list.Issues {
		if iss.ID == iv.Issue.ID {
			iv.Issue = &iss
			return
		}
	}
}

func (s *Server) pageRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, ok := s.lookupRun(r.Context(), id)
	if !ok {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Run not found", "No run "+clip(id, 80)+" is stored here (it may have been pruned)."))
		return
	}
	// The page shows what was stored when it was asked for; its live
	// stream starts after that. The transcript is read while it is
	// written (a long run is never held per reader) and only up to that
	// point: what came later arrives over the stream.
	stored, err := s.feed.Stored(r.Context(), id)
	if err != nil {
		s.log.Warn("read run events", "run_id", id, "err", err)
		s.render(w, r, http.StatusBadGateway, messagePage(s.view(0), "Run unavailable", "The run's events could not be read: "+err.Error()))
		return
	}
	release, err := s.streams.read(r.Context(), s.streams.pageWait)
	if errors.Is(err, errReadsBusy) {
		w.Header().Set("Retry-After", strconv.Itoa(streamRetryAfter))
		s.render(w, r, http.StatusServiceUnavailable, messagePage(s.view(0), "Busy", "Every run read is taken by other clients; try again in a few seconds."))
		return
	}
	if err != nil {
		return // the client left while waiting
	}
	defer release()
	var readErr error
	events := func(yield func(runlog.Event) bool) {
		_, readErr = s.feed.Timeline(r.Context(), id, false, func(ev runlog.Event) error {
			if !stored.Includes(ev) {
				return nil
			}
			if !yield(ev) {
				return errPageStopped
			}
			return nil
		})
		if errors.Is(readErr, errPageStopped) {
			readErr = nil
		}
	}
	failed := func() string {
		if readErr == nil {
			return ""
		}
		s.log.Warn("read run events", "run_id", id, "err", readErr)
		return clip(readErr.Error(), 500)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The write deadline stays on the connection after the page.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	// Written as it renders, under a write deadline: a client that stops
	// reading is dropped, and with it the read of the run.
	if err := runPage(s.view(0), run, events, failed, stored.String(), flashOf(r)).Render(r.Context(), newDeadlineWriter(w, s.opts.WriteTimeout)); err != nil && r.Context().Err() == nil {
		s.log.Debug("run page not written", "run_id", id, "err", err)
	}
}

// errPageStopped ends the read of a run whose page stopped being written.
var errPageStopped = errors.New("run page stopped")

func (s *Server) pageCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, ok := s.lookupRun(r.Context(), id)
	if !ok {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Run not found", "No run "+clip(id, 80)+" is stored here."))
		return
	}
	if run.Status != bus.RunRunning {
		s.render(w, r, http.StatusConflict, messagePage(s.view(0), "Run not running", "Run "+id+" already ended ("+string(run.Status)+")."))
		return
	}
	s.render(w, r, http.StatusOK, cancelPage(s.view(0), run))
}

func (s *Server) postCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, ok := s.lookupRun(r.Context(), id)
	if !ok {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Run not found", "No run "+clip(id, 80)+" is stored here."))
		return
	}
	res, err := s.control(r.Context(), bus.Control{Action: bus.ControlCancel, RunID: run.RunID, IssueID: run.Issue.ID, Reason: "canceled by the operator from the dashboard"})
	if err != nil {
		s.controlFailed(w, r, err)
		return
	}
	s.log.Info("operator canceled a run", "run_id", id, "issue_id", run.Issue.ID, "issue_identifier", run.Issue.Identifier, "scheduler", res.Message)
	http.Redirect(w, r, runURL(id)+"?done=cancel", http.StatusSeeOther)
}

func (s *Server) postClearBlocked(w http.ResponseWriter, r *http.Request) {
	ident := r.PathValue("identifier")
	iv, ok := s.model.Issue(ident)
	if !safeid.Valid(ident) || !ok || iv.Blocked == nil {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Not blocked", "Issue "+clip(ident, 80)+" is not blocked."))
		return
	}
	if _, err := s.control(r.Context(), bus.Control{Action: bus.ControlClearBlocked, IssueID: iv.Blocked.IssueID, Reason: "cleared from the dashboard"}); err != nil {
		s.controlFailed(w, r, err)
		return
	}
	http.Redirect(w, r, issueURL(ident)+"?done=cleared", http.StatusSeeOther)
}

func (s *Server) postControl(w http.ResponseWriter, r *http.Request) {
	var action bus.ControlAction
	switch r.PathValue("action") {
	case "refresh":
		action = bus.ControlRefresh
	case "pause":
		action = bus.ControlPause
	case "resume":
		action = bus.ControlResume
	default:
		writeError(w, r, http.StatusNotFound, "not_found", "no such control")
		return
	}
	if _, err := s.control(r.Context(), bus.Control{Action: action, Reason: "from the dashboard"}); err != nil {
		s.controlFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/?done="+string(action), http.StatusSeeOther)
}

// controlFailed shows why a control did not reach the scheduler.
func (s *Server) controlFailed(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, errReadOnly):
		status = http.StatusConflict
	case errors.Is(err, bus.ErrNoResponder), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	s.render(w, r, status, messagePage(s.view(0), "Command not applied", err.Error()))
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	v := s.view(0)
	status := http.StatusOK
	body := map[string]any{"status": "ok", "ready": v.Ready}
	if !v.Ready {
		status, body["status"] = http.StatusServiceUnavailable, "starting"
	}
	writeJSON(w, status, body)
}

// overviewSections renders the parts of the overview a live stream
// updates, by SSE event name.
func overviewSections(ctx context.Context, v View) (map[string]string, error) {
	out := map[string]string{}
	for name, c := range map[string]templ.Component{
		"counts": countsSection(v), "controls": controlsSection(v), "running": runningSection(v), "retrying": retrySection(v),
		"blocked": blockedSection(v), "recent": recentSection(v), "spend": spendSection(v), "notes": notesSection(v),
	} {
		var buf bytes.Buffer
		if err := c.Render(ctx, &buf); err != nil {
			return nil, err
		}
		out[name] = buf.String()
	}
	return out, nil
}

// streamOverview pushes the overview's sections when they change (at most
// every overviewThrottle), and every ageTick while something is running so
// ages and elapsed times move.
func (s *Server) streamOverview(w http.ResponseWriter, r *http.Request) {
	sse, err := s.startSSE(w, r)
	if err != nil {
		return
	}
	defer sse.close()
	// Every section is sent once on connect: the state may have moved
	// since the page was rendered (or during a reconnect gap).
	sent := map[string]string{}
	tick := time.NewTicker(ageTick)
	defer tick.Stop()
	for {
		changed, _ := s.model.Changed()
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
		}
		v := s.view(recentRuns)
		sections, err := overviewSections(r.Context(), v)
		if err != nil {
			s.log.Error("render overview", "err", err)
			return
		}
		for _, name := range []string{"counts", "controls", "spend", "running", "retrying", "blocked", "notes", "recent"} {
			if sections[name] == sent[name] {
				continue
			}
			if err := sse.send(name, "", sections[name]); err != nil {
				return
			}
			sent[name] = sections[name]
		}
		t := time.NewTimer(overviewThrottle)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// streamRun pushes a run's new transcript entries, its header and its
// controls. It resumes after ?after= (or Last-Event-ID on a reconnect) and
// sends "done" once the run has ended and every stored event was sent,
// which closes the browser's stream.
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request) {
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
	sse, err := s.startSSE(w, r)
	if err != nil {
		return
	}
	defer sse.close()
	sent := map[string]string{}
	// push sends a fragment when it differs from what was sent last.
	push := func(ctx context.Context, name string, c templ.Component) error {
		var buf bytes.Buffer
		if err := c.Render(ctx, &buf); err != nil {
			return err
		}
		if h := buf.String(); h != sent[name] {
			sent[name] = h
			return sse.send(name, "", h)
		}
		return nil
	}
	err = s.followRun(r.Context(), id, after, false,
		func(ctx context.Context, ev runlog.Event, cur runlog.Cursor) error {
			var buf bytes.Buffer
			if err := eventItem(ev).Render(ctx, &buf); err != nil {
				return err
			}
			return sse.queue("transcript", cur.String(), buf.String())
		},
		sse.flush,
		func(ctx context.Context) (bool, error) {
			run, ok := s.lookupRun(ctx, id)
			if !ok {
				return false, nil
			}
			v := s.view(0)
			if err := push(ctx, "status", runHeader(v, run)); err != nil {
				return false, err
			}
			if err := push(ctx, "controls", runControls(v, run)); err != nil {
				return false, err
			}
			return run.Status != bus.RunRunning, nil
		},
		func(cur runlog.Cursor) error { return sse.send("done", cur.String(), "") })
	if err != nil && r.Context().Err() == nil && !errors.Is(err, errStreamClosed) {
		s.log.Debug("run stream ended", "run_id", id, "err", err)
	}
}

// followRun feeds a run's events after the cursor (one stream, from the
// feed's Follow) to onEvent, calls onTick
// every ageTick (it reports whether the run has ended), and returns after
// calling onDone once the run has ended and every event stored up to its
// end was delivered. It returns early when ctx ends or a callback fails.
// onEvent may leave its output buffered: onIdle is called whenever no
// further event is waiting, so a burst is written out once. raw asks for
// agent events undecoded (see runlog.RawTurns).
func (s *Server) followRun(ctx context.Context, id string, after runlog.Cursor, raw bool,
	onEvent func(context.Context, runlog.Event, runlog.Cursor) error,
	onIdle func() error,
	onTick func(context.Context) (bool, error),
	onDone func(runlog.Cursor) error) error {
	events, err := s.feed.Follow(ctx, id, after, raw)
	if err != nil {
		return err
	}
	defer events.Close()
	tick := time.NewTicker(ageTick)
	defer tick.Stop()
	// end is where the run's stored events stop, read once the run has
	// ended (onTick says so: the header it pushed shows the end): "done"
	// waits until the cursor covers it, so a run_finished that overtook
	// turn events in another stream cannot cut them off.
	var end *runlog.Cursor
	// soon re-checks quickly after run_finished: the summary that says the
	// run ended is written just after the event. It fires at once first: a
	// run that ended before the stream began (its stored events already
	// sent from the timeline) ends it without waiting a tick.
	soon := time.NewTimer(0)
	defer soon.Stop()
	finishedSeen := false
	for {
		check := false
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events.C():
			if !ok {
				return events.Err()
			}
			after.Advance(ev)
			// An unreadable message has nothing to show; the cursor has
			// passed it.
			if !ev.Unreadable {
				if err := onEvent(ctx, ev, after); err != nil {
					return err
				}
			}
			if len(events.C()) == 0 {
				if err := onIdle(); err != nil {
					return err
				}
			}
			if ev.Run != nil && ev.Run.Event == bus.RunFinished {
				check, finishedSeen = true, true
			}
		case <-tick.C:
			check = true
		case <-soon.C:
			check = true
		}
		if !check {
			continue
		}
		ended, err := onTick(ctx)
		if err != nil {
			return err
		}
		if !ended {
			if finishedSeen {
				soon.Reset(25 * time.Millisecond)
			}
			continue
		}
		if end == nil {
			e, err := s.feed.End(ctx, id)
			if err != nil {
				s.log.Warn("read where a run ends", "run_id", id, "err", err)
				continue
			}
			end = &e
		}
		if after.Covers(*end) {
			return onDone(after)
		}
		soon.Reset(25 * time.Millisecond) // the rest is on its way
	}
}
