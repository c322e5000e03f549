package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testCluster starts three in-process servers joined by routes, with
// JetStream, and returns them once a meta leader is elected. (The kernel
// imports nothing of the project, so not testkit/natscluster, which the
// command's tests use.)
func testCluster(t *testing.T) ([]*server.Server, []string) {
	t.Helper()
	var routes []*url.URL
	var ports []int
	var ls []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		routes = append(routes, &url.URL{Scheme: "nats", Host: l.Addr().String()})
		ls = append(ls, l)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	dir := t.TempDir()
	opts := make([]*server.Options, 3)
	for i := range 3 {
		opts[i] = &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, NoSigs: true,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprint(i)), Routes: routes,
			Cluster: server.ClusterOpts{Name: "bus-test", Host: "127.0.0.1", Port: ports[i]}}
	}
	return startCluster(t, opts)
}

func startCluster(t *testing.T, opts []*server.Options) ([]*server.Server, []string) {
	t.Helper()
	var servers []*server.Server
	var urls []string
	for _, o := range opts {
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	deadline := time.Now().Add(time.Minute)
	for _, s := range servers {
		for {
			jsz, err := s.Jsz(&server.JSzOptions{})
			if err == nil && jsz.Meta != nil && jsz.Meta.Leader != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no JetStream meta leader within a minute")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return servers, urls
}

// dialTest dials the deployment at urls and closes the bus at the end.
func dialTest(t *testing.T, o RemoteOptions) *Bus {
	t.Helper()
	b, err := Dial(t.Context(), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// TestDialCluster: on a real three-server cluster, Dial declares every
// stream and bucket with three replicas (the clustered default), a second
// connection and a reader that declares nothing see the same data, and
// with one server stopped, writes are still acknowledged and read back.
func TestDialCluster(t *testing.T) {
	servers, urls := testCluster(t)
	b := dialTest(t, RemoteOptions{URLs: urls, Declare: true, ClientName: "test scheduler"})
	for _, st := range Streams() {
		s, err := b.JetStream().Stream(t.Context(), st.Name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != ClusterReplicas {
			t.Errorf("stream %s has %d replicas, want %d", st.Name, r, ClusterReplicas)
		}
	}
	if r, err := b.Replicas(t.Context()); err != nil || r != ClusterReplicas {
		t.Fatalf("state bucket: %d replicas (%v), want %d", r, err, ClusterReplicas)
	}
	// A second declaration changes nothing.
	if changed, err := declare(t.Context(), b.js, DefaultStreamMaxAge, ClusterReplicas); err != nil || len(changed) != 0 {
		t.Fatalf("redeclare: changed %v, err %v", changed, err)
	}
	if _, err := Put(t.Context(), b, DispatchPause, PauseState{Paused: true}); err != nil {
		t.Fatal(err)
	}
	reader := dialTest(t, RemoteOptions{URLs: urls[2:], ClientName: "test reader"})
	if e, err := Get(t.Context(), reader, DispatchPause); err != nil || !e.Value.Paused {
		t.Fatalf("the reader sees %+v, %v; want paused", e, err)
	}
	conn, err := b.Connection("second")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	servers[0].Shutdown()
	// The stream's leader may have been on the stopped server: the other
	// two elect another (seconds on a loaded machine); each try is bounded.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := Put(ctx, conn, DispatchPause, PauseState{Paused: false})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write acknowledged with one server of three down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e, err := Get(t.Context(), reader, DispatchPause); err != nil || e.Value.Paused {
		t.Fatalf("after a server stopped the reader sees %+v, %v; want not paused", e, err)
	}
}

// TestDialSingleServerAuth: a lone server (no cluster) gets one replica;
// a user and password admit, a wrong password is refused, and two ways of
// authenticating at once are refused before connecting.
func TestDialSingleServerAuth(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, Username: "sym", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := s.ClientURL()
	b := dialTest(t, RemoteOptions{URLs: []string{url}, User: "sym", Password: "s3cret", Declare: true})
	if r, err := b.Replicas(t.Context()); err != nil || r != 1 {
		t.Fatalf("single server: %d replicas (%v), want 1", r, err)
	}
	if _, err := Dial(t.Context(), RemoteOptions{URLs: []string{url}, User: "sym", Password: "wrong"}); err == nil || !strings.Contains(err.Error(), "uthorization") {
		t.Fatalf("a wrong password: %v, want an authorization error", err)
	}
	_, err = Dial(t.Context(), RemoteOptions{URLs: []string{url}, User: "sym", Password: "x", CredsFile: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "one way of authenticating") {
		t.Fatalf("two ways of authenticating: %v", err)
	}
	if _, err := Dial(t.Context(), RemoteOptions{}); err == nil {
		t.Fatal("no URL: no error")
	}
	_, err = Dial(t.Context(), RemoteOptions{URLs: []string{"nats://sym:s3cret@" + strings.TrimPrefix(url, "nats://")}})
	if err == nil || !strings.Contains(err.Error(), "credentials not in the URL") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("credentials in the URL: %v; want a refusal that does not repeat them", err)
	}
}

// TestUnavailable: a want of answer is worth another try; a refusal is not.
func TestUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("publish: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("x: %w", nats.ErrTimeout), true},
		{nats.ErrNoResponders, true},
		{fmt.Errorf("publish: %w", jetstream.ErrNoStreamResponse), true},
		{errors.New("nats: JetStream system temporarily unavailable"), true},
		{ErrRevisionChanged, false},
		{errors.New("nats: insufficient resources"), false},
	} {
		if got := Unavailable(c.err); got != c.want {
			t.Errorf("Unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
