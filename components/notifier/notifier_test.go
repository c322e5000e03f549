package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// testTimeout bounds what normally takes milliseconds, so a broken test
// fails instead of hanging.
const testTimeout = 60 * time.Second

const secret = "lin_api_NOTIFY_SECRET_0123456789"

// record is the command the tests configure: each run writes its
// environment and its standard input into a new directory under $OUT.
const record = `d=$(mktemp -d "$OUT/n.XXXXXX") && cat > "$d/stdin" && env > "$d/env"`

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

// harness is a bus on a data dir of its own with a configuration in KV,
// and the notifier running on it (restartable, the bus reopenable).
type harness struct {
	t       *testing.T
	dataDir string
	wfDir   string
	out     string
	env     []string
	logs    *syncBuffer
	log     *slog.Logger
	b       *bus.Bus
	comp    *Component
	stopC   func()
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, dataDir: filepath.Join(t.TempDir(), "data"), wfDir: t.TempDir(), out: t.TempDir(), logs: &syncBuffer{}}
	h.log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A HOME of its own: bash -l must not run the machine's login profile.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") {
			h.env = append(h.env, kv)
		}
	}
	h.env = append(h.env, "HOME="+t.TempDir(), "OUT="+h.out, "LINEAR_API_KEY="+secret, "MY_TRACKER_KEY="+secret)
	h.openBus()
	t.Cleanup(h.close)
	return h
}

func (h *harness) openBus() {
	h.t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{DataDir: h.dataDir, Logger: h.log})
	if err != nil {
		h.t.Fatal(err)
	}
	h.b = b
}

// close stops the component and closes the bus (a restart of Symphony).
func (h *harness) close() {
	h.stop()
	if h.b != nil {
		if err := h.b.Close(context.Background()); err != nil {
			h.t.Errorf("close bus: %v", err)
		}
		h.b = nil
	}
}

// configure stores a configuration with this notify section, its
// WORKFLOW.md in wfDir, its tracker key read from $MY_TRACKER_KEY.
func (h *harness) configure(command string, timeout time.Duration) {
	h.t.Helper()
	var cfg bus.Config
	cfg.Notify = bus.NotifyConfig{Command: command, TimeoutMS: timeout.Milliseconds()}
	cfg.Tracker.Provider.APIKey = bus.NewSecret("MY_TRACKER_KEY", secret)
	snap := bus.ConfigSnapshot{Version: 1, Path: filepath.Join(h.wfDir, "WORKFLOW.md"), Config: cfg}
	if _, err := bus.Put(h.t.Context(), h.b, bus.ConfigCurrent, snap); err != nil {
		h.t.Fatal(err)
	}
}

// start runs the notifier until stop.
func (h *harness) start() {
	h.t.Helper()
	c, err := New(Options{Bus: h.b, Log: h.log, Environ: func() []string { return h.env }})
	if err != nil {
		h.t.Fatal(err)
	}
	h.comp = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	h.stopC = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(testTimeout):
			h.t.Fatal("Run did not return after its context ended")
		}
	}
}

func (h *harness) stop() {
	if h.stopC != nil {
		h.stopC()
		h.stopC = nil
	}
}

// publish stores n as a publisher does, with its id as the message id.
func (h *harness) publish(n bus.Notification) {
	h.t.Helper()
	h.publishAs(n, n.ID)
}

// publishAs stores n with another message id: what a publisher
// re-handling an event after JetStream's duplicate window looks like.
func (h *harness) publishAs(n bus.Notification, msgID string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), testTimeout)
	defer cancel()
	if _, err := bus.PublishDurable(ctx, h.b, bus.Notifications, n, msgID, string(n.Event)); err != nil {
		h.t.Fatal(err)
	}
}

