package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/components/scheduler"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// Environment variables holding a NATS user and password for --nats. They
// are read once at start and removed from the process's environment, so no
// hook or agent started later inherits them.
const (
	natsUserEnv     = "SYMPHONY_NATS_USER"
	natsPasswordEnv = "SYMPHONY_NATS_PASSWORD"
)

// NatsFlags select an existing NATS deployment (a cluster with JetStream)
// instead of the embedded server, for every command: run, worker, runs,
// replay and prune. Secrets are in files or the environment, never on the
// command line, where every local user can read them (/proc/<pid>/cmdline).
type NatsFlags struct {
	Nats        string `help:"Use this NATS deployment (comma-separated server URLs) instead of the embedded server. Authentication: --nats-creds, --nats-nkey, or SYMPHONY_NATS_USER and SYMPHONY_NATS_PASSWORD in the environment." placeholder:"URL[,URL…]"`
	NatsCreds   string `help:"NATS credentials file (user JWT and seed) for --nats." type:"path" placeholder:"FILE"`
	NatsNkey    string `help:"NATS nkey seed file for --nats." type:"path" placeholder:"FILE"`
	NatsTLSCA   string `name:"nats-tls-ca" help:"PEM file of the CA that signed the NATS servers' certificates." type:"path" placeholder:"FILE"`
	NatsTLSCert string `name:"nats-tls-cert" help:"PEM client certificate for NATS servers that verify clients (with --nats-tls-key)." type:"path" placeholder:"FILE"`
	NatsTLSKey  string `name:"nats-tls-key" help:"PEM key of --nats-tls-cert." type:"path" placeholder:"FILE"`
}

// remote reports whether --nats was given.
func (n NatsFlags) remote() bool { return n.Nats != "" }

