//go:build symphony_profile

// Profiling hooks for the benchmarks, compiled only with
// -tags symphony_profile (a normal build has none of this):
//
//	SYMPHONY_CPUPROFILE=FILE   CPU profile from main's init on
//	SYMPHONY_TRACE=FILE        execution trace from main's init on
//	                           (in both FILE, %p is replaced by the pid)
//	SYMPHONY_PROFILE_SECONDS=N both stop after N seconds (default 5) or at
//	                           SIGTERM / SIGINT, whichever comes first
//	SYMPHONY_PPROF=HOST:PORT   net/http/pprof and expvar on a loopback address
//
// Build: go build -tags symphony_profile -o /tmp/symphony-prof ./cmd/symphony
// and point the system benchmarks at it with SYMPHONY_BENCH_BINARY.

package main

import (
	_ "expvar"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func init() {
	secs := 5
	if v, err := strconv.Atoi(os.Getenv("SYMPHONY_PROFILE_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	var stops []func()
	pid := strconv.Itoa(os.Getpid())
	if path := strings.ReplaceAll(os.Getenv("SYMPHONY_CPUPROFILE"), "%p", pid); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		} else {
			fmt.Fprintln(os.Stderr, "symphony_profile: cpu profile:", err)
		}
	}
	if path := strings.ReplaceAll(os.Getenv("SYMPHONY_TRACE"), "%p", pid); path != "" {
		f, err := os.Create(path)
		if err == nil && trace.Start(f) == nil {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		} else {
			fmt.Fprintln(os.Stderr, "symphony_profile: trace:", err)
		}
	}
	if len(stops) > 0 {
		var once sync.Once
		stopAll := func() {
			once.Do(func() {
				for _, stop := range stops {
					stop()
				}
			})
		}
		time.AfterFunc(time.Duration(secs)*time.Second, stopAll)
		// A stop signal ends the profiles too (main handles the signal as
		// usual; the shutdown itself is not profiled).
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			<-sig
			stopAll()
		}()
	}
	if addr := os.Getenv("SYMPHONY_PPROF"); addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintln(os.Stderr, "symphony_profile: SYMPHONY_PPROF must be a loopback host:port")
			return
		}
		go func() { fmt.Fprintln(os.Stderr, "symphony_profile:", http.ListenAndServe(addr, nil)) }()
	}
}
