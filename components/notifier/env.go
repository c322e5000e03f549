package notifier

import (
	"fmt"
	"strconv"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/secretenv"
	"github.com/symphony-oss/symphony/internal/shellrun"
)

// MaxVar bounds each SYMPHONY_* variable the command gets, marker
// included: a notification's reason holds outside text (a workflow
// error quoting the file, an agent's account of why it is blocked), and
// an environment too large to exec would fail every notification. A longer
// value is cut on a UTF-8 boundary and ends with a marker; the whole
// notification is on the command's standard input.
const MaxVar = 4 << 10

// Variables lists the environment variables notify.command gets, in the
// order the README documents them. Every one is set, empty when the
// notification has no such field, so a script with `set -u` runs.
func Variables() []string {
	return []string{"SYMPHONY_EVENT", "SYMPHONY_EVENT_ID", "SYMPHONY_EVENT_AT", "SYMPHONY_ISSUE_ID", "SYMPHONY_ISSUE_IDENTIFIER",
		"SYMPHONY_ISSUE_STATE", "SYMPHONY_RUN_ID", "SYMPHONY_REASON", "SYMPHONY_CAP", "SYMPHONY_LIMIT", "SYMPHONY_SPENT",
		"SYMPHONY_DAY", "SYMPHONY_ATTEMPT"}
}

// Env is the command's environment: the parent's minus every variable
// holding snap's tracker credential (internal/secretenv: its variable,
// the tracker's well-known names, any copy of its value) — always,
// whatever hooks.inherit_secrets says: a notification needs no tracker
// access — plus the notification's variables, each at most MaxVar bytes.
func Env(parent []string, snap bus.ConfigSnapshot, n bus.Notification, attempt int) []string {
	v := func(s string) string {
		return shellrun.Cut(s, MaxVar, func(k int) string {
			return fmt.Sprintf("…[cut: %d more bytes; the whole notification is on standard input]", k)
		})
	}
	num := func(x float64) string {
		if x == 0 && n.Cap == "" {
			return ""
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	at := ""
	if !n.At.IsZero() {
		at = n.At.UTC().Format(time.RFC3339Nano)
	}
	fixed := map[string]string{
		"SYMPHONY_EVENT":            v(string(n.Event)),
		"SYMPHONY_EVENT_ID":         v(n.ID),
		"SYMPHONY_EVENT_AT":         at,
		"SYMPHONY_ISSUE_ID":         v(n.IssueID),
		"SYMPHONY_ISSUE_IDENTIFIER": v(n.Identifier),
		"SYMPHONY_ISSUE_STATE":      v(n.State),
		"SYMPHONY_RUN_ID":           v(n.RunID),
		"SYMPHONY_REASON":           v(n.Reason),
		"SYMPHONY_CAP":              v(n.Cap),
		"SYMPHONY_LIMIT":            num(n.Limit),
		"SYMPHONY_SPENT":            num(n.Spent),
		"SYMPHONY_DAY":              v(n.Day),
		"SYMPHONY_ATTEMPT":          strconv.Itoa(attempt),
	}
	return shellrun.Env(parent, secretenv.Drop(snap, parent), fixed)
}
