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
	configs <-chan bus.Entry[bus.ConfigSnapshot]
	errs    *bus.Subscription[bus.WorkflowError]
	stop    func()
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
	env := workflowfile.Env{LookupEnv: func(k string) (string, bool) {
		if k == "LINEAR_API_KEY" {
			return secret, true
		}
		return "", false
	}, Home: "/home/op", TempDir: t.TempDir()}
	comp, err := New(Options{Path: h.path, Bus: b, Log: log, Env: env, Recheck: recheck})
	if err != nil {
		t.Fatal(err)
	}
	comp.noWatch = noWatch
	ctx, cancel := context.WithCancel(context.Background())
	if h.configs, err = bus.Watch(ctx, b, bus.ConfigCurrent); err != nil {
		t.Fatal(err)
	}
	if h.errs, err = bus.Subscribe(ctx, b, bus.WorkflowErrors); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
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
	case e := <-h.configs:
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
// keeps counting versions and does not republish an unchanged file.
func TestRestartContinuesVersions(t *testing.T) {
	h := start(t, workflowText(5, ""), time.Hour)
	h.nextConfig()
	h.write(workflowText(6, ""))
	h.nextConfig()
	// Run a second component on the same bus: the file is unchanged, so the
	// version stays 2; an edit makes it 3.
	comp, err := New(Options{Path: h.path, Bus: h.b, Env: workflowfile.Env{LookupEnv: func(string) (string, bool) { return secret, true }, TempDir: "/tmp"}, Recheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h.stopComponentFor(t, comp)
}

func (h *harness) stopComponentFor(t *testing.T, comp *Component) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	h.write(workflowText(11, ""))
	for {
		c := h.nextConfig()
		if c.Config.Agent.MaxTurns == 11 {
			if c.Version != 3 {
				t.Errorf("version after restart = %d, want 3", c.Version)
			}
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
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
