package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus"
)

// TestNoOutboundConnections runs `symphony run` with a Linear tracker on a
// loopback fake and every proxy variable pointing at a connection log, then
// samples the process's sockets while it polls and serves: every peer must
// be loopback, the proxy must never be asked for anything (Go sends all
// non-loopback HTTP through it), and the tracker must have been polled.
func TestNoOutboundConnections(t *testing.T) {
	const secret = "lin_api_network_test_secret"
	var polls atomic.Int64
	linear := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != secret {
			http.Error(w, "unauthorized", http.StatusUnauthorized) // the key is really in use
			return
		}
		polls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}`)
	}))
	defer linear.Close()
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		t.Errorf("outbound request through the proxy: %s %s", r.Method, r.Host)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer proxy.Close()

	dir := t.TempDir()
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: linear, provider: {project_slug: p, endpoint: %q}}
polling: {interval_ms: 200}
workspace: {root: ws}
---
Work on {{ issue.identifier }}.
`, linear.URL+"/graphql"))
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(k, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	t.Setenv("LINEAR_API_KEY", secret)
	p := start(t, "--data-dir", filepath.Join(dir, "data"), "run", wf, "--nats-listen", "127.0.0.1:0")
	line := p.waitFor(t, "symphony: dashboard on ")
	dashboard := strings.TrimSpace(line[strings.Index(line, "http://"):])
	pid := p.cmd.Process.Pid
	// Every message a listener client may see (every Symphony subject,
	// requests included, and every KV write; the components' replies
	// travel on an inbox out of its reach) is read through the listener
	// and searched for the secret.
	client, err := bus.ConnectDataDir(t.Context(), filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen, leaked atomic.Int64
	for _, subject := range []string{bus.Root + ".>", "$KV.>"} {
		sub, err := client.Conn().Subscribe(subject, func(m *nats.Msg) {
			seen.Add(1)
			if strings.Contains(string(m.Data), secret) || strings.Contains(fmt.Sprint(m.Header), secret) {
				leaked.Add(1)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe() //nolint:errcheck // the client closes below
	}
	if err := client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}

	peers := map[string]bool{}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) || polls.Load() < 3 {
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("the tracker was polled %d times in a minute", polls.Load())
		}
		if resp, err := http.Get(dashboard + "/api/v1/state"); err == nil {
			resp.Body.Close()
		}
		for _, peer := range socketPeers(t, pid) {
			peers[peer.String()] = true
			if !peer.IsLoopback() {
				t.Errorf("symphony has a connection to %s", peer)
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	if proxied.Load() != 0 {
		t.Errorf("%d requests went to the proxy", proxied.Load())
	}
	// After a real run against the tracker, the secret is nowhere: not in
	// the output (the logs), not in any file of the data directory (the raw
	// JetStream store included).
	_ = client.Close(context.Background())
	if leaked.Load() != 0 || seen.Load() == 0 {
		t.Errorf("%d of %d bus messages carried the tracker secret", leaked.Load(), seen.Load())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.all)
	}
	if strings.Contains(p.all.String(), secret) {
		t.Error("the tracker secret is in the output")
	}
	_ = filepath.WalkDir(filepath.Join(dir, "data"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(raw), secret) {
			t.Errorf("the tracker secret is stored in %s", path)
		}
		return nil
	})
	if len(peers) == 0 {
		t.Error("no connection seen at all: the sampling is broken")
	}
	t.Logf("peers seen: %v; tracker polls: %d; bus messages searched: %d", peers, polls.Load(), seen.Load())
}

// socketPeers lists the remote addresses of the process's TCP sockets that
// have a peer (not listening ones).
func socketPeers(t *testing.T, pid int) []net.IP {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil // the process is gone
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []net.IP
	for _, table := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, row := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(row)
			if len(f) < 10 || !inodes[f[9]] || f[3] == "0A" { // 0A: listening
				continue
			}
			host, _, _ := strings.Cut(f[2], ":")
			b, err := hex.DecodeString(host)
			if err != nil {
				t.Fatalf("bad address %q in /proc net/%s", f[2], table)
			}
			// /proc prints each 32-bit word in host (little-endian) order.
			for i := 0; i+4 <= len(b); i += 4 {
				b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
			}
			out = append(out, net.IP(b))
		}
	}
	return out
}
