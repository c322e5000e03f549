package agentrunner

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
)

// TestTurnEndStatus: how a turn's process end, its stream's result, a
// stop (silence, cancel, stall, shutdown, a refused record) and the
// agent's stderr combine into the turn's status and error.
func TestTurnEndStatus(t *testing.T) {
	ok := &bus.TurnResult{}
	errResult := &bus.TurnResult{IsError: true, APIStatus: 529}
	denied := &bus.TurnResult{PermissionDenials: []string{"Write", "Bash"}}
	exit1 := errors.New("exit status 1")
	cases := []struct {
		name   string
		end    turnEnd
		status bus.RunStatus
		err    string
	}{
		{"result", turnEnd{result: ok, waitErr: exit1, stderr: "noise"}, bus.RunSucceeded, ""},
		{"error result", turnEnd{result: errResult, resultText: "first\nAPI Error: 529 overloaded\n", stderr: "boom"}, bus.RunFailed,
			"the agent reported an error (API status 529): API Error: 529 overloaded: boom"},
		{"error result without status or text", turnEnd{result: &bus.TurnResult{IsError: true}}, bus.RunFailed, "the agent reported an error"},
		{"permission denied", turnEnd{result: denied, stderr: "ignored"}, bus.RunBlocked,
			"the agent was denied permission for Write, Bash; it needs an operator"},
		{"exit without a result", turnEnd{waitErr: exit1, stderr: "a\nfatal: broke\n"}, bus.RunFailed,
			"the agent exited (exit status 1) without a result: fatal: broke"},
		{"exit 0 without a result", turnEnd{}, bus.RunFailed, "the agent exited without a result"},
		{"read error", turnEnd{readErr: errors.New("bad fd"), waitErr: exit1}, bus.RunFailed, "reading the agent's output: bad fd"},
		{"silence", turnEnd{stop: proc.StoppedBySilence, silence: 300 * time.Millisecond, silenceKey: "claude.turn_timeout_ms", stderr: "x"},
			bus.RunTimedOut, "no output from the agent for 300ms (claude.turn_timeout_ms)"},
		{"cancel wins over a result", turnEnd{stop: proc.StoppedByCancel, cancel: canceled{bus.RunCanceled, "issue moved to Done"}, result: ok},
			bus.RunCanceled, "issue moved to Done"},
		{"stall", turnEnd{stop: proc.StoppedByCancel, cancel: canceled{bus.RunStalled, "no agent event for 300000ms"}, waitErr: exit1},
			bus.RunStalled, "no agent event for 300000ms"},
		{"shutdown", turnEnd{stop: proc.StoppedByShutdown, stderr: "x"}, bus.RunInterrupted, "symphony is shutting down"},
		{"refused record", turnEnd{stop: proc.StoppedByLines, linesErr: errors.New("maximum messages exceeded"), result: ok},
			bus.RunFailed, "recording agent events failed: maximum messages exceeded"},
		{"no start", turnEnd{command: "/no/claude", startErr: &proc.StartError{Stage: "start", Err: errors.New("no such file")}},
			bus.RunFailed, "start agent /no/claude: no such file"},
		{"no pipe", turnEnd{startErr: &proc.StartError{Stage: "stdout", Err: errors.New("too many open files")}},
			bus.RunFailed, "agent stdout: too many open files"},
		{"long stderr line cut", turnEnd{stderr: strings.Repeat("e", 400)}, bus.RunFailed,
			"the agent exited without a result: " + strings.Repeat("e", 300) + "…"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, msg := c.end.status()
			if st != c.status || msg != c.err {
				t.Errorf("status %s %q, want %s %q", st, msg, c.status, c.err)
			}
		})
	}
}
