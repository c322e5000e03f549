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

// Run deletes old finished runs from the store of a stopped instance.
func (c *PruneCmd) Run(g *Globals, e *env) error {
	age := time.Duration(c.OlderThan)
	if age <= 0 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--older-than must be positive, got %s", c.OlderThan)}
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
		return fmt.Errorf("%w; stop it first, or set `retention: %s` in its WORKFLOW.md so the running instance prunes on its own", err, c.OlderThan)
	}
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	res, err := pruner.Prune(e.ctx, b, age, c.DryRun, time.Now())
	for _, r := range res.Deleted {
		verb := "deleted"
		if c.DryRun {
			verb = "would delete"
		}
		fmt.Fprintf(e.stdout, "%s %s  %s  %s  ended %s\n", verb, r.RunID, r.Issue.Identifier, r.Status, r.Ended.Format(time.RFC3339))
	}
	if err != nil {
		return err
	}
	if c.DryRun {
		fmt.Fprintf(e.stdout, "dry run: %d run(s) older than %s would be deleted; %d kept; nothing was deleted\n", len(res.Deleted), c.OlderThan, res.Kept)
		return nil
	}
	fmt.Fprintf(e.stdout, "deleted %d run(s) older than %s (%d bytes freed); %d kept\n", len(res.Deleted), c.OlderThan, res.BytesFreed, res.Kept)
	return nil
}
