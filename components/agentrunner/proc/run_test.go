package proc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRun drives proc.Run with a shell as the child: lines reach the
// handler in order, and each way a child ends or is stopped is reported as
// such (no agent, no bus).
func TestRun(t *testing.T) {
	refused := errors.New("refused")
	cases := []struct {
		name   string
		script string
		// final and err are the handler's answer to each batch; cancel
		// has it cancel the child.
		final  bool
		err    error
		cancel bool
		check  func(t *testing.T, r Result[string], got []string)
	}{
		{name: "exit status", script: "echo a; echo b; echo oops >&2; exit 3", check: func(t *testing.T, r Result[string], got []string) {
			if strings.Join(got, ",") != "a,b" || r.ExitCode == nil || *r.ExitCode != 3 || r.WaitErr == nil || r.Stderr != "oops\n" || r.Stop != NotStopped {
				t.Errorf("lines %q, exit %v (%v), stderr %q, stop %v", got, r.ExitCode, r.WaitErr, r.Stderr, r.Stop)
			}
		}},
		{name: "silence", script: "echo a; exec sleep 60", check: func(t *testing.T, r Result[string], got []string) {
			if r.Stop != StoppedBySilence || r.Signal != "terminated" {
				t.Errorf("stop %v, signal %q", r.Stop, r.Signal)
			}
		}},
		{name: "last word, then silence", script: "echo done; exec sleep 60", final: true, check: func(t *testing.T, r Result[string], got []string) {
			if r.Stop != NotStopped || r.Signal != "killed" {
				t.Errorf("stop %v, signal %q: a silence after the last word only kills", r.Stop, r.Signal)
			}
		}},
		{name: "no silence limit", script: "sleep 0.3; echo late", check: func(t *testing.T, r Result[string], got []string) {
			if r.Stop != NotStopped || strings.Join(got, ",") != "late" || r.ExitCode == nil || *r.ExitCode != 0 {
				t.Errorf("stop %v, lines %q, exit %v: a zero Silence never stops the child", r.Stop, got, r.ExitCode)
			}
		}},
		{name: "handler error", script: "echo a; exec sleep 60", err: refused, check: func(t *testing.T, r Result[string], got []string) {
			if r.Stop != StoppedByLines || !errors.Is(r.LinesErr, refused) || r.Signal != "terminated" {
				t.Errorf("stop %v, err %v, signal %q", r.Stop, r.LinesErr, r.Signal)
			}
		}},
		{name: "cancel", script: "echo a; exec sleep 60", cancel: true, check: func(t *testing.T, r Result[string], got []string) {
			if r.Stop != StoppedByCancel || r.Cancel != "stop it" || r.Signal != "terminated" {
				t.Errorf("stop %v, cancel %q, signal %q", r.Stop, r.Cancel, r.Signal)
			}
		}},
		{name: "no start", script: "", check: func(t *testing.T, r Result[string], got []string) {
			var se *StartError
			if !errors.As(r.StartErr, &se) || se.Stage != "start" {
				t.Errorf("start error %v", r.StartErr)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			argv := []string{"/bin/sh", "-c", c.script}
			if c.script == "" {
				argv = []string{t.TempDir() + "/missing"}
			}
			silence := time.Minute
			switch c.name {
			case "silence", "last word, then silence":
				silence = 200 * time.Millisecond
			case "no silence limit":
				silence = 0
			}
			cancel := make(chan string, 1)
			var got []string
			r := Run(context.Background(), Spec{Argv: argv, Dir: t.TempDir(), Stdin: strings.NewReader(""), Silence: silence, MaxLine: 1 << 10}, cancel,
				func(batch [][]byte) (bool, error) {
					for _, l := range batch {
						got = append(got, string(l))
					}
					if c.cancel {
						select {
						case cancel <- "stop it":
						default:
						}
					}
					return c.final, c.err
				})
			c.check(t, r, got)
		})
	}
}
