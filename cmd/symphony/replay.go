package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// ReplayCmd is `symphony replay`.
type ReplayCmd struct {
	RunID string  `arg:"" help:"The run to replay (see symphony runs)."`
	Speed float64 `help:"Divide the original gaps between events by this; 0 plays as fast as possible." default:"5"`
	Bind  string  `help:"Address the replay dashboard binds to." default:"127.0.0.1"`
	Port  int     `help:"Port of the replay dashboard." default:"4000"`
	Print bool    `help:"Write a readable transcript to the terminal instead of serving the dashboard."`
	JSONL bool    `name:"jsonl" help:"Write the raw events as JSON lines (the audit export format)."`
}

// timelineEntry is one stored event of a run, lifecycle or turn: the JSONL
// export format, one object per line.
type timelineEntry struct {
	Stream  string          `json:"stream"`
	Seq     uint64          `json:"seq"`
	Subject string          `json:"subject"`
	Type    string          `json:"type"`
	At      time.Time       `json:"at"`
	Event   json.RawMessage `json:"event"`
	run     *bus.RunEvent
	turn    *bus.TurnEvent
	hook    *bus.HookEvent
}

// timeline reads a run's lifecycle, hook and turn events, merged in time
// order (stream order within a stream).
func timeline(ctx context.Context, b *bus.Bus, runID string) ([]timelineEntry, error) {
	var out []timelineEntry
	err := collect(ctx, b, bus.RunEvents, runID, &out, func(e *timelineEntry, ev *bus.RunEvent) { e.At, e.run = ev.At, ev })
	if err == nil {
		err = collect(ctx, b, bus.TurnEvents, runID, &out, func(e *timelineEntry, ev *bus.TurnEvent) { e.At, e.turn = ev.At, ev })
	}
	if err == nil {
		err = collect(ctx, b, bus.WorkspaceHookEvents, runID, &out, func(e *timelineEntry, ev *bus.HookEvent) { e.At, e.hook = ev.At, ev })
	}
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b timelineEntry) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Stream, b.Stream)
	})
	return out, nil
}

// collect appends the stored events of one topic for a run; fill sets the
// entry's time and typed event.
func collect[T any](ctx context.Context, b *bus.Bus, topic bus.Topic[T], runID string, out *[]timelineEntry, fill func(*timelineEntry, *T)) error {
	spec := topic.Spec()
	for m, err := range bus.History(ctx, b, topic, runID) {
		if err != nil {
			return err
		}
		ev := m.Data
		raw, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		e := timelineEntry{Stream: spec.Stream, Seq: m.Seq, Subject: m.Subject, Type: spec.TypeName(), Event: raw}
		fill(&e, &ev)
		*out = append(*out, e)
	}
	return nil
}

// Run prints or exports a recorded run. Replaying into the dashboard
// arrives with the dashboard.
func (c *ReplayCmd) Run(g *Globals, e *env) error {
	if !c.Print && !c.JSONL {
		return fmt.Errorf("symphony replay into the dashboard: not implemented yet (the dashboard is not built); use --print or --jsonl")
	}
	if c.Speed < 0 {
		return &exitError{code: exitUsage, err: errors.New("--speed must be 0 or more")}
	}
	b, err := openStore(e.ctx, g, e.stderr)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	events, err := timeline(e.ctx, b, c.RunID)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return unknownRun(e.ctx, b, c.RunID)
	}
	if c.JSONL {
		enc := json.NewEncoder(e.stdout)
		for _, ev := range events {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	}
	color := isTerminal(e.stdout)
	return play(e.ctx, events, c.Speed, func(ev timelineEntry) {
		fmt.Fprintln(e.stdout, transcriptLine(ev, color))
	})
}

// play hands the events to emit in order, keeping the original gaps
// between them divided by speed (0: no waiting).
func play(ctx context.Context, events []timelineEntry, speed float64, emit func(timelineEntry)) error {
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

// transcriptLine renders one event for a person.
func transcriptLine(ev timelineEntry, color bool) string {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	at := ev.At.Local().Format("15:04:05.000")
	if r := ev.run; r != nil {
		line := fmt.Sprintf("%s %s %s", at, paint("1;36", "run"), r.Event)
		switch r.Event {
		case bus.RunDispatched:
			line += fmt.Sprintf(" %s %q", r.Issue.Identifier, r.Issue.Title)
		case bus.RunWorkspaceReady:
			line += " " + r.Workspace
		case bus.RunSessionStarted:
			line += " session " + r.SessionID
		case bus.RunTurnStarted, bus.RunTurnFinished:
			line += fmt.Sprintf(" turn %d", r.Turn)
		case bus.RunFinished:
			line += " " + paint(statusColor(r.Status), string(r.Status))
			if r.Error != "" {
				line += ": " + r.Error
			}
		}
		return line
	}
	if h := ev.hook; h != nil {
		line := fmt.Sprintf("%s %s %s %s", at, paint("35", "hook"), h.Hook, h.Phase)
		if h.Phase != bus.HookStarted {
			line += fmt.Sprintf(" in %dms", h.DurationMS)
		}
		if h.Error != "" {
			line += ": " + h.Error
		}
		return line
	}
	t := ev.turn
	text := strings.ReplaceAll(t.Text, "\n", " ⏎ ")
	if len(text) > 200 {
		n := 200
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n] + "…"
	}
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
	return fmt.Sprintf("%s %s %s %s", at, paint("2", fmt.Sprintf("turn %d", t.Turn)), paint("33", string(t.Kind)), text)
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
