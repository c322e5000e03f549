package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// oneLine folds whitespace runs to single spaces and clips.
func oneLine(s string, n int) string {
	return clip(strings.Join(strings.Fields(s), " "), n)
}

func strconvQuote(s string) string { return strconv.Quote(s) }

// ago says how long before now t was ("3s ago"); "never" for zero.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return short(d) + " ago"
}

// short writes a duration for people: 850ms, 42s, 3m05s, 2h04m, 3d04h.
func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// until says how long from now until t ("in 12s", "due").
func until(now, t time.Time) string {
	if !t.After(now) {
		return "due"
	}
	return "in " + short(t.Sub(now))
}

// elapsed is how long a run has run (to its end, or to now).
func elapsed(now time.Time, r bus.RunSummary) string {
	end := now
	if r.Ended != nil {
		end = *r.Ended
	}
	if r.Started.IsZero() {
		return ""
	}
	return short(end.Sub(r.Started))
}

// cost writes a cost in USD, or "unknown" when the agent reported none.
func cost(c *float64) string {
	if c == nil {
		return "unknown"
	}
	return fmt.Sprintf("$%.4f", *c)
}

// tokens writes a token count compactly: 950, 12.3k, 4.56M.
func tokens(n int64) string {
	switch {
	case n < 1000:
		return strconv.FormatInt(n, 10)
	case n < 1_000_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	default:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	}
}

func usageText(u bus.Usage) string {
	return tokens(u.InputTokens) + " in / " + tokens(u.OutputTokens) + " out"
}