// status waits until the notifier's status satisfies ok.
func (h *harness) status(what string, ok func(bus.NotifyStatus) bool) bus.NotifyStatus {
	h.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		e, err := bus.Get(h.t.Context(), h.b, bus.NotifyState)
		if err == nil && ok(e.Value) {
			return e.Value
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the notifier's status never showed %s: %+v (%v)\nlogs:\n%s", what, e.Value, err, h.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run is one recorded run of the command.
type run struct {
	env   map[string]string
	stdin []byte
	n     bus.Notification
}

// runs reads what the command recorded, by event id.
func (h *harness) runs() map[string][]run {
	h.t.Helper()
	dirs, err := filepath.Glob(filepath.Join(h.out, "n.*"))
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string][]run{}
	for _, d := range dirs {
		var r run
		raw, err := os.ReadFile(filepath.Join(d, "env"))
		if err != nil {
			h.t.Fatalf("a run left no env: %v", err)
		}
		r.env = parseEnv(string(raw))
		if r.stdin, err = os.ReadFile(filepath.Join(d, "stdin")); err != nil {
			h.t.Fatal(err)
		}
		if err := json.Unmarshal(r.stdin, &r.n); err != nil {
			h.t.Fatalf("stdin is not one JSON notification: %v\n%s", err, r.stdin)
		}
		out[r.env["SYMPHONY_EVENT_ID"]] = append(out[r.env["SYMPHONY_EVENT_ID"]], r)
	}
	return out
}

// parseEnv reads `env` output; a value spanning lines (a reason with a
// newline) continues until the next NAME= line.
func parseEnv(s string) map[string]string {
	m := map[string]string{}
	last := ""
	for line := range strings.Lines(s) {
		line = strings.TrimSuffix(line, "\n")
		name, val, ok := strings.Cut(line, "=")
		if ok && name != "" && !strings.ContainsAny(name, " \t") {
			m[name], last = val, name
			continue
		}
		if last != "" {
			m[last] += "\n" + line
		}
	}
	return m
}

// notification builds a full notification of kind ev.
func notification(ev bus.NotifyEvent, id string) bus.Notification {
	return bus.Notification{ID: id, Event: ev, At: time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC),
		IssueID: "iss-" + id, Identifier: "ABC-" + id, State: "In Progress", RunID: "run-" + id,
		Reason: "why " + id, Cap: bus.CapIssueUSD, Limit: 2.5, Spent: 2.75, Day: "2026-12-08"}
}

// TestEachEventDeliveredOnceWithVariablesAndJSON: every kind of event
// runs the command once, with the documented variables and the
// notification as JSON on stdin, and without the tracker's secret.
func TestEachEventDeliveredOnceWithVariablesAndJSON(t *testing.T) {
	h := newHarness(t)
	h.configure(record, 30*time.Second)
	h.start()
	var sent []bus.Notification
	for i, ev := range bus.NotifyEvents() {
		n := notification(ev, fmt.Sprintf("%s-%d", ev, i))
		if ev == bus.NotifyWorkflowRejected {
			// No issue, no cap: the variables are set, empty.
			n = bus.Notification{ID: n.ID, Event: ev, At: n.At, Reason: "config_validation_error: WORKFLOW.md:7: agent.max_turns: must be positive\nsecond line"}
		}
		sent = append(sent, n)
		h.publish(n)
	}
	st := h.status("every event delivered", func(s bus.NotifyStatus) bool { return s.Delivered == int64(len(sent)) })
	if st.Failed+st.Skipped+st.Duplicates+st.Invalid != 0 || len(st.Handled) != len(sent) || st.Running != nil {
		t.Errorf("status: %+v", st)
	}
	runs := h.runs()
	for _, n := range sent {
		got := runs[n.ID]
		if len(got) != 1 {
			t.Errorf("%s: the command ran %d times, want 1", n.ID, len(got))
			continue
		}
		r := got[0]
		want := map[string]string{
			"SYMPHONY_EVENT": string(n.Event), "SYMPHONY_EVENT_ID": n.ID, "SYMPHONY_EVENT_AT": "2026-12-08T01:02:03Z",
			"SYMPHONY_ISSUE_ID": n.IssueID, "SYMPHONY_ISSUE_IDENTIFIER": n.Identifier, "SYMPHONY_ISSUE_STATE": n.State,
			"SYMPHONY_RUN_ID": n.RunID, "SYMPHONY_REASON": n.Reason, "SYMPHONY_CAP": n.Cap,
			"SYMPHONY_LIMIT": "2.5", "SYMPHONY_SPENT": "2.75", "SYMPHONY_DAY": n.Day, "SYMPHONY_ATTEMPT": "1",
		}
		if n.Event == bus.NotifyWorkflowRejected {
			want["SYMPHONY_LIMIT"], want["SYMPHONY_SPENT"] = "", ""
		}
		for _, name := range Variables() {
			v, ok := r.env[name]
			if !ok || v != want[name] {
				t.Errorf("%s: %s = %q (set %v), want %q", n.ID, name, v, ok, want[name])
			}
		}
		if len(want) != len(Variables()) {
			t.Errorf("the test checks %d variables, Variables lists %d", len(want), len(Variables()))
		}
		if !r.n.At.Equal(n.At) {
			t.Errorf("%s: stdin at = %v", n.ID, r.n.At)
		}
		r.n.At = n.At
		if r.n != n {
			t.Errorf("%s: stdin = %+v, want %+v", n.ID, r.n, n)
		}
		for name, v := range r.env {
			if strings.Contains(v, secret) || name == "LINEAR_API_KEY" || name == "MY_TRACKER_KEY" {
				t.Errorf("%s: the tracker's secret reached the command in %s", n.ID, name)
			}
		}
		if r.env["OUT"] != h.out {
			t.Errorf("the parent's environment is not inherited: OUT=%q", r.env["OUT"])
		}
	}
}

