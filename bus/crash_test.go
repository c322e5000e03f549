package bus

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashHelperEnv makes the test binary act as a child process that publishes
// durable messages and then waits to be killed.
const crashHelperEnv = "SYMPHONY_BUS_CRASH_HELPER"

const crashMessages = 500

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashHelperEnv); dir != "" {
		os.Exit(crashHelper(dir))
	}
	os.Exit(m.Run())
}

// crashHelper publishes crashMessages acked run events, reports each ack on
// stdout, and then blocks until it is killed — it never closes the bus.
func crashHelper(dir string) int {
	ctx := context.Background()
	b, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for i := range crashMessages {
		id := fmt.Sprintf("r%d", i)
		ack, err := PublishDurable(ctx, b, RunEvents, RunEvent{RunID: id, Event: RunTurnStarted, Issue: IssueRef{Identifier: "ABC-" + strconv.Itoa(i)}}, id+"-started", id, string(RunTurnStarted))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acked", ack.Seq)
	}
	select {}
}

// TestAckedMessagesSurviveKill9 publishes from a child process, kills it with
// SIGKILL (no shutdown, no flush, the lock still held), restarts the kernel
// on the same store in this process and finds every acknowledged message.
func TestAckedMessagesSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // already dead on the happy path

	acked := 0
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(2 * time.Minute)
	for acked < crashMessages {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("helper exited after %d acks", acked)
			}
			if !strings.HasPrefix(line, "acked ") {
				t.Fatalf("helper: %s", line)
			}
			acked++
		case <-deadline:
			t.Fatalf("helper acked only %d messages", acked)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for range lines {
	}

	b := openTest(t, Options{DataDir: dir})
	seen := map[string]bool{}
	var last uint64
	for m, err := range History(t.Context(), b, RunEvents) {
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq <= last {
			t.Fatalf("out of order: seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		seen[m.Data.RunID] = true
	}
	if len(seen) != crashMessages {
		t.Fatalf("after kill -9 found %d of %d acked messages", len(seen), crashMessages)
	}
	for i := range crashMessages {
		if !seen[fmt.Sprintf("r%d", i)] {
			t.Errorf("acked message r%d lost", i)
		}
	}
}
