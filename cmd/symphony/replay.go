package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/runlog"
	"github.com/symphony-oss/symphony/ui"
)

// ReplayCmd is `symphony replay`.
type ReplayCmd struct {
	RunID      string  `arg:"" help:"The run to replay (see symphony runs)."`
	Speed      float64 `help:"Divide the original gaps between events by this; 0 plays as fast as possible." default:"5"`
	Bind       string  `help:"Address the replay dashboard binds to. Loopback only unless --bind-unsafe." default:"127.0.0.1"`
	Port       int     `help:"Port of the replay dashboard; 0 picks a free one." default:"4000"`
	BindUnsafe bool    `help:"Allow a replay dashboard address that is not loopback (it has no authentication)."`
	MaxStreams int     `name:"max-streams" placeholder:"N" help:"Most event streams the replay dashboard serves at once (beyond it 503 with Retry-After); 0 = the default, 64."`
	Print      bool    `help:"Write a readable transcript to the terminal instead of serving the dashboard."`
	JSONL      bool    `name:"jsonl" help:"Write the raw events as JSON lines (the audit export format)."`
}

// Run replays a recorded run: into the dashboard (default), as a readable
// transcript (--print) or as raw JSON lines (--jsonl). It writes nothing
// to the store.
func (c *ReplayCmd) Run(g *Globals, e *env) error {
	if c.Speed < 0 {
		return &exitError{code: exitUsage, err: errors.New("--speed must be 0 or more")}
	}
	if c.Print && c.JSONL {
		return &exitError{code: exitUsage, err: errors.New("--print and --jsonl exclude each other")}
	}
	if !c.Print && !c.JSONL {
		if err := ui.CheckBind(c.Bind, c.BindUnsafe); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	b, err := openStore(e.ctx, g, e.stderr)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	events, _, err := runlog.Timeline(e.ctx, b, c.RunID)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return unknownRun(e.ctx, b, c.RunID)
	}
	switch {
	case c.JSONL:
		enc := json.NewEncoder(e.stdout)
		for _, ev := range events {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	case c.Print:
		// In colour, the line's own escape sequences must reach the
		// terminal: it is written raw, and transcriptLine escapes every
		// field that comes from outside.
		out, color := e.stdout, isTerminal(e.rawStdout)
		if color {
			out = e.rawStdout
		}
		return play(e.ctx, events, c.Speed, func(ev runlog.Event) {
			fmt.Fprintln(out, transcriptLine(ev, color))
		})
	}
	// The events are in memory: the store is not needed while serving.
	_ = b.Close(context.Background())
	dash, err := ui.New(ui.Options{Log: g.logger(e.stderr), Bind: c.Bind, Port: c.Port, BindUnsafe: c.BindUnsafe, MaxStreams: c.MaxStreams,
		Replay: &ui.Replay{RunID: c.RunID, Events: events, Speed: c.Speed},
		OnListen: func(url string) {
			fmt.Fprintf(e.stdout, "symphony: replaying run %s (%d events at %s) on %s/runs/%s\n", c.RunID, len(events), speedWords(c.Speed), url, c.RunID)
			fmt.Fprintln(e.stdout, "symphony: stop with Ctrl-C")
		}})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	return dash.Run(e.ctx)
}

func speedWords(speed float64) string {
	if speed == 0 {
		return "full speed"
	}
	return fmt.Sprintf("%g× speed", speed)
}

// play hands the events to emit in order, keeping the original gaps
// between them divided by speed (0: no waiting).
func play(ctx context.Context, events []runlog.Event, speed float64, emit func(runlog.Event)) error {
	var prev time.Time
	for _, ev := range events {
		if speed > 0 && !prev.IsZero() {
			if gap := ev.At.Sub(prev); gap > 0 {
				t := time.NewTimer(time.Duration(float64(gap) / speed))
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
			}
		}
		prev = ev.At
		emit(ev)
	}
	return nil
}

// transcriptLine renders one event for a person, on one line. Every
// field that comes from outside (issue, agent, tool, hook, errors) is
// escaped with termsafe.Line; the only escape sequences in the line are
// its own colours.
func transcriptLine(ev runlog.Event, color bool) string {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	q := termsafe.Line
	at := ev.At.Local().Format("15:04:05.000")
	if r := ev.Run; r != nil {
		line := fmt.Sprintf("%s %s %s", at, paint("1;36", "run"), q(string(r.Event)))
		switch r.Event {
		case bus.RunDispatched:
			line += fmt.Sprintf(" %s %s", q(r.Issue.Identifier), q(strconv.Quote(r.Issue.Title)))
		case bus.RunWorkspaceReady:
			line += " " + q(r.Workspace)
		case bus.RunSessionStarted:
			line += " session " + q(r.SessionID)
		case bus.RunTurnStarted, bus.RunTurnFinished:
			line += fmt.Sprintf(" turn %d", r.Turn)
		case bus.RunFinished:
			line += " " + paint(statusColor(r.Status), q(string(r.Status)))
			if r.CostUSD != nil || r.BudgetUSD != nil {
				line += " cost " + runCost(&bus.RunSummary{CostUSD: r.CostUSD, BudgetUSD: r.BudgetUSD})
			}
			if r.Error != "" {
				line += ": " + q(r.Error)
			}
		}
		return line
	}
	if h := ev.Hook; h != nil {
		line := fmt.Sprintf("%s %s %s %s", at, paint("35", "hook"), q(h.Hook), q(string(h.Phase)))
		if h.Phase != bus.HookStarted {
			line += fmt.Sprintf(" in %dms", h.DurationMS)
		}
		if h.Error != "" {
			line += ": " + q(h.Error)
		}
		return line
	}
	t := ev.Turn
	if t.Kind == bus.TurnTrackerTool && t.TrackerTool != nil {
		return fmt.Sprintf("%s %s %s %s", at, paint("2", fmt.Sprintf("turn %d", t.Turn)), paint("33", "tracker tool"), trackerToolText(t, paint))
	}
	text := clipLine(t.Text, 200)
	switch {
	case t.Tool != nil && t.Kind == bus.TurnToolUse:
		text = fmt.Sprintf("%s %s", t.Tool.Name, t.Tool.Input)
	case t.Result != nil:
		cost := "unknown"
		if t.Result.CostUSD != nil {
			cost = fmt.Sprintf("$%.4f", *t.Result.CostUSD)
		}
		text = fmt.Sprintf("error=%v tokens %d/%d cost %s: %s", t.Result.IsError, t.Result.Usage.InputTokens, t.Result.Usage.OutputTokens, cost, text)
	}
	return fmt.Sprintf("%s %s %s %s", at, paint("2", fmt.Sprintf("turn %d", t.Turn)), paint("33", q(string(t.Kind))), q(text))
}

// clipLine is s on one line (a newline shown as ⏎), cut to about n bytes
// on a rune boundary. It does not escape: the caller passes the result
// through termsafe.Line.
func clipLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ⏎ ")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// trackerToolText is a tracker tool call as one line: the tool, its
// outcome (ok, or the failure's class and the rule that refused it), how
// long it took, why it failed, the masked arguments, the provider's
// rate-limit signal and the start of what the agent got back. Each
// outside field is escaped and bounded.
func trackerToolText(t *bus.TurnEvent, paint func(code, s string) string) string {
	q, r := termsafe.Line, t.TrackerTool
	var b strings.Builder
	b.WriteString(q(clipLine(r.Tool, 80)))
	switch {
	case r.OK:
		b.WriteString(" " + paint("32", "ok"))
	case r.Class != "":
		b.WriteString(" " + paint("31", q(clipLine(r.Class, 40))))
	default:
		b.WriteString(" " + paint("31", "failed"))
	}
	if r.Rule != "" {
		b.WriteString(" (rule: " + q(clipLine(r.Rule, 80)) + ")")
	}
	fmt.Fprintf(&b, " %d ms", r.DurationMS)
	if !r.OK && r.Error != "" {
		b.WriteString(": " + q(clipLine(r.Error, 300)))
	}
	if len(r.Arguments) > 0 {
		args := r.Arguments
		var c bytes.Buffer
		if json.Compact(&c, args) == nil {
			args = c.Bytes()
		}
		b.WriteString(" args " + q(clipLine(string(args), 300)))
	}
	if note := rateLimitNote(r.RateLimit); note != "" {
		code := "2"
		if r.RateLimit.Limited {
			code = "31"
		}
		b.WriteString(" " + paint(code, "["+q(note)+"]"))
	}
	if r.OutputBytes > 0 || t.Text != "" {
		b.WriteString(" →")
		if r.OutputBytes > 0 {
			fmt.Fprintf(&b, " %d bytes", r.OutputBytes)
		}
		if t.Text != "" {
			b.WriteString(" " + q(clipLine(t.Text, 200)))
		}
	}
	return b.String()
}

// rateLimitNote says what a tool call's rate-limit signal was: limited
// and for how long, or the provider's headers (a quota not yet spent).
// It is not escaped.
func rateLimitNote(rl *bus.ToolRateLimit) string {
	if rl == nil {
		return ""
	}
	if rl.Limited {
		note := "rate limited"
		if rl.RetryAfterMS > 0 {
			note += ", retry after " + (time.Duration(rl.RetryAfterMS) * time.Millisecond).String()
		}
		return note
	}
	if len(rl.Headers) == 0 {
		return ""
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(rl.Headers)) {
		kv = append(kv, k+"="+rl.Headers[k])
	}
	return clipLine("rate limit "+strings.Join(kv, " "), 200)
}

func statusColor(s bus.RunStatus) string {
	if s == bus.RunSucceeded {
		return "32"
	}
	return "31"
}

// unknownRun explains a run id that is not stored, naming the closest ones.
func unknownRun(ctx context.Context, b *bus.Bus, id string) error {
	all, err := summarize(ctx, b)
	if err != nil {
		return fmt.Errorf("no run %q", id)
	}
	type cand struct {
		id    string
		score int
	}
	var cands []cand
	for rid := range all {
		score := commonPrefix(strings.ToLower(rid), strings.ToLower(id))
		if strings.Contains(strings.ToLower(rid), strings.ToLower(id)) {
			score += len(id)
		}
		cands = append(cands, cand{rid, score})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	var names []string
	for i := 0; i < len(cands) && i < 5; i++ {
		names = append(names, cands[i].id)
	}
	if len(names) == 0 {
		return fmt.Errorf("no run %q: the store has no runs", id)
	}
	return fmt.Errorf("no run %q; closest: %s", id, strings.Join(names, ", "))
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// isTerminal reports whether w is a character device (colour output).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
