package ui

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// BenchmarkNeverReadingClients measures what N clients that ask for a long
// run and never read cost the dashboard, and what stays after they leave:
// a run of about 22 MB of agent events (the size the issue measured), N
// (default 150) connections to the API's event stream or the run page
// that send their request and read nothing for a while, then close.
// Reported: the resident size before they connect, the peak Go heap in
// use and the peak resident size while they are connected, and both once
// they have left (5 s after, no forced return to the OS); goroutines left
// over and streams refused at the cap. Run with -benchtime=1x; SSE_FLOOD_N, SSE_FLOOD_MB and
// SSE_FLOOD_HOLD (seconds connected, default 10) change the sizes.
func BenchmarkNeverReadingClients(b *testing.B) {
	n := envInt("SSE_FLOOD_N", 150)
	mb := envInt("SSE_FLOOD_MB", 22)
	hold := time.Duration(envInt("SSE_FLOOD_HOLD", 10)) * time.Second
	ctx := b.Context()
	bs, err := bus.Open(ctx, bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close(context.Background())
	runID := "run-big"
	ref := bus.IssueRef{ID: "id-1", Identifier: "ENG-1", Title: "a long run", State: "In Progress"}
	at := time.Now().UTC().Add(-time.Hour)
	for _, kind := range []bus.RunEventKind{bus.RunDispatched, bus.RunTurnStarted} {
		if err := runlog.Record(ctx, bs, bus.RunEvent{RunID: runID, Event: kind, At: at, Issue: ref, Turn: 1}, runID+string(kind)); err != nil {
			b.Fatal(err)
		}
	}
	w := runlog.NewWriter(bs, 0)
	text := strings.Repeat("The agent wrote this line of its transcript. ", 24) // ~1.1 KB
	events := mb << 20 / (len(text) + 100)
	for i := range events {
		at = at.Add(time.Millisecond)
		if err := w.AppendTurn(ctx, bus.TurnEvent{RunID: runID, Turn: 1, Seq: int64(i + 1), At: at, Kind: bus.TurnText, Text: text}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	at = at.Add(time.Second)
	if err := runlog.Record(ctx, bs, bus.RunEvent{RunID: runID, Event: bus.RunFinished, At: at, Issue: ref, Turn: 1, Status: bus.RunSucceeded}, runID+"fin"); err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/api/v1/runs/" + runID + "/events", "/runs/" + runID} {
		name := "api"
		if !strings.HasPrefix(path, "/api") {
			name = "page"
		}
		b.Run(fmt.Sprintf("%s/n=%d/run=%dMB", name, n, mb), func(b *testing.B) {
			for b.Loop() {
				floodOnce(b, bs, path, n, hold)
			}
		})
	}
}

func floodOnce(b *testing.B, bs *bus.Bus, path string, n int, hold time.Duration) {
	urls := make(chan string, 1)
	srv, err := New(Options{Bus: bs, Port: 0, OnListen: func(u string) { urls <- u }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	addr := strings.TrimPrefix(<-urls, "http://")
	for srv.Model().Snapshot(time.Now(), 0).Ready == false {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset the peak RSS
	baseRSS := procStatus("VmRSS")
	var peakHeap uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	end := time.Now().Add(hold)
	for time.Now().Before(end) {
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	sample()
	if p := os.Getenv("SSE_FLOOD_PROF"); p != "" {
		if f, err := os.Create(p); err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	peakRSS := procStatus("VmHWM")
	refused := 0
	for _, c := range conns {
		// What came back first: a 503 for a stream past the cap.
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && strings.Contains(line, " 503 ") {
			refused++
		}
		c.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(baseRSS)/(1<<10), "base-RSS-MB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(peakRSS)/(1<<10), "peak-RSS-MB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "after-heap-MB")
	b.ReportMetric(float64(procStatus("VmRSS"))/(1<<10), "after-RSS-MB")
	b.ReportMetric(float64(runtime.NumGoroutine()-baseGoroutines), "goroutines-left")
	b.ReportMetric(float64(refused), "refused-503")
}

// procStatus reads a kB figure of /proc/self/status (0 where there is
// none).
func procStatus(key string) int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}
