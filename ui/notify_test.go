package ui

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/symphony-oss/symphony/bus"
)

// notifyFixture is the notifier's status as the spend fixture stores it:
// counts, a handled id, and a failure an hour before spendNow whose
// output holds markup.
var notifyFixture = bus.NotifyStatus{Seq: 12, Delivered: 5, Failed: 2, Skipped: 1, Duplicates: 3,
	Handled: []bus.NotifyHandled{{Digest: bus.NotifyDigest("n1"), Event: bus.NotifyBudgetExceeded, Seq: 1, Outcome: bus.NotifyDelivered, At: spendNow}},
	LastFailure: &bus.NotifyFailure{ID: "run_blocked/run-p2", Event: bus.NotifyRunBlocked, IssueID: "id-PARK-2", Identifier: "PARK-2",
		Error: "exit status 22: curl: (22) <script>alert(1)</script> returned error: 500", At: spendNow.Add(-time.Hour)},
	Updated: spendNow}

// waitFor gets url until its body holds want (the notifier's status is
// watched beside the state the dashboard's readiness waits for, so it
// may come a moment later) and returns that body.
func waitFor(t *testing.T, url, want string) string {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		_, body := get(t, url)
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %q:\n%s", url, want, clip(body, 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNotifyStatusOnTheOverview: the notifications panel shows the
// notifier's counts and its last failure (when, which event, the error,
// escaped) and the notifications the scheduler dropped, and follows a new
// status live.
func TestNotifyStatusOnTheOverview(t *testing.T) {
	f := newSpendFixture(t)
	waitFor(t, f.url+"/", `id="notify-dropped"`)
	page := waitFor(t, f.url+"/", `id="notify-status"`)
	norm := strings.Join(strings.Fields(page), " ")
	for _, want := range []string{
		"notify.command: 5 delivered · 2 failed · 1 skipped (no command) · 3 duplicates </p>",
		`<span class="st st-bad">last failure</span> <span title="2026-12-08 09:00:00Z">1h00m ago</span>: run blocked (PARK-2) — exit status 22: curl: (22) &lt;script&gt;alert(1)&lt;/script&gt; returned error: 500`,
		`<p id="notify-dropped"><span class="st st-bad">4 notifications dropped</span> by the scheduler before they were stored`,
	} {
		if !strings.Contains(norm, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "running now") || strings.Contains(page, "unreadable") {
		t.Error("the panel shows markup from the status, a command in flight, or invalid messages that are not there")
	}
	// The notifier starts a command: the panel says so.
	st := notifyFixture
	st.Delivered, st.Invalid = 6, 1
	st.Running = &bus.NotifyHandled{Digest: bus.NotifyDigest("n9"), Event: bus.NotifyDailyCap, Seq: 13, Outcome: bus.NotifyRunning, Attempts: 2, At: spendNow}
	if _, err := bus.Put(t.Context(), f.b, bus.NotifyState, st); err != nil {
		t.Fatal(err)
	}
	page = waitFor(t, f.url+"/", "running now")
	norm = strings.Join(strings.Fields(page), " ")
	if want := "notify.command: 6 delivered · 2 failed · 1 skipped (no command) · 3 duplicates · 1 unreadable · running now for daily cap reached (attempt 2)"; !strings.Contains(norm, want) {
		t.Errorf("overview lacks %q", want)
	}
}

// TestNotifyStatusMetrics: /metrics exports the notifier's counts by
// outcome, when it last failed, whether a command runs, and the
// notifications the scheduler dropped.
func TestNotifyStatusMetrics(t *testing.T) {
	f := newSpendFixture(t)
	waitFor(t, f.url+"/metrics", "symphony_scheduler_notifications_dropped_total 4")
	body := waitFor(t, f.url+"/metrics", "symphony_notifications_total")
	at := strconv.FormatFloat(float64(spendNow.Add(-time.Hour).Unix()), 'g', -1, 64)
	for _, want := range []string{
		"# TYPE symphony_notifications_total counter",
		`symphony_notifications_total{outcome="delivered"} 5`, `symphony_notifications_total{outcome="failed"} 2`,
		`symphony_notifications_total{outcome="skipped"} 1`, `symphony_notifications_total{outcome="duplicate"} 3`,
		`symphony_notifications_total{outcome="invalid"} 0`,
		"# TYPE symphony_notify_last_failure_timestamp_seconds gauge", "symphony_notify_last_failure_timestamp_seconds " + at + "\n",
		"symphony_notify_command_running 0",
		"# TYPE symphony_scheduler_notifications_dropped_total counter", "symphony_scheduler_notifications_dropped_total 4\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestNotifyStatusTakenAsItMayBe: without a status the panel has no
// status line and /metrics no notifier series but the scheduler's drops
// (0: it records only drops); a status with negative
// counts and an overlong error shows zeros and a clipped line.
func TestNotifyStatusTakenAsItMayBe(t *testing.T) {
	m := NewModel()
	render := func() string {
		var b strings.Builder
		if err := notesSection(m.Snapshot(spendNow, 0)).Render(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if page := render(); strings.Contains(page, "notify-status") || strings.Contains(page, "last failure") || strings.Contains(page, "dropped") {
		t.Errorf("a status line without a status:\n%s", page)
	}
	if n := collected(&notifyCollector{m: m}); n != 1 {
		t.Errorf("%d notifier series without a status, want the drops alone", n)
	}
	m.SetNotifyStatus(bus.NotifyStatus{Delivered: -4, Failed: -1, LastFailure: &bus.NotifyFailure{Event: bus.NotifyRunBlocked,
		Error: "line one\nline two " + strings.Repeat("x", 2*bus.MaxNotifyError), At: spendNow.Add(-time.Minute)}})
	v := m.Snapshot(spendNow, 0).Spend.Notify
	if v == nil || v.Delivered != 0 || v.Failed != 0 || len(v.LastFailure.Error) > bus.MaxNotifyError+len("…") || strings.Contains(v.LastFailure.Error, "\n") {
		t.Fatalf("status made safe: %+v", v)
	}
	page := strings.Join(strings.Fields(render()), " ")
	if !strings.Contains(page, "notify.command: 0 delivered · 0 failed · 0 skipped (no command) </p>") ||
		!strings.Contains(page, "1m00s ago</span>: run blocked — line one line two xxx") || strings.Count(page, "x") > 400 {
		t.Errorf("the panel of a garbled status:\n%s", clip(page, 2000))
	}
	if n := collected(&notifyCollector{m: m}); n != 8 {
		t.Errorf("%d notifier series, want 5 counts, the failure's time, running and the drops", n)
	}
	m.SetNotifyDropped(bus.NotifyDrops{Dropped: -2})
	if d := m.Snapshot(spendNow, 0).Spend.NotesDropped; d != 0 {
		t.Errorf("a negative drop count shows as %d", d)
	}
}

// collected is how many series c reports.
func collected(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}
