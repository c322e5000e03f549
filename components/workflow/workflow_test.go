package workflow

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

const (
	testTimeout = 30 * time.Second
	secret      = "lin_api_TOPSECRET_0123456789abcdef"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t       *testing.T
	b       *bus.Bus
	dataDir string
	path    string
	logs    *syncBuffer
	configs *bus.Stream[bus.Entry[bus.ConfigSnapshot]]
	errs    *bus.Subscription[bus.WorkflowError]
	stop    func()
	// env is the environment the component resolves against (guarded by
	// envMu: the component reads it in its goroutine).
	envMu         sync.Mutex
	env           map[string]string
	log           *slog.Logger
	recheck       time.Duration
	stopComponent func()
}

// runComponent starts another component on the same bus and returns its
// stop function.
func (h *harness) runComponent() func() {
	h.t.Helper()
	comp, err := New(Options{Path: h.path, Bus: h.b, Log: h.log, Env: h.environment(), Recheck: h.recheck})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}
}

func (h *harness) setenv(k, v string) {
	h.envMu.Lock()
	defer h.envMu.Unlock()
	h.env[k] = v
}

func (h *harness) environment() workflowfile.Env {
	return workflowfile.Env{LookupEnv: func(k string) (string, bool) {
		h.envMu.Lock()
		defer h.envMu.Unlock()
		v, ok := h.env[k]
		return v, ok
	}, Home: "/home/op", TempDir: "/tmp"}
}

func workflowText(turns int, extra string) string {
	return "---\ntracker:\n  kind: linear\n  provider:\n    project_slug: proj\nagent:\n  max_turns: " +
		itoa(turns) + "\n" + extra + "---\nWork on {{ issue.identifier }}.\n"
}

func itoa(n int) string { return strconv.Itoa(n) }

func start(t *testing.T, initial string, recheck time.Duration) *harness {
	return startWith(t, initial, recheck, false)
}

