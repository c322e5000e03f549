//go:build linux && (amd64 || arm64)

package bus

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// restartBenchBytes is how much turn history the restart benchmark stores.
const restartBenchBytes = 1 << 30

// BenchmarkRestart1GiB measures bus.Open + Close on a data directory
// holding 1 GiB of stored turn events (~1 KiB each, over 10,000 runs of
// five turns: 50,000 subjects). The directory is filled once, untimed, with
// asynchronous JetStream publishes. Sub-benchmarks:
//
//   - cache=warm: the store's files are in the page cache (a restart right
//     after a stop);
//   - cache=cold: before each open the store's files are fsynced and
//     dropped from the page cache (posix_fadvise DONTNEED, these files
//     only), as after a reboot;
//   - index=rebuilt: the streams' index.db files are removed before each
//     open, so the server rebuilds the state from the message blocks, as
//     after kill -9 (warm cache).
//
// Each runs twice over the same store: history=fresh right after the fill,
// when every message is younger than the streams' duplicate window
// (DuplicateWindow, 2 min) — the server then reads each of them at open to
// rebuild its de-duplication map (stream.rebuildDedupe), the worst case, a
// restart right after a gigabyte was written — and, when
// SYMPHONY_BENCH_RESTART_AGED=1, history=aged once the window has passed
// (the benchmark sleeps until then), the usual case.
//
// Figure: restart-ms (open to ready, plus the close). Target: < 2 s.
func BenchmarkRestart1GiB(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "data")
	began := time.Now()
	msgs, stored := fillTurns(b, dir, restartBenchBytes)
	b.Logf("filled %s: %d messages, %d MiB stored in %v", dir, msgs, stored>>20, time.Since(began).Round(time.Millisecond))

	restart := func(b *testing.B, before func(b *testing.B)) {
		for b.Loop() {
			if before != nil {
				b.StopTimer()
				before(b)
				b.StartTimer()
			}
			bus, err := Open(context.Background(), Options{DataDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			if err := bus.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "restart-ms")
	}
	// The first open after the fill checks what was stored.
	bus, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	st, err := bus.js.Stream(context.Background(), StreamTurns)
	if err != nil {
		b.Fatal(err)
	}
	if info, err := st.Info(context.Background()); err != nil || info.State.Msgs != uint64(msgs) {
		b.Fatalf("after a restart TURNS holds %v messages (%v), want %d", info, err, msgs)
	}
	if err := bus.Close(context.Background()); err != nil {
		b.Fatal(err)
	}

	variants := func(b *testing.B) {
		b.Run("cache=warm", func(b *testing.B) { restart(b, nil) })
		b.Run("cache=cold", func(b *testing.B) { restart(b, func(b *testing.B) { dropCache(b, dir) }) })
		b.Run("index=rebuilt", func(b *testing.B) {
			restart(b, func(b *testing.B) {
				err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
					if err == nil && d.Name() == "index.db" {
						err = os.Remove(path)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	filled := time.Now()
	b.Run("history=fresh", variants)
	if os.Getenv(restartAgedEnv) == "" {
		b.Logf("history=aged skipped: set %s=1 to also time restarts once the history is older than the duplicate window (waits %v)", restartAgedEnv, DuplicateWindow)
		return
	}
	time.Sleep(time.Until(filled.Add(DuplicateWindow + 5*time.Second)))
	b.Run("history=aged", variants)
}

// restartAgedEnv enables the history=aged variants of BenchmarkRestart1GiB.
const restartAgedEnv = "SYMPHONY_BENCH_RESTART_AGED"

// fillTurns opens a bus on dir, publishes ~1 KiB turn events until the
// TURNS stream holds at least want bytes, and closes it.
func fillTurns(b *testing.B, dir string, want uint64) (msgs int, stored uint64) {
	b.Helper()
	ctx := context.Background()
	bus, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := bus.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}()
	js, err := jetstream.New(bus.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	st, err := js.Stream(ctx, StreamTurns)
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("Reading the code and planning the change; ", 21) // ~880 bytes
	at := time.Now().Add(-24 * time.Hour)
	const runs, turns, batch = 10000, 5, 4096
	for {
		for range batch {
			run, turn := msgs%runs, msgs/runs%turns+1
			runID := fmt.Sprintf("run-%05d", run)
			ev := TurnEvent{RunID: runID, Turn: turn, Seq: int64(msgs/runs + 1), At: at.Add(time.Duration(msgs) * time.Millisecond),
				Kind: TurnText, SessionID: "session-" + runID, Text: text}
			subject, err := TurnEvents.Subject(runID, fmt.Sprint(turn))
			if err != nil {
				b.Fatal(err)
			}
			m, err := encode(subject, TurnEvents.spec, TurnEvents.spec.typeName, ev)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
			msgs++
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("async publishes not acknowledged within a minute")
		}
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs != uint64(msgs) {
			b.Fatalf("TURNS holds %d messages, %d were published", info.State.Msgs, msgs)
		}
		if info.State.Bytes >= want {
			return msgs, info.State.Bytes
		}
	}
}

// dropCache fsyncs every file under dir and asks the kernel to drop its
// pages from the page cache (POSIX_FADV_DONTNEED), so the next open reads
// from the disk. Only these files are affected.
func dropCache(b *testing.B, dir string) {
	b.Helper()
	const fadvDontNeed = 4
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return err
		}
		if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
			return fmt.Errorf("fadvise %s: %w", path, errno)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
