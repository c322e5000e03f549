package runlog

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestDiskFullFailsLoudly fills the store until it refuses writes: the
// store must refuse with an error (never acknowledge what it did not keep),
// and every event it acknowledged must still be there after a restart.
// Where the test may mount (root), the data directory is a real 8 MiB
// tmpfs that runs out of space; elsewhere the store is capped at 8 MiB,
// which the server enforces the same way. Either way the test runs.
func TestDiskFullFailsLoudly(t *testing.T) {
	dir := t.TempDir()
	opts := bus.Options{DataDir: dir}
	how := "an 8 MiB tmpfs"
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		opts.MaxStoreBytes = 8 << 20
		how = fmt.Sprintf("a store capped at 8 MiB (no tmpfs: %s)", strings.TrimSpace(string(out)+" "+err.Error()))
	} else {
		t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	}
	t.Logf("disk: %s", how)
	b, err := bus.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 2000)
	acked := 0
	var failure error
	for i := range 20000 {
		_, err := bus.PublishDurable(t.Context(), b, bus.TurnEvents, bus.TurnEvent{RunID: "full", Seq: int64(i + 1), At: time.Now(), Kind: bus.TurnText, Text: text}, fmt.Sprint("f", i), "full", "1")
		if err != nil {
			failure = err
			break
		}
		acked++
	}
	if failure == nil {
		t.Fatal("20,000 events of 2 KB fit on an 8 MiB disk: the test is not filling it")
	}
	t.Logf("disk full after %d acknowledged events: %v", acked, failure)
	// The pipelined writer reports it too.
	w := NewWriter(b, 8)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		werr = WriteDurable(t.Context(), w, bus.TurnEvents, bus.TurnEvent{RunID: "full", Kind: bus.TurnText, Text: text}, fmt.Sprint("w", i), "full", "1")
	}
	if werr == nil {
		werr = w.Flush(t.Context())
	}
	if werr == nil {
		t.Error("the writer acknowledged events on a full disk")
	}
	_ = b.Close(context.Background())

	b, err = bus.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("reopen after the disk filled: %v", err)
	}
	defer b.Close(context.Background())
	n := 0
	for _, err := range bus.History(t.Context(), b, bus.TurnEvents, "full") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n < acked {
		t.Fatalf("%d events acknowledged, %d still stored: acknowledged events lost", acked, n)
	}
}
