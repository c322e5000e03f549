package agentrunner

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
)

// parsed is what our reader and parser make of a stream.
type parsed struct {
	kinds     map[bus.TurnEventKind]int
	parseErrs int
	tooLong   int
	sessions  map[string]bool
	result    *bus.TurnResult
}

func parseStream(t *testing.T, data []byte) parsed {
	t.Helper()
	p := parsed{kinds: map[bus.TurnEventKind]int{}, sessions: map[string]bool{}}
	lr := newLineReader(bytes.NewReader(data), MaxLineBytes)
	for {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			t.Fatal(err)
		}
		if tooLong {
			p.tooLong++
			continue
		}
		evs, perr := parseClaudeLine(line)
		if perr != nil {
			p.parseErrs++
			continue
		}
		for _, e := range evs {
			p.kinds[e.Kind]++
			if e.SessionID != "" {
				p.sessions[e.SessionID] = true
			}
			if e.Result != nil {
				p.result = e.Result
			}
		}
	}
}

// TestFakeAgentStreamsParse runs the fake agent in every mode that writes
// a stream and reads its output with the runner's own reader and parser:
// the fake must speak what the runner understands, and break it exactly
// where its mode says.
func TestFakeAgentStreamsParse(t *testing.T) {
	bin := fakeagent.Build(t)
	const n = 12
	for _, mode := range fakeagent.Modes() {
		if mode == fakeagent.ModeHang {
			continue // never ends; covered by the chaos tests
		}
		t.Run(string(mode), func(t *testing.T) {
			cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose", "--model", "m")
			cmd.Dir = t.TempDir()
			cmd.Stdin = strings.NewReader("prompt")
			cmd.Env = append(os.Environ(), "FAKEAGENT_MODE="+string(mode), "FAKEAGENT_EVENTS=12", "FAKEAGENT_SIZE=300",
				"FAKEAGENT_SESSION=sess-fixed", "FAKEAGENT_STDERR_BYTES=1M", "FAKEAGENT_LINE_BYTES=11M",
				"FAKEAGENT_PIDFILE="+filepath.Join(cmd.Dir, "pid"), "FAKEAGENT_DAEMON_SETSID=0")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, _ := cmd.Output()
			// fork_daemon leaves a daemon in the group: end it.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			p := parseStream(t, out)
			if p.kinds[bus.TurnInit] != 1 || len(p.sessions) != 1 || !p.sessions["sess-fixed"] {
				t.Errorf("init %d, sessions %v", p.kinds[bus.TurnInit], p.sessions)
			}
			wantErrs, wantLong := 0, 0
			switch mode {
			case fakeagent.ModeGarbage, fakeagent.ModeBinary:
				wantErrs = n
			case fakeagent.ModeHugeLine:
				wantLong = 1
			}
			if p.parseErrs != wantErrs || p.tooLong != wantLong {
				t.Errorf("parse errors %d, too long %d; want %d, %d", p.parseErrs, p.tooLong, wantErrs, wantLong)
			}
			extra := 0
			if mode == fakeagent.ModeAskPermission {
				extra = 1
			}
			if p.kinds[bus.TurnText] != n/3+extra || p.kinds[bus.TurnToolUse] != n/3+extra || p.kinds[bus.TurnToolResult] != n/3+extra {
				t.Errorf("events %v", p.kinds)
			}
			switch mode {
			case fakeagent.ModeCrash, fakeagent.ModeExit0NoResult:
				if p.result != nil {
					t.Errorf("a result in mode %s", mode)
				}
			case fakeagent.ModeErrorResult:
				if p.result == nil || !p.result.IsError || p.result.APIStatus != 500 {
					t.Errorf("result %+v", p.result)
				}
			case fakeagent.ModeAskPermission:
				if p.result == nil || p.result.IsError || strings.Join(p.result.PermissionDenials, ",") != "Write" {
					t.Errorf("result %+v", p.result)
				}
			default:
				if p.result == nil || p.result.IsError || p.result.CostUSD == nil || *p.result.CostUSD != 0.01 ||
					p.result.Usage.InputTokens != 100 || p.result.Usage.OutputTokens != 10*n {
					t.Errorf("result %+v", p.result)
				}
			}
		})
	}
}

// BenchmarkTurnStream measures the runner's reading and parsing of an
// agent stream (no bus): one turn of the fake agent printing 2000 events of
// 256-byte payloads as fast as it can.
func BenchmarkTurnStream(b *testing.B) {
	bin := fakeagent.Build(b)
	const events = 2000
	env := append(os.Environ(), "FAKEAGENT_EVENTS=2000", "FAKEAGENT_SIZE=256")
	spec := turnSpec{argv: []string{bin, "-p", "--output-format", "stream-json", "--verbose"}, dir: b.TempDir(), env: env,
		stdin: "prompt", silence: time.Minute}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		out := runTurn(b.Context(), spec, nil, func(bus.TurnEvent) error { n++; return nil })
		if out.status != bus.RunSucceeded || n != events+2 {
			b.Fatalf("outcome %s %q, %d events", out.status, out.err, n)
		}
	}
	b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
}
