package notifier

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// FuzzEnv: whatever a notification holds (its text comes from outside: an
// agent's account of why it is blocked, a workflow error quoting the
// file), every variable is set, at most MaxVar bytes, without NUL, valid
// UTF-8 when the input was, cut with a marker only when too long; the
// tracker's secret variables are removed and the rest of the parent kept.
func FuzzEnv(f *testing.F) {
	f.Add("budget_exceeded/run-1", "ABC-1", "why", "budget.per_issue.usd", 2.5)
	f.Add(strings.Repeat("€", MaxVar), "x\x00y", strings.Repeat("a\n", 5000), "", 0.0)
	f.Fuzz(func(t *testing.T, id, identifier, reason, capKey string, limit float64) {
		n := bus.Notification{ID: id, Event: bus.NotifyRunBlocked, Identifier: identifier, Reason: reason, Cap: capKey, Limit: limit}
		parent := []string{"PATH=/bin", "LINEAR_API_KEY=s", "TRACKER_KEY=s", "SYMPHONY_REASON=stale"}
		env := Env(parent, ghSnap(), n, 1)
		got := map[string]string{}
		for _, kv := range env {
			name, v, _ := strings.Cut(kv, "=")
			if _, dup := got[name]; dup {
				t.Fatalf("%s set twice", name)
			}
			got[name] = v
		}
		if got["PATH"] != "/bin" || got["LINEAR_API_KEY"] != "" || got["TRACKER_KEY"] != "" {
			t.Fatalf("parent environment: %v", got)
		}
		for _, name := range Variables() {
			v, ok := got[name]
			if !ok {
				t.Fatalf("%s not set", name)
			}
			if len(v) > MaxVar || strings.Contains(v, "\x00") {
				t.Fatalf("%s: %d bytes or a NUL", name, len(v))
			}
		}
		for name, in := range map[string]string{"SYMPHONY_EVENT_ID": id, "SYMPHONY_ISSUE_IDENTIFIER": identifier, "SYMPHONY_REASON": reason, "SYMPHONY_CAP": capKey} {
			v, clean := got[name], strings.ReplaceAll(in, "\x00", "")
			if utf8.ValidString(in) && !utf8.ValidString(v) {
				t.Fatalf("%s: invalid UTF-8 from valid input", name)
			}
			if len(in) <= MaxVar && v != clean {
				t.Fatalf("%s = %q, want %q", name, v, clean)
			}
			if len(in) > MaxVar && !strings.Contains(v, "…[cut: ") {
				t.Fatalf("%s: cut without a marker", name)
			}
		}
	})
}

func ghSnap() bus.ConfigSnapshot {
	return bus.ConfigSnapshot{Config: bus.Config{Tracker: bus.TrackerConfig{Kind: bus.TrackerGitHub,
		Provider: bus.TrackerProvider{Repo: "acme/app", APIKey: bus.NewSecret("TRACKER_KEY", "")}}}}
}

// TestEnvHasNoTrackerSecret: notify.command never gets the tracker's key:
// not under its variable, not under GitHub's token names, not copied
// under another name.
func TestEnvHasNoTrackerSecret(t *testing.T) {
	parent := []string{"PATH=/bin", "TRACKER_KEY=tok_secret", "COPY=tok_secret", "GH_TOKEN=a", "GITHUB_TOKEN=b",
		"GH_ENTERPRISE_TOKEN=c", "GITHUB_ENTERPRISE_TOKEN=d", "LINEAR_API_KEY=e", "KEEP=yes"}
	var kept []string
	for _, kv := range Env(parent, ghSnap(), bus.Notification{Event: bus.NotifyRunBlocked}, 1) {
		if !strings.HasPrefix(kv, "SYMPHONY_") {
			kept = append(kept, kv)
		}
	}
	if strings.Join(kept, " ") != "PATH=/bin KEEP=yes" {
		t.Errorf("the command gets %v", kept)
	}
}