// dialOptions are the bus options of --nats, the user and password taken
// from (and removed from) the environment.
func (n NatsFlags) dialOptions(name string) bus.RemoteOptions {
	user, pass := os.Getenv(natsUserEnv), os.Getenv(natsPasswordEnv)
	_ = os.Unsetenv(natsUserEnv)
	_ = os.Unsetenv(natsPasswordEnv)
	var urls []string
	for u := range strings.SplitSeq(n.Nats, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return bus.RemoteOptions{URLs: urls, CredsFile: n.NatsCreds, NKeyFile: n.NatsNkey, User: user, Password: pass,
		TLSCA: n.NatsTLSCA, TLSCert: n.NatsTLSCert, TLSKey: n.NatsTLSKey, ClientName: name}
}

// dialRemote connects a reading command (runs, replay, prune) to the
// deployment of --nats; the streams are the scheduler's to declare.
func (g *Globals) dialRemote(ctx context.Context, name string, stderr io.Writer) (*bus.Bus, error) {
	o := g.dialOptions(name)
	o.Logger = g.logger(stderr)
	return bus.Dial(ctx, o)
}

// embeddedOnly names the run flags that concern the embedded server and
// mean nothing with --nats; a usage error, rather than a flag silently
// ignored.
func (c *RunCmd) embeddedOnly() error {
	switch {
	case c.NatsListen != "":
		return errors.New("--nats-listen is for the embedded server; with --nats, clients connect to the deployment")
	case c.SyncAlways:
		return errors.New("--sync-always is for the embedded server; with --nats, set sync_interval on the NATS servers")
	case c.AcceptStoreDamage:
		return errors.New("--accept-store-damage is for the embedded server's store")
	}
	return nil
}

// dialRun connects `symphony run` to the deployment of --nats and declares
// the streams and buckets with --replicas. The data directory holds only
// local files (the dashboard's URL); the store is the deployment's.
func (c *RunCmd) dialRun(ctx context.Context, g *Globals, set runSettings, stderr io.Writer) (*bus.Bus, error) {
	if err := os.MkdirAll(set.dataDir, 0o700); err != nil {
		return nil, err
	}
	o := g.dialOptions("symphony run")
	o.Logger = g.logger(stderr)
	o.Declare, o.Replicas, o.DataDir = true, c.Replicas, set.dataDir
	o.StreamMaxAge = bus.StreamMaxAgeFor(time.Duration(set.wf.Config.RetentionMS) * time.Millisecond)
	return bus.Dial(ctx, o)
}

// fenceFunc checks that this process still holds the scheduler lease and
// returns its fencing token (bus.Lease.Check).
type fenceFunc = func(ctx context.Context) (uint64, error)

// holderName is --name, else the host name and pid.
func (c *RunCmd) holderName() string {
	if c.Name != "" {
		return c.Name
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// runClustered runs the components while this process holds the
// cluster's scheduler lease, and stands by while another does: exactly
// one `symphony run` on a cluster schedules (and runs the agents, the
// tracker and the dashboard); the others wait with a connection open and
// take over within about --lease-ttl when it dies. A holding that is lost
// (the lease not renewed in time: cut off from the cluster, or paused)
// stops every component — the scheduler has already stopped dispatching,
// its Fence fails — and the process stands by again. build makes a fresh
// set of components for each holding.
func (c *RunCmd) runClustered(ctx context.Context, log *slog.Logger, b *bus.Bus, build buildFunc) error {
	if c.LeaseTTL < 100*time.Millisecond {
		return &exitError{code: exitUsage, err: fmt.Errorf("--lease-ttl must be at least 100ms, not %s", c.LeaseTTL)}
	}
	holder := c.holderName()
	instance, err := markChildren()
	if err != nil {
		return err
	}
	for {
		lease := bus.NewSchedulerLease(b, holder, c.LeaseTTL)
		token, err := lease.Acquire(ctx, func(active string) {
			log.Info("standing by: another symphony run schedules on this cluster", "active", active, "name", holder)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("scheduler lease: %w", err)
		}
		log.Info("scheduler lease acquired: this process schedules", "name", holder, "fence", token)
		lost, err := c.hold(ctx, log, b, lease, instance, build)
		if err != nil || ctx.Err() != nil || c.Once {
			return err
		}
		log.Error("scheduler lease lost: components stopped; standing by", "name", holder, "err", lost)
	}
}

// buildFunc makes the components of one holding of the lease, with the
// fence the scheduler checks before every dispatch, and what lets go of
// what the holding took (called when it ends, also after an error).
type buildFunc func(fenceFunc) ([]components.Component, *scheduler.Component, func(), error)

// hold runs one holding of the lease: the components until ctx ends or
// the lease is lost (lost says why), renewing it meanwhile; a holding
// that ends with ctx (or --once done) releases the lease, so a standby
// takes over at once.
func (c *RunCmd) hold(ctx context.Context, log *slog.Logger, b *bus.Bus, lease *bus.Lease, instance string, build buildFunc) (lost, err error) {
	comps, sch, letGo, err := build(lease.Check)
	// What the holding took (the workspace root) is let go of when it
	// ends, after its children are killed: a standby on this host may
	// take over next.
	defer letGo()
	if err != nil {
		release(log, lease)
		return nil, err
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kept := make(chan error, 1)
	go func() {
		err := lease.Keep(hctx)
		if errors.Is(err, bus.ErrLeaseLost) {
			// Before the components stop (which may wait on a cluster
			// that is gone): a standby may take over soon.
			killChildren(log, instance)
		}
		kept <- err
		cancel()
	}()
	octx, stop := c.untilOnceDone(hctx, log, sch)
	err = supervise(octx, log, b, comps)
	stop()
	cancel()
	lost = <-kept
	if errors.Is(lost, bus.ErrLeaseLost) {
		killChildren(log, instance) // anything started while stopping
		return lost, err
	}
	release(log, lease)
	return nil, err
}

// release gives the lease up within 5 s, so that a standby takes over at
// once; a failure only means the standby waits for the TTL.
func release(log *slog.Logger, lease *bus.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		log.Warn("release the scheduler lease; a standby takes over after --lease-ttl", "err", err)
	}
}

// instanceEnv marks every process a clustered `symphony run` starts
// (hooks, agents and their children) with the process's instance id, so
// that on losing the lease it can kill them all at once without asking
// its components, which may be waiting on a cluster that is gone.
const instanceEnv = "SYMPHONY_INSTANCE"

// markChildren puts a fresh instance id in the environment every child
// inherits, and returns it.
func markChildren() (string, error) {
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if err := os.Setenv(instanceEnv, id); err != nil {
		return "", fmt.Errorf("mark children: %w", err)
	}
	return id, nil
}

// killChildren kills every process marked with instance, again until none
// is left or 5 s have passed (a process forking as it is killed).
func killChildren(log *slog.Logger, instance string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := procscan.Kill(instanceEnv, instance)
		if err != nil {
			log.Error("kill this process's agents after losing the lease", "err", err)
		}
		if n == 0 || time.Now().After(deadline) {
			return
		}
		if n > 0 {
			log.Warn("lease lost: killed this process's agents and hooks", "processes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
