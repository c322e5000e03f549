package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/symphony-oss/symphony/bus"
)

// openStore reaches the run store of the data directory: directly when no
// instance holds it, through the instance's NATS listener when one does;
// with --nats, on the deployment.
func openStore(ctx context.Context, g *Globals, stderr io.Writer) (*bus.Bus, error) {
	if g.remote() {
		return g.dialRemote(ctx, "symphony cli", stderr)
	}
	dataDir, err := g.dataDir("WORKFLOW.md")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dataDir); err != nil {
		return nil, fmt.Errorf("no data directory at %s (pass --data-dir)", dataDir)
	}
	b, err := bus.Open(ctx, bus.Options{DataDir: dataDir, Logger: g.logger(stderr)})
	var inUse *bus.DataDirInUseError
	if errors.As(err, &inUse) {
		return bus.ConnectDataDir(ctx, dataDir, g.logger(stderr))
	}
	return b, err
}
