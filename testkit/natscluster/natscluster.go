// Package natscluster starts a real NATS cluster with JetStream on
// 127.0.0.1 inside a test: servers from the nats-server module, joined by
// routes, each with a store of its own. Tests of `symphony run --nats` and
// `symphony worker` run against it, and stop and restart its servers to
// check that an R3 stream keeps going without one.
package natscluster

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a running cluster of in-process servers.
type Cluster struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server
}

// Start starts n servers named n1…nN in cluster "symphony-test", each with
// JetStream on a directory under t.TempDir(), and waits until JetStream
// has a leader. The servers are shut down at the end of the test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	var opts []*server.Options
	for i := range n {
		opts = append(opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			NoSigs:     true,
			JetStream:  true,
			MaxPayload: 8 << 20,
			Cluster:    server.ClusterOpts{Name: "symphony-test"},
		})
	}
	return startOpts(t, opts)
}

// StartFiles starts one server per nats-server configuration file, as the
// file says except for where it listens and stores: free loopback ports
// (the routes rewritten to match) and a directory under t.TempDir(). It
// is how the configuration shipped in testdata/cluster is tested.
func StartFiles(t testing.TB, files ...string) *Cluster {
	t.Helper()
	var opts []*server.Options
	for _, f := range files {
		o, err := server.ProcessConfigFile(f)
		if err != nil {
			t.Fatalf("nats server configuration %s: %v", f, err)
		}
		o.NoSigs = true
		opts = append(opts, o)
	}
	return startOpts(t, opts)
}

// startOpts starts the servers of opts on free loopback ports, joined by
// routes, with stores under t.TempDir().
func startOpts(t testing.TB, opts []*server.Options) *Cluster {
	t.Helper()
	dir := t.TempDir()
	n := len(opts)
	routePorts := freePorts(t, n)
	clientPorts := freePorts(t, n)
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &Cluster{t: t, opts: opts, servers: make([]*server.Server, n)}
	for i, o := range opts {
		o.Host, o.Port = "127.0.0.1", clientPorts[i]
		o.StoreDir = filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", routePorts[i]
		o.Routes = routes
	}
	for i := range n {
		c.Restart(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.Stop(i)
		}
	})
	c.WaitReady()
	return c
}

// freePorts picks n free loopback ports. A port is free when picked; the
// servers take them a moment later (the kernel does not hand a port it
// just freed out again at once).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// URLs is the comma-separated client URLs of every server, for --nats.
func (c *Cluster) URLs() string {
	var us []string
	for _, o := range c.opts {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(us, ",")
}

// Stop shuts server i down (a no-op when it is down).
func (c *Cluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Restart starts server i again on its ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("nats server %d: %v", i+1, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("nats server %d not ready", i+1)
	}
	c.servers[i] = s
}

// WaitReady waits (up to a minute) until every running server sees a
// JetStream meta leader, so streams can be declared.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ready := true
		for _, s := range c.servers {
			if s != nil && !hasLeader(s) {
				ready = false
			}
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("the NATS cluster elected no JetStream leader within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hasLeader reports whether s knows the JetStream meta leader.
func hasLeader(s *server.Server) bool {
	jsz, err := s.Jsz(&server.JSzOptions{})
	return err == nil && jsz.Meta != nil && jsz.Meta.Leader != ""
}