func attemptText(a *int) string {
	if a == nil {
		return "first"
	}
	return strconv.Itoa(*a)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func clock(t time.Time) string { return t.Local().Format("15:04:05.000") }

// statusClass is the CSS class of a run status.
func statusClass(status bus.RunStatus) string {
	switch status {
	case bus.RunRunning:
		return "st st-running"
	case bus.RunSucceeded:
		return "st st-ok"
	case bus.RunBlocked, bus.RunBudgetExceeded, bus.RunCanceled, bus.RunInterrupted:
		return "st st-warn"
	default:
		return "st st-bad"
	}
}

func runURL(id string) string      { return "/runs/" + id }
func issueURL(ident string) string { return "/issues/" + ident }

// turnOf is "n/max" for a running run.
func turnOf(r RunView, cfg *bus.ConfigSnapshot) string {
	if cfg == nil || cfg.Config.Agent.MaxTurns == 0 {
		return strconv.Itoa(r.Turns)
	}
	return fmt.Sprintf("%d/%d", r.Turns, cfg.Config.Agent.MaxTurns)
}

// longText reports whether a text should start collapsed.
func longText(s string) bool {
	return len(s) > 1200 || strings.Count(s, "\n") > 15
}

// lineCount describes a text's size for a collapsed summary.
func lineCount(s string) string {
	n := strings.Count(s, "\n") + 1
	if n == 1 {
		return fmt.Sprintf("%d chars", utf8.RuneCountInString(s))
	}
	return fmt.Sprintf("%d lines", n)
}

func speedText(speed float64) string {
	if speed == 0 {
		return "full speed"
	}
	return strconv.FormatFloat(speed, 'g', 4, 64) + "× speed"
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func componentClass(c bus.ComponentEvent) string {
	switch c.State {
	case bus.ComponentStarted:
		return "st st-ok"
	case bus.ComponentStopped:
		return "st"
	default:
		return "st st-bad"
	}
}

func joinQuoted(s []string) string { return strings.Join(s, ", ") }

func joinPlain(s []string) string { return strings.Join(s, ", ") }

// statusOptions are the statuses the runs page filters on.
func statusOptions() []string {
	return []string{string(bus.RunRunning), string(bus.RunSucceeded), string(bus.RunFailed), string(bus.RunTimedOut), string(bus.RunStalled),
		string(bus.RunCanceled), string(bus.RunInterrupted), string(bus.RunBlocked), string(bus.RunBudgetExceeded)}
}

// checkStatusFilter accepts an empty status (no filter) or one of
// statusOptions. The runs page and /api/v1/runs share it, so a typo is an
// error in both rather than an empty list that looks like "no such runs".
func checkStatusFilter(status string) error {
	if status == "" || slices.Contains(statusOptions(), status) {
		return nil
	}
	return fmt.Errorf("unknown status filter %s: want one of %s", strconvQuote(clip(status, 40)), strings.Join(statusOptions(), ", "))
}

func priorityText(p *int) string {
	if p == nil || *p == 0 {
		return "none"
	}
	return strconv.Itoa(*p)
}

func blockerText(b bus.Blocker) string {
	s := "?"
	if b.Identifier != nil {
		s = *b.Identifier
	}
	if b.State != nil {
		s += " (" + *b.State + ")"
	}
	return s
}

// commandText writes an argv for reading (not for pasting into a shell).
func commandText(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	return clip(strings.Join(parts, " "), 2000)
}

// eventClass is the CSS class of a transcript entry.
// eventDOMID is a transcript entry's element id: its stream and sequence,
// and its place in the message when the message holds several agent
// events. The page's script drops an entry whose id is already shown (a
// re-connect may send it again), so no two events may share one.
func eventDOMID(ev runlog.Event) string {
	id := "ev-" + ev.Stream + "-" + strconv.FormatUint(ev.Seq, 10)
	if ev.Index > 0 {
		id += "-" + strconv.Itoa(ev.Index)
	}
	return id
}

func eventClass(ev runlog.Event) string {
	switch {
	case ev.Run != nil:
		if ev.Run.Event == bus.RunTurnStarted {
			return "ev ev-turn"
		}
		return "ev ev-run"
	case ev.Hook != nil:
		return "ev ev-hook"
	case ev.Turn != nil:
		return "ev ev-" + strings.ReplaceAll(string(ev.Turn.Kind), "_", "-")
	}
	return "ev"
}

// prettyJSON indents a tool input for reading; it is shown escaped (by
// templ, as text). A stored input has < > & written as \u escapes
// (encoding/json's HTML-safe output); they are put back, so a query reads
// as the agent wrote it.
func prettyJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return unescapeHTMLSafe(b.Bytes())
}

// unescapeHTMLSafe turns \u003c, \u003e and \u0026 in JSON back into the
// characters. In JSON a backslash always starts a two-character escape
// (or \uXXXX), so pairs are skipped whole: an escaped backslash followed
// by "u003c" stays as it is.
func unescapeHTMLSafe(js []byte) string {
	if !bytes.Contains(js, []byte(`\u00`)) {
		return string(js)
	}
	var b strings.Builder
	b.Grow(len(js))
	for i := 0; i < len(js); i++ {
		if js[i] != '\\' || i+1 >= len(js) {
			b.WriteByte(js[i])
			continue
		}
		if i+5 < len(js) && js[i+1] == 'u' {
			switch string(js[i+2 : i+6]) {
			case "003c", "003C":
				b.WriteByte('<')
				i += 5
				continue
			case "003e", "003E":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.Write(js[i : i+2])
		i++
	}
	return b.String()
}

// webURL reports whether a tracker-provided URL is an http(s) link, the
// only kind the dashboard makes clickable.
func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// toolOutcome is a tracker tool call's outcome for its badge: ok or
// failed (the class and rule say why, beside it).
func toolOutcome(r *bus.ToolCallRecord) string {
	if r.OK {
		return "ok"
	}
	return "failed"
}

// toolWhy is why a tracker tool call failed, in words: its class and the
// rule that refused it ("refused, rule own-issue"); empty on success.
func toolWhy(r *bus.ToolCallRecord) string {
	var parts []string
	if r.Class != "" {
		parts = append(parts, r.Class)
	}
	if r.Rule != "" {
		parts = append(parts, "rule "+r.Rule)
	}
	return strings.Join(parts, ", ")
}

// toolRateLimit says what a tracker tool call's rate-limit signal was:
// limited and for how long, or that the provider sent its quota headers
// (listed beside it); empty without one.
func toolRateLimit(rl *bus.ToolRateLimit) string {
	switch {
	case rl == nil:
		return ""
	case rl.Limited && rl.RetryAfterMS > 0:
		return "rate limited, retry after " + short(time.Duration(rl.RetryAfterMS)*time.Millisecond)
	case rl.Limited:
		return "rate limited"
	case len(rl.Headers) > 0:
		return "rate limit"
	}
	return ""
}

// toolHeaders lists a rate-limit signal's headers, one "name: value" a
// line, sorted; they are shown escaped.
func toolHeaders(rl *bus.ToolRateLimit) string {
	if rl == nil {
		return ""
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(rl.Headers)) {
		b.WriteString(k + ": " + rl.Headers[k] + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// trackerToolMessage is a tracker tool call in one line, for a run's
// latest activity: "tracker tool linear_graphql: ok (212 ms)" or
// "tracker tool linear_graphql: failed (refused, rule own-issue): …".
func trackerToolMessage(r *bus.ToolCallRecord) string {
	msg := "tracker tool " + r.Tool + ": " + toolOutcome(r)
	var detail []string
	if why := toolWhy(r); why != "" {
		detail = append(detail, why)
	}
	if rl := r.RateLimit; rl != nil && rl.Limited {
		if r.Class != bus.TrackerRateLimited {
			detail = append(detail, "rate limited")
		}
		if rl.RetryAfterMS > 0 {
			detail = append(detail, "retry after "+short(time.Duration(rl.RetryAfterMS)*time.Millisecond))
		}
	}
	detail = append(detail, strconv.FormatInt(r.DurationMS, 10)+" ms")
	msg += " (" + strings.Join(detail, ", ") + ")"
	if !r.OK && r.Error != "" {
		msg += ": " + r.Error
	}
	return oneLine(msg, 160)
}

// toolOutputSummary heads what the record keeps of a tracker tool call's
// output: its start, of the whole the agent received.
func toolOutputSummary(r *bus.ToolCallRecord, output string) string {
	if r.OutputBytes > len(output) {
		return fmt.Sprintf("output (first %d of %d bytes)", len(output), r.OutputBytes)
	}
	return fmt.Sprintf("output (%d bytes)", len(output))
}
