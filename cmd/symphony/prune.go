package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/pruner"
)

// PruneCmd is `symphony prune`.
type PruneCmd struct {
	OlderThan Duration `help:"Delete runs that ended longer ago than this (e.g. 30d, 12h). Must be positive." default:"30d"`
	DryRun    bool     `help:"Print what would be deleted and delete nothing."`
}

// Run deletes old finished runs: from the store of a stopped instance
// directly; a running instance's pruner is asked to do it, over the
// listener with the control token (the read token may not purge).
func (c *PruneCmd) Run(g *Globals, e *env) error {
	age := time.Duration(c.OlderThan)
	if age <= 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--older-than must be positive, got %s", c.OlderThan)}
	}
	if g.remote() {
		b, err := g.dialRemote(e.ctx, "symphony prune", e.stderr)
		if err != nil {
			return err
		}
		defer b.Close(context.Background())
		return c.askPruner(e, b, age)
	}
	dataDir, err := g.dataDir("WORKFLOW.md")
	if err != nil {
		return err
	}
	if _, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("no data directory at %s (pass --data-dir)", dataDir)
	}
	b, err := bus.Open(e.ctx, bus.Options{DataDir: dataDir, Logger: g.logger(e.stderr)})
	var inUse *bus.DataDirInUseError
	if errors.As(err, &inUse) {
		return c.ask(g, e, dataDir, age, err)
	}
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	res, err := pruner.Prune(e.ctx, b, age, c.DryRun, time.Now())
	c.print(e, res.Deleted, len(res.Deleted))
	if err != nil {
		return err
	}
	c.summary(e, len(res.Deleted), res.Kept, res.BytesFreed)
	return nil
}

// pruneAskTimeout bounds the wait for a running pruner's answer: a prune of
// a large store purges three streams per run.
const pruneAskTimeout = 10 * time.Minute

// ask has the running instance's pruner prune (bus.PruneRuns).
func (c *PruneCmd) ask(g *Globals, e *env, dataDir string, age time.Duration, inUse error) error {
	b, err := bus.ConnectDataDirControl(e.ctx, dataDir, g.logger(e.stderr))
	if err != nil {
		return fmt.Errorf("%w; %w, or stop it, or set `retention: %s` in its WORKFLOW.md so it prunes on its own", inUse, err, c.OlderThan)
	}
	defer b.Close(context.Background())
	return c.askPruner(e, b, age)
}

// askPruner has the pruner of the instance on b prune.
func (c *PruneCmd) askPruner(e *env, b *bus.Bus, age time.Duration) error {
	ctx, cancel := context.WithTimeout(e.ctx, pruneAskTimeout)
	defer cancel()
	res, err := bus.Ask(ctx, b, bus.PruneRuns, bus.PruneRequest{OlderThanMS: age.Milliseconds(), DryRun: c.DryRun})
	if err != nil {
		return fmt.Errorf("prune through the running instance: %w", err)
	}
	c.print(e, res.Deleted, res.DeletedCount)
	c.summary(e, res.DeletedCount, res.Kept, res.BytesFreed)
	return nil
}

// print lists the deleted runs (total counts them, listed or not).
func (c *PruneCmd) print(e *env, deleted []bus.RunSummary, total int) {
	verb := "deleted"
	if c.DryRun {
		verb = "would delete"
	}
	for _, r := range deleted {
		ended := "-"
		if r.Ended != nil {
			ended = r.Ended.Format(time.RFC3339)
		}
		fmt.Fprintf(e.stdout, "%s %s  %s  %s  ended %s\n", verb, r.RunID, r.Issue.Identifier, r.Status, ended)
	}
	if total > len(deleted) {
		fmt.Fprintf(e.stdout, "(and %d more)\n", total-len(deleted))
	}
}

func (c *PruneCmd) summary(e *env, deleted, kept int, freed uint64) {
	if c.DryRun {
		fmt.Fprintf(e.stdout, "dry run: %d run(s) older than %s would be deleted; %d kept; nothing was deleted\n", deleted, c.OlderThan, kept)
		return
	}
	fmt.Fprintf(e.stdout, "deleted %d run(s) older than %s (%d bytes freed); %d kept\n", deleted, c.OlderThan, freed, kept)
}