func startWith(t *testing.T, initial string, recheck time.Duration, noWatch bool) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, dataDir: filepath.Join(t.TempDir(), "data"), path: filepath.Join(dir, "WORKFLOW.md"), logs: &syncBuffer{}}
	if err := os.WriteFile(h.path, []byte(initial), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := bus.Open(t.Context(), bus.Options{DataDir: h.dataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	h.log, h.recheck = log, recheck
	h.env = map[string]string{"LINEAR_API_KEY": secret}
	comp, err := New(Options{Path: h.path, Bus: b, Log: log, Env: h.environment(), Recheck: recheck})
	if err != nil {
		t.Fatal(err)
	}
	comp.noWatch = noWatch
	wctx, wcancel := context.WithCancel(context.Background())
	if h.configs, err = bus.Watch(wctx, b, bus.ConfigCurrent); err != nil {
		t.Fatal(err)
	}
	if h.errs, err = bus.Subscribe(wctx, b, bus.WorkflowErrors); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	compStopped := false
	h.stopComponent = func() {
		if compStopped {
			return
		}
		compStopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		h.stopComponent()
		wcancel()
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close bus: %v", err)
		}
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) nextConfig() bus.ConfigSnapshot {
	h.t.Helper()
	select {
	case e := <-h.configs.C():
		return e.Value
	case <-time.After(testTimeout):
		h.t.Fatal("no config published")
	}
	return bus.ConfigSnapshot{}
}

func (h *harness) nextError() bus.WorkflowError {
	h.t.Helper()
	select {
	case m := <-h.errs.C():
		return m.Data
	case <-time.After(testTimeout):
		h.t.Fatal("no workflow error published")
	}
	return bus.WorkflowError{}
}

func (h *harness) write(content string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// replace writes like an editor: a temporary file renamed over the original.
func (h *harness) replace(content string) {
	h.t.Helper()
	tmp := filepath.Join(filepath.Dir(h.path), ".WORKFLOW.md.swp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

// status waits until the stored status has the wanted validity (the status
// is written just after the config, so a reader may be a moment early).
func (h *harness) status(valid bool) bus.WorkflowStatus {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		e, err := bus.Get(h.t.Context(), h.b, bus.ConfigStatus)
		if err == nil && e.Value.Valid == valid {
			return e.Value
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("status never became valid=%v: %+v %v", valid, e.Value, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLiveReload drives the component through valid, invalid, fixed and
// editor-replaced edits. The re-check is an hour, so every change here is
// seen through fsnotify.
func TestLiveReload(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)

	c := h.nextConfig()
	if c.Version != 1 || c.Config.Agent.MaxTurns != 5 || c.PromptTemplate != "Work on {{ issue.identifier }}." {
		t.Fatalf("initial: %+v", c)
	}

	h.write(workflowText(6, ""))
	if c = h.nextConfig(); c.Version != 2 || c.Config.Agent.MaxTurns != 6 {
		t.Fatalf("valid edit: %+v", c)
	}

	h.write(workflowText(-3, ""))
	e := h.nextError()
	if e.Class != workflowfile.ClassConfig || e.Key != "agent.max_turns" || e.Line != 7 || !strings.Contains(e.Message, "got -3") {
		t.Errorf("error event: %+v", e)
	}
	cur, err := bus.Get(t.Context(), h.b, bus.ConfigCurrent)
	if err != nil || cur.Value.Version != 2 || cur.Value.Config.Agent.MaxTurns != 6 {
		t.Errorf("the last good config must stay: %+v %v", cur.Value, err)
	}
	if st := h.status(false); st.Version != 2 || st.Error == nil || st.Error.Key != "agent.max_turns" {
		t.Errorf("status after a bad edit: %+v", st)
	}

	h.write(workflowText(7, ""))
	if c = h.nextConfig(); c.Version != 3 || c.Config.Agent.MaxTurns != 7 {
		t.Fatalf("fixed: %+v", c)
	}
	if st := h.status(true); st.Version != 3 {
		t.Errorf("status after the fix: %+v", st)
	}

	h.replace(workflowText(8, ""))
	if c = h.nextConfig(); c.Version != 4 || c.Config.Agent.MaxTurns != 8 {
		t.Fatalf("editor-style replace: %+v", c)
	}

	// A broken template is caught at load time too.
	h.replace("---\ntracker: {kind: linear, provider: {project_slug: p}}\n---\n{{ issue.nope }}\n")
	if e := h.nextError(); e.Class != workflowfile.ClassTemplateRender || e.Line != 4 {
		t.Errorf("template error event: %+v", e)
	}
}

// TestExpensiveTemplateReloadIsRejected: a template whose render never ends
// in the Liquid library (an empty loop of 10⁸, nested loops of 10¹⁰) ran
// for minutes on reload, burning a core, and a later good edit was not
// applied. The render budget makes the reload a template_render_error at
// once, and the watcher applies the next good edit.
func TestExpensiveTemplateReloadIsRejected(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	h.nextConfig()

	h.write("---\ntracker: {kind: linear, provider: {project_slug: p}}\n---\nWork.\n" +
		"{% for i in (1..100000000) %}{% endfor %}{% for i in (1..100000) %}{% for j in (1..100000) %}{% endfor %}{% endfor %}\n")
	e := h.nextError()
	if e.Class != workflowfile.ClassTemplateRender || !strings.Contains(e.Message, "render budget exceeded") || e.Line != 5 {
		t.Errorf("error event: %+v", e)
	}
	if st := h.status(false); st.Version != 1 || st.Error == nil || st.Error.Class != workflowfile.ClassTemplateRender {
		t.Errorf("status after the expensive template: %+v", st)
	}

	h.write(workflowText(6, ""))
	if c := h.nextConfig(); c.Version != 2 || c.Config.Agent.MaxTurns != 6 {
		t.Fatalf("good edit after the rejected one: %+v", c)
	}
}

// TestRecheckCatchesMissedEvents: with file events off, the periodic
// re-check still picks the edit up.
func TestRecheckCatchesMissedEvents(t *testing.T) {
	h := startWith(t, workflowText(5, ""), 50*time.Millisecond, true)
	h.nextConfig()
	// Same content again: nothing is republished.
	h.write(workflowText(5, ""))
	h.write(workflowText(9, ""))
	if c := h.nextConfig(); c.Version != 2 || c.Config.Agent.MaxTurns != 9 {
		t.Fatalf("got %+v", c)
	}
}

// TestRestartContinuesVersions: a component restarted on the same store
// does not republish an unchanged file, clears a stale error status left by
// the previous process, and keeps counting versions.
func TestRestartContinuesVersions(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	h.nextConfig()
	h.write(workflowText(-1, ""))
	h.nextError()
	h.status(false)
	h.stopComponent()
	// Fixed while nothing watched: the old config (v1) is what KV holds.
	h.write(workflowText(5, ""))
	second := h.runComponent()
	if st := h.status(true); st.Version != 1 {
		t.Errorf("after restart on the unchanged good file: %+v", st)
	}
	select {
	case e := <-h.configs.C():
		t.Fatalf("an unchanged file was republished: %+v", e.Value)
	case <-time.After(300 * time.Millisecond):
	}
	h.write(workflowText(11, ""))
	if c := h.nextConfig(); c.Version != 2 || c.Config.Agent.MaxTurns != 11 {
		t.Errorf("after restart: %+v", c)
	}
	second()
}

// TestEnvironmentChangeRepublishes: same bytes, different environment,
// different config — it is published.
func TestEnvironmentChangeRepublishes(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	h.nextConfig()
	h.stopComponent()
	h.write("---\ntracker: {kind: files, provider: {path: $ISSUES}}\n---\nx\n")
	h.setenv("ISSUES", "/issuesA")
	stop := h.runComponent()
	if c := h.nextConfig(); c.Config.Tracker.Provider.Path != "/issuesA" || c.Version != 2 {
		t.Fatalf("got %+v (v%d)", c.Config.Tracker.Provider, c.Version)
	}
	stop()
	h.setenv("ISSUES", "/issuesB")
	stop = h.runComponent()
	if c := h.nextConfig(); c.Config.Tracker.Provider.Path != "/issuesB" || c.Version != 3 {
		t.Fatalf("got %+v (v%d)", c.Config.Tracker.Provider, c.Version)
	}
	stop()
}

// TestSecretNeverStored searches the raw JetStream store bytes and the logs
// for the tracker secret after loads, a rejected edit and a recovery.
func TestSecretNeverStored(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	h.nextConfig()
	h.write(workflowText(-1, ""))
	h.nextError()
	h.write(workflowText(4, ""))
	c := h.nextConfig()
	if c.Config.Tracker.Provider.APIKey.Env() != "LINEAR_API_KEY" {
		t.Errorf("the snapshot should say where the key comes from: %+v", c.Config.Tracker.Provider)
	}
	h.stop()

	found := 0
	err := filepath.WalkDir(h.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		found++
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("secret found in store file %s", p)
		}
		return nil
	})
	if err != nil || found == 0 {
		t.Fatalf("walk store: %v (%d files)", err, found)
	}
	if strings.Contains(h.logs.String(), secret) {
		t.Error("secret found in the logs")
	}
	if !strings.Contains(h.logs.String(), "workflow rejected") {
		t.Error("the rejected edit was not logged")
	}
}

// TestRejectedEditNotifiesOncePerOccurrence: a rejected edit publishes a
// workflow_rejected notification whose id names the occurrence (the
// version in force and the rejected content): the same bad file read
// again by a restarted component gives the same id (delivered once by
// the notifier), a new bad edit a new one, and the same bad edit after a
// good version came in between a new one too.
func TestRejectedEditNotifiesOncePerOccurrence(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	notes, err := bus.Subscribe(t.Context(), h.b, bus.Notifications)
	if err != nil {
		t.Fatal(err)
	}
	next := func() bus.Notification {
		t.Helper()
		select {
		case m := <-notes.C():
			return m.Data
		case <-time.After(testTimeout):
			t.Fatal("no notification published")
		}
		return bus.Notification{}
	}
	h.nextConfig()
	bad := workflowText(-3, "")
	h.write(bad)
	h.nextError()
	first := next()
	if first.Event != bus.NotifyWorkflowRejected || !strings.HasPrefix(first.ID, "workflow_rejected/v1/") ||
		!strings.Contains(first.Reason, "version 1 stays in force") || !strings.Contains(first.Reason, "agent.max_turns") {
		t.Errorf("notification: %+v", first)
	}
	h.stopComponent()
	again := h.runComponent()
	h.nextError()
	if n := next(); n.ID != first.ID {
		t.Errorf("the same bad file after a restart: id %q, want %q", n.ID, first.ID)
	}
	again()
	third := h.runComponent()
	defer third()
	h.nextError()
	next()
	h.write(workflowText(-4, ""))
	h.nextError()
	if n := next(); n.ID == first.ID || !strings.HasPrefix(n.ID, "workflow_rejected/v1/") {
		t.Errorf("a new bad edit: id %q", n.ID)
	}
	h.write(workflowText(6, ""))
	h.nextConfig()
	h.write(bad)
	h.nextError()
	if n := next(); !strings.HasPrefix(n.ID, "workflow_rejected/v2/") {
		t.Errorf("the first bad edit after a good version: id %q", n.ID)
	}
	// Stored once per id: the restart's copy was dropped as a duplicate.
	var stored []string
	for m, err := range bus.History(t.Context(), h.b, bus.Notifications) {
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, m.Data.ID)
	}
	if len(stored) != 3 || stored[0] != first.ID {
		t.Errorf("stored notifications: %q", stored)
	}
}
