package ui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// usd writes an amount in US dollars, to the cent.
func usd(x float64) string { return fmt.Sprintf("$%.2f", x) }

// capName is the setting a cap key names, as the operator writes it in
// WORKFLOW.md; anything else (a value from a newer scheduler) is shown
// clipped.
func capName(c string) string { return clip(c, 60) }

// capAmount writes an amount in the unit of cap c: dollars for a USD cap,
// tokens for a tokens cap, a count for runs and turns.
func capAmount(c string, x float64) string {
	switch {
	case strings.HasSuffix(c, ".usd"):
		return usd(x)
	case strings.HasSuffix(c, ".tokens"):
		return tokens(int64(x))
	default:
		return strconv.FormatInt(int64(x), 10)
	}
}

// untilText is when the day rolls over, in the caps' zone, and how soon.
func untilText(now time.Time, sv SpendView) string {
	return sv.Until.Format("2006-01-02 15:04") + " " + sv.Zone + " (" + until(now, sv.Until) + ")"
}

// capsText lists the set caps of a scope ("none" when none is).
func capsText(c bus.BudgetCaps) string {
	var parts []string
	if c.USD > 0 {
		parts = append(parts, usd(c.USD))
	}
	if c.Tokens > 0 {
		parts = append(parts, tokens(c.Tokens)+" tokens")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " · ")
}

// issueCapsText lists the set caps of budget.per_issue.
func issueCapsText(c bus.IssueBudget) string {
	var parts []string
	if c.BudgetCaps.Capped() {
		parts = append(parts, capsText(c.BudgetCaps))
	}
	if c.Runs > 0 {
		parts = append(parts, strconv.Itoa(c.Runs)+" runs")
	}
	if c.Turns > 0 {
		parts = append(parts, strconv.Itoa(c.Turns)+" turns")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " · ")
}

// remainingText lists what each set cap leaves.
func remainingText(r Remaining) string {
	var parts []string
	if r.USD != nil {
		parts = append(parts, usd(*r.USD))
	}
	if r.Tokens != nil {
		parts = append(parts, tokens(*r.Tokens)+" tokens")
	}
	if r.Runs != nil {
		parts = append(parts, strconv.Itoa(*r.Runs)+" runs")
	}
	if r.Turns != nil {
		parts = append(parts, strconv.Itoa(*r.Turns)+" turns")
	}
	return strings.Join(parts, " · ")
}

// noteEventText names a notification's event in words.
func noteEventText(e bus.NotifyEvent) string {
	switch e {
	case bus.NotifyRunBlocked:
		return "run blocked"
	case bus.NotifyBudgetExceeded:
		return "budget exceeded"
	case bus.NotifyDailyCap:
		return "daily cap reached"
	case bus.NotifyMaxRuns:
		return "max runs reached"
	case bus.NotifyRetriesExhausted:
		return "retries exhausted"
	case bus.NotifyWorkflowRejected:
		return "workflow rejected"
	}
	return clip(string(e), 40)
}

// notifyCounts is the notifier's counts in words; the rare ones
// (duplicates, invalid) only when there are some.
func notifyCounts(n *NotifyView) string {
	parts := []string{plural(n.Delivered, "delivered", "delivered"), plural(n.Failed, "failed", "failed"), plural(n.Skipped, "skipped (no command)", "skipped (no command)")}
	if n.Duplicates > 0 {
		parts = append(parts, plural(n.Duplicates, "duplicate", "duplicates"))
	}
	if n.Invalid > 0 {
		parts = append(parts, plural(n.Invalid, "unreadable", "unreadable"))
	}
	return strings.Join(parts, " · ")
}

// plural is "1 thing" or "n things".
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

func noteClass(e bus.NotifyEvent) string {
	switch e {
	case bus.NotifyWorkflowRejected, bus.NotifyRetriesExhausted:
		return "st st-bad"
	default:
		return "st st-warn"
	}
}

// validIdent reports whether s may be put in a link (an identifier or run
// id from a notification is outside input).
func validIdent(s string) bool { return s != "" && safeid.Valid(s) }