// TestWorkingDirectoryIsTheWorkflowsDirectory: a relative command
// (./notify.sh) is found beside WORKFLOW.md.
func TestWorkingDirectoryIsTheWorkflowsDirectory(t *testing.T) {
	h := newHarness(t)
	script := filepath.Join(h.wfDir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/bash\npwd > \"$OUT/pwd\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.configure("./notify.sh", 30*time.Second)
	h.start()
	h.publish(notification(bus.NotifyRunBlocked, "wd"))
	h.status("delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 })
	raw, err := os.ReadFile(filepath.Join(h.out, "pwd"))
	if err != nil || strings.TrimSpace(string(raw)) != h.wfDir {
		t.Errorf("pwd = %q (%v), want %s", raw, err, h.wfDir)
	}
}

// TestDuplicatesAndRestarts: the same id published again — at once, after
// the duplicate window (another message id), and after a restart of the
// bus and the component — runs the command once; a restart does not run
// it again for what was handled; what was published while the notifier
// was down is delivered when it comes back.
func TestDuplicatesAndRestarts(t *testing.T) {
	h := newHarness(t)
	h.configure(record, 30*time.Second)
	h.start()
	first := notification(bus.NotifyBudgetExceeded, "budget_exceeded/run-1")
	h.publish(first)
	h.publish(first) // within the duplicate window: JetStream drops it
	h.status("first delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 })
	h.publishAs(first, "re-handled-hours-later")
	h.status("a duplicate counted", func(s bus.NotifyStatus) bool { return s.Duplicates == 1 })

	// Symphony restarts; one event comes while the notifier is down.
	h.close()
	h.openBus()
	down := notification(bus.NotifyDailyCap, "daily_cap_reached/2026-12-08")
	h.publish(down)
	h.publishAs(first, "re-handled-after-restart")
	h.start()
	st := h.status("the event published while down delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 2 && s.Duplicates == 2 })
	if st.Failed+st.Skipped+st.Invalid != 0 {
		t.Errorf("status: %+v", st)
	}
	// Another restart, nothing new: nothing runs again. The probe is a new
	// event; once it is delivered, everything before it was handled.
	h.close()
	h.openBus()
	h.start()
	h.publish(notification(bus.NotifyMaxRuns, "probe"))
	h.status("the probe delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 3 })
	runs := h.runs()
	for _, id := range []string{first.ID, down.ID, "probe"} {
		if len(runs[id]) != 1 {
			t.Errorf("%s: the command ran %d times, want 1", id, len(runs[id]))
		}
	}
	if len(runs) != 3 {
		t.Errorf("runs for %d ids, want 3", len(runs))
	}
}

// TestNoCommandSkips: without notify.command events are acknowledged and
// counted as skipped, and not delivered later when a command appears.
func TestNoCommandSkips(t *testing.T) {
	h := newHarness(t)
	h.configure("", 30*time.Second)
	h.start()
	n := notification(bus.NotifyRunBlocked, "skipped-1")
	h.publish(n)
	h.status("skipped", func(s bus.NotifyStatus) bool { return s.Skipped == 1 && s.Seq == 1 })
	h.configure(record, 30*time.Second)
	// The new configuration is seen through a watch, a moment later.
	deadline := time.Now().Add(testTimeout)
	for snap := h.comp.cfg.Load(); snap == nil || snap.Config.Notify.Command != record; snap = h.comp.cfg.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the notifier never saw the new notify.command")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.publishAs(n, "again")
	h.publish(notification(bus.NotifyRunBlocked, "after"))
	h.status("the next delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 && s.Duplicates == 1 })
	if runs := h.runs(); len(runs) != 1 || len(runs["after"]) != 1 {
		t.Errorf("runs: %v", slices.Collect(func(yield func(string) bool) {
			for id := range runs {
				yield(id)
			}
		}))
	}
}

// TestFailuresCountedAndTheNextDelivered: a non-zero exit, a command that
// cannot start and a timeout are logged and counted, and the next event
// is delivered as usual. The timeout kills the command's process group,
// background jobs included, and output is bounded.
func TestFailuresCountedAndTheNextDelivered(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(h.out, "bg.pid")
	h.configure(`case "$SYMPHONY_REASON" in
fail) head -c 300000 /dev/zero | tr '\0' x; echo; echo "boom: the webhook said 500" >&2; exit 3 ;;
hang) sleep 600 & echo $! > `+pidFile+`; sleep 600 ;;
esac
`+record, 2*time.Second)
	h.start()
	fail := notification(bus.NotifyRunBlocked, "fails")
	fail.Reason = "fail"
	h.publish(fail)
	st := h.status("a failure", func(s bus.NotifyStatus) bool { return s.Failed == 1 })
	if f := st.LastFailure; f == nil || f.ID != fail.ID || f.IssueID != fail.IssueID || !strings.Contains(f.Error, "exited with status 3: boom: the webhook said 500") || len(f.Error) > bus.MaxNotifyError {
		t.Errorf("last failure: %+v", st.LastFailure)
	}
	hang := notification(bus.NotifyRunBlocked, "hangs")
	hang.Reason = "hang"
	began := time.Now()
	h.publish(hang)
	st = h.status("a timeout", func(s bus.NotifyStatus) bool { return s.Failed == 2 })
	if f := st.LastFailure; f == nil || f.ID != hang.ID || !strings.Contains(f.Error, "timed out after 2s") {
		t.Errorf("last failure: %+v", st.LastFailure)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("the 2s timeout took %v", d)
	}
	waitGone(t, pidFile)
	next := notification(bus.NotifyRunBlocked, "next")
	h.publish(next)
	h.status("the next delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 })
	if runs := h.runs(); len(runs) != 1 || len(runs[next.ID]) != 1 {
		t.Errorf("runs: %d ids", len(runs))
	}
	logs := h.logs.String()
	for _, want := range []string{"event_id=fails", "issue_identifier=ABC-fails", "event_id=hangs", "timed out after 2s"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not say %q:\n%s", want, logs)
		}
	}
	for line := range strings.Lines(logs) {
		if len(line) > LogOutput+4*bus.MaxNotifyError {
			t.Errorf("a log line of %d bytes: the output is not bounded", len(line))
		}
	}
}

// waitGone waits for the process whose pid is in file to be gone.
func waitGone(t *testing.T, file string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the command wrote no pid: %v", err)
	}
	pid := strings.TrimSpace(string(raw))
	deadline := time.Now().Add(testTimeout)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Fields(string(stat))[2] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("background job %s survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSpawnFailureCounted: a command that cannot start (its working
// directory is gone) is a failure like any other.
func TestSpawnFailureCounted(t *testing.T) {
	h := newHarness(t)
	h.wfDir = filepath.Join(h.wfDir, "gone")
	h.configure(record, 30*time.Second)
	h.start()
	h.publish(notification(bus.NotifyRunBlocked, "nodir"))
	st := h.status("a failure", func(s bus.NotifyStatus) bool { return s.Failed == 1 })
	if f := st.LastFailure; f == nil || !strings.Contains(f.Error, "notify.command failed") || !strings.Contains(f.Error, "gone") {
		t.Errorf("last failure: %+v", st.LastFailure)
	}
}

// TestHangingCommandDoesNotBlockPublishing: while the command hangs,
// publishers store notifications as fast as ever; a stop kills the
// command, and the next start delivers that notification again (at
// least once, SYMPHONY_ATTEMPT=2) and then the others, in order.
func TestHangingCommandDoesNotBlockPublishing(t *testing.T) {
	h := newHarness(t)
	started := filepath.Join(h.out, "started")
	h.configure(`if [ "$SYMPHONY_EVENT_ID" = hang-0 ] && [ "$SYMPHONY_ATTEMPT" = 1 ]; then touch `+started+`; sleep 600; fi; `+record, 10*time.Minute)
	h.start()
	h.publish(notification(bus.NotifyRunBlocked, "hang-0"))
	waitFile(t, started)
	began := time.Now()
	for i := 1; i <= 20; i++ {
		h.publish(notification(bus.NotifyRunBlocked, fmt.Sprintf("hang-%d", i)))
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("20 publishes took %v while the command hung", d)
	}
	st := h.status("the command running", func(s bus.NotifyStatus) bool { return s.Running != nil })
	if st.Running.Attempts != 1 || st.Seq != 0 {
		t.Errorf("status while running: %+v", st)
	}
	stopped := time.Now()
	h.stop()
	if d := time.Since(stopped); d > 20*time.Second {
		t.Errorf("stopping took %v with a command hanging", d)
	}
	h.start()
	h.status("all delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 21 })
	runs := h.runs()
	if r := runs["hang-0"]; len(r) != 1 || r[0].env["SYMPHONY_ATTEMPT"] != "2" {
		t.Errorf("hang-0 after the restart: %+v", r)
	}
	if len(runs) != 21 {
		t.Errorf("%d ids delivered, want 21", len(runs))
	}
}

// TestGivesUpAfterMaxAttempts: a notification whose command was running
// when the process ended MaxNotifyAttempts times is not started again.
func TestGivesUpAfterMaxAttempts(t *testing.T) {
	h := newHarness(t)
	h.configure(record, 30*time.Second)
	n := notification(bus.NotifyRunBlocked, "poison")
	rec := bus.NotifyHandled{Digest: bus.NotifyDigest(n.ID), Event: n.Event, Seq: 1, Outcome: bus.NotifyRunning, Attempts: bus.MaxNotifyAttempts}
	if _, err := bus.Put(t.Context(), h.b, bus.NotifyState, bus.NotifyStatus{Running: &rec}); err != nil {
		t.Fatal(err)
	}
	h.publish(n)
	h.start()
	st := h.status("given up", func(s bus.NotifyStatus) bool { return s.Failed == 1 && s.Seq == 1 })
	if st.Running != nil || st.LastFailure == nil || !strings.Contains(st.LastFailure.Error, "not started again") {
		t.Errorf("status: %+v", st)
	}
	if runs := h.runs(); len(runs) != 0 {
		t.Errorf("the command ran %d times", len(runs))
	}
}

// TestInvalidMessagePassedOver: a stored message that is not a
// notification, or one without an id, is counted and does not stop the
// ones after it.
func TestInvalidMessagePassedOver(t *testing.T) {
	h := newHarness(t)
	h.configure(record, 30*time.Second)
	h.start()
	h.publish(bus.Notification{Event: bus.NotifyRunBlocked, Reason: "no id"})
	h.publish(notification(bus.NotifyRunBlocked, "valid"))
	st := h.status("the valid one delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 })
	if st.Invalid != 1 {
		t.Errorf("status: %+v", st)
	}
}

// TestHandledIsBounded: the record of handled ids forgets the oldest past
// MaxNotifyHandled and those older than NotifyKeepHandled.
func TestHandledIsBounded(t *testing.T) {
	old := time.Now().Add(-bus.NotifyKeepHandled - time.Hour)
	d := &deliverer{}
	for i := range 100 {
		at := time.Now()
		if i < 20 {
			at = old
		}
		d.st.Handled = append(d.st.Handled, bus.NotifyHandled{Digest: fmt.Sprint(i), At: at})
	}
	d.trim(time.Now())
	if len(d.st.Handled) != 80 || d.st.Handled[0].Digest != "20" {
		t.Errorf("by age: %d kept, first %s", len(d.st.Handled), d.st.Handled[0].Digest)
	}
	d.st.Handled = nil
	for i := range bus.MaxNotifyHandled + 10 {
		d.st.Handled = append(d.st.Handled, bus.NotifyHandled{Digest: fmt.Sprint(i), At: time.Now()})
	}
	d.trim(time.Now())
	if len(d.st.Handled) != bus.MaxNotifyHandled || d.st.Handled[0].Digest != "10" {
		t.Errorf("by count: %d kept, first %s", len(d.st.Handled), d.st.Handled[0].Digest)
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
