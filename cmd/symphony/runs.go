package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/runlog"
)

// RunsCmd is `symphony runs`.
type RunsCmd struct {
	Issue  string   `help:"Only runs of this issue identifier."`
	Status string   `help:"Only runs that ended with this status (succeeded, failed, timed_out, stalled, canceled, interrupted, blocked, budget_exceeded), or running."`
	Since  Duration `help:"Only runs started within this long (e.g. 12h, 7d)."`
	Limit  int      `help:"At most this many runs." default:"50"`
	JSON   bool     `help:"Print JSON lines instead of a table."`
}

// summarize reads the compact summary of every stored run, by run id.
func summarize(ctx context.Context, b *bus.Bus) (map[string]*bus.RunSummary, error) {
	list, err := runlog.Summaries(ctx, b)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*bus.RunSummary, len(list))
	for i := range list {
		out[list[i].RunID] = &list[i]
	}
	return out, nil
}

// Run lists runs, newest first.
func (c *RunsCmd) Run(g *Globals, e *env) error {
	b, err := openStore(e.ctx, g, e.stderr)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	all, err := summarize(e.ctx, b)
	if err != nil {
		return err
	}
	list := make([]*bus.RunSummary, 0, len(all))
	now := time.Now()
	for _, s := range all {
		switch {
		case c.Issue != "" && !strings.EqualFold(s.Issue.Identifier, c.Issue):
			continue
		case c.Status != "" && string(s.Status) != c.Status:
			continue
		case c.Since > 0 && s.Started.Before(now.Add(-time.Duration(c.Since))):
			continue
		}
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *bus.RunSummary) int { return b.Started.Compare(a.Started) })
	if c.Limit > 0 && len(list) > c.Limit {
		list = list[:c.Limit]
	}
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		for _, s := range list {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	return writeRunsTable(e.stdout, list)
}

// writeRunsTable prints the runs as a table. A run that reached a budget
// cap says so twice: its status (budget_exceeded, the name --status
// takes), and a line under the table with the cap and the amounts (its
// error), so an operator scanning the list sees why an issue stopped. A cost priced from the pricing table (codex reports
// none) is marked as such.
func writeRunsTable(w io.Writer, list []*bus.RunSummary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tISSUE\tSTATUS\tATTEMPT\tTURNS\tSTARTED\tDURATION\tTOKENS IN/OUT\tCOST")
	// A cell holds no tab or newline of its own (termsafe.Line): they
	// would break the table.
	q := termsafe.Line
	var capped []*bus.RunSummary
	for _, s := range list {
		attempt := "-"
		if s.Attempt != nil {
			attempt = fmt.Sprint(*s.Attempt)
		}
		dur := "-"
		if s.Ended != nil {
			dur = s.Ended.Sub(s.Started).Round(time.Second).String()
		}
		if s.Status == bus.RunBudgetExceeded {
			capped = append(capped, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d/%d\t%s\n", q(s.RunID), q(s.Issue.Identifier), q(string(s.Status)), attempt, s.Turns,
			s.Started.Local().Format("2006-01-02 15:04:05"), dur, s.Usage.InputTokens, s.Usage.OutputTokens, runCost(s))
	}
	if len(list) == 0 {
		fmt.Fprintln(tw, "(no runs)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(capped) > 0 {
		fmt.Fprintln(w, "\nBudget exceeded (the issue is parked until an operator clears it or resets its spend):")
		for _, s := range capped {
			why := s.Error
			if why == "" {
				why = "a budget cap was reached"
			}
			fmt.Fprintf(w, "  %s %s: %s\n", q(s.RunID), q(s.Issue.Identifier), q(clipRunes(why, 300)))
		}
	}
	return nil
}

// runCost is a run's cost for the table: the figure the budget counted
// when it includes a charge for a turn stopped before the agent reported
// (marked "estimated"), else the agent's own figure, else the figure the
// budget counted from the pricing table (marked "priced"), else unknown.
func runCost(s *bus.RunSummary) string {
	switch {
	case s.BudgetEstimated && s.BudgetUSD != nil:
		return fmt.Sprintf("$%.4f (estimated)", *s.BudgetUSD)
	case s.CostUSD != nil:
		return fmt.Sprintf("$%.4f", *s.CostUSD)
	case s.BudgetUSD != nil:
		return fmt.Sprintf("$%.4f (priced)", *s.BudgetUSD)
	}
	return "unknown"
}

// clipRunes cuts s to at most n runes, marking the cut.
func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
