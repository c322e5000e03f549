package agentrunner

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
)

// turnEnd is everything a turn's status is decided from: how its process
// ended (proc.Result) and what its stream said.
type turnEnd struct {
	// command is the agent's binary, named when it could not start.
	command string
	// startErr: the agent never started (a *proc.StartError).
	startErr error
	// stop is why the turn was stopped early, if it was; cancel is the
	// cancel that stopped it, linesErr the recording failure that did.
	stop     proc.StopKind
	cancel   canceled
	linesErr error
	// silence is the turn timeout a silence stop overran, silenceKey the
	// setting it comes from (claude.turn_timeout_ms).
	silence    time.Duration
	silenceKey string
	// result is the stream's result line, resultText its text.
	result     *bus.TurnResult
	resultText string
	// readErr is a failure reading the agent's output, waitErr how its
	// wait ended (an exit status), stderr the tail of its stderr.
	readErr, waitErr error
	stderr           string
}

// status decides the turn's status and error. A stop decides first (its
// reason is the error); otherwise the result line decides, whatever the
// exit code says (an error result fails the turn, a result with permission
// denials blocks it, any other succeeds); without one the turn failed, for
// the reason closest to the agent's own: a read error, then its exit. A
// failure ends with the last line of the agent's stderr.
func (e turnEnd) status() (bus.RunStatus, string) {
	if e.startErr != nil {
		var se *proc.StartError
		if errors.As(e.startErr, &se) && se.Stage == "start" {
			return bus.RunFailed, fmt.Sprintf("start agent %s: %v", e.command, se.Err)
		}
		return bus.RunFailed, "agent " + e.startErr.Error()
	}
	switch e.stop {
	case proc.StoppedByLines:
		return bus.RunFailed, "recording agent events failed: " + e.linesErr.Error()
	case proc.StoppedBySilence:
		return bus.RunTimedOut, fmt.Sprintf("no output from the agent for %s (%s)", e.silence, e.silenceKey)
	case proc.StoppedByCancel:
		return e.cancel.status, e.cancel.reason
	case proc.StoppedByShutdown:
		return bus.RunInterrupted, "symphony is shutting down"
	}
	var st bus.RunStatus
	var msg string
	switch r := e.result; {
	case r != nil && r.IsError:
		st, msg = bus.RunFailed, "the agent reported an error"
		if r.APIStatus != 0 {
			msg += fmt.Sprintf(" (API status %d)", r.APIStatus)
		}
		if t := strings.TrimSpace(e.resultText); t != "" {
			msg += ": " + lastLine(t)
		}
	case r != nil && len(r.PermissionDenials) > 0:
		st, msg = bus.RunBlocked, "the agent was denied permission for "+strings.Join(r.PermissionDenials, ", ")+"; it needs an operator"
	case r != nil:
		st = bus.RunSucceeded
	case e.readErr != nil:
		st, msg = bus.RunFailed, "reading the agent's output: "+e.readErr.Error()
	case e.waitErr != nil:
		st, msg = bus.RunFailed, fmt.Sprintf("the agent exited (%v) without a result", e.waitErr)
	default:
		st, msg = bus.RunFailed, "the agent exited without a result"
	}
	if st == bus.RunFailed && e.stderr != "" {
		msg += ": " + lastLine(e.stderr)
	}
	return st, msg
}

// lastLine is the last line of s, cut to 300 bytes.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
