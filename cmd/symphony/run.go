package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
)

// shutdownTimeout bounds the bus drain at the end of run.
const shutdownTimeout = 30 * time.Second

// RunCmd is `symphony run`.
type RunCmd struct {
	Workflow         string `arg:"" optional:"" default:"WORKFLOW.md" help:"Path to the WORKFLOW.md that configures this instance (default ./WORKFLOW.md)." type:"path"`
	NatsListen       string `help:"Also listen for NATS clients (the nats CLI) on HOST:PORT, protected by a token written to <data-dir>/nats-token. Loopback only unless --nats-listen-unsafe." placeholder:"HOST:PORT"`
	NatsListenUnsafe bool   `help:"Allow --nats-listen on an address that is not loopback. The token is then the only protection; the traffic is not encrypted."`
	SyncAlways       bool   `help:"fsync every JetStream write. About 12x slower; without it an acknowledged message survives a crash of the process but not of the machine."`
}

// Run starts the kernel and every component, and runs until a signal.
func (c *RunCmd) Run(g *Globals, e *env) error {
	log := g.logger(e.stderr)
	if err := checkWorkflowFile(c.Workflow); err != nil {
		return err
	}
	dataDir, err := g.dataDir(c.Workflow)
	if err != nil {
		return err
	}
	b, err := bus.Open(e.ctx, bus.Options{
		DataDir:      dataDir,
		Listen:       c.NatsListen,
		ListenUnsafe: c.NatsListenUnsafe,
		SyncAlways:   c.SyncAlways,
		Logger:       log,
		ClientName:   "symphony run",
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			log.Error("bus shutdown", "err", err)
		}
	}()

	fmt.Fprintf(e.stdout, "symphony: workflow %s\n", c.Workflow)
	fmt.Fprintf(e.stdout, "symphony: data in %s\n", b.DataDir())
	if b.ListenURL() != "" {
		fmt.Fprintf(e.stdout, "symphony: NATS listening on %s (token in %s)\n", b.ListenURL(), b.TokenFile())
		fmt.Fprintf(e.stdout, "symphony: watch the bus with: %s\n", b.ConnectHint())
	}

	sup := components.NewSupervisor(log, func(ev bus.ComponentEvent) {
		if err := bus.Publish(b, bus.ComponentEvents, ev, ev.Component); err != nil {
			log.Warn("publish component event", "component", ev.Component, "err", err)
		}
	})
	comps := []components.Component{}
	log.Info("symphony running", "data_dir", b.DataDir(), "components", len(comps))
	if err := sup.Run(e.ctx, comps...); err != nil {
		return err
	}
	log.Info("symphony stopped")
	return nil
}

// checkWorkflowFile fails with a clear message when the workflow file is
// missing or not a regular file.
func checkWorkflowFile(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("missing_workflow_file: %s does not exist (pass the path to your WORKFLOW.md)", path)
	}
	if err != nil {
		return fmt.Errorf("missing_workflow_file: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("missing_workflow_file: %s is not a regular file", filepath.Clean(path))
	}
	return nil
}
