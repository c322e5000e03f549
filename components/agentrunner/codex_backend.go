package agentrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
)

// The codex backend speaks `codex app-server` (spec §10): one long-lived
// process per run, started with `bash -lc <codex.command>` in the
// workspace, in its own process group through the proc package, with the
// run's environment and markers. The first turn starts it and shakes
// hands — initialize, initialized, thread/start with the run's tracker
// tools as dynamic tools — and every turn sends turn/start on that thread
// and reads notifications until turn/completed. Continuation turns reuse
// the live thread and process; close stops the process (SIGTERM to the
// group, SIGKILL after KillGrace).
//
// The protocol targeted is codex-cli 0.169.0's (the recorded transcripts
// in ../shared/agent-cli and its generated schema): dynamicTools is an
// experimental field there, so initialize opts into experimentalApi, as
// the reference client does.

// Error categories of a codex run (spec §10.6); the run's error starts
// with one of them.
const (
	codexNotFound          = "codex_not_found"
	codexResponseTimeout   = "response_timeout"
	codexTurnTimeout       = "turn_timeout"
	codexPortExit          = "port_exit"
	codexResponseError     = "response_error"
	codexTurnFailed        = "turn_failed"
	codexTurnCancelled     = "turn_cancelled"
	codexTurnInputRequired = "turn_input_required"
)

// Defaults of the codex section when the loader left a key empty.
const (
	defaultCodexCommand     = "codex app-server"
	defaultCodexReadTimeout = 5 * time.Second
	defaultCodexTurnTimeout = time.Hour
	defaultApprovalPolicy   = `"never"`
	defaultThreadSandbox    = "workspace-write"
)

// codexClientVersion is the version initialize reports in clientInfo.
const codexClientVersion = "1"

// codexBackend runs `codex app-server` sessions.
type codexBackend struct{}

func (codexBackend) open(_ context.Context, s sessionSpec) (agentSession, error) {
	cmd := strings.TrimSpace(s.cfg.Codex.Command)
	if cmd == "" {
		cmd = defaultCodexCommand
	}
	return &codexSession{spec: s, argv: []string{"bash", "-lc", cmd}, stream: newCodexStream()}, nil
}

// codexSession is one run's app-server process and thread. Its fields
// belong to the run's goroutine (turn and close); the proc supervisor's
// goroutine hands it stdout batches over batches/handled.
type codexSession struct {
	spec   sessionSpec
	argv   []string
	stream *codexStream

	// live: the process was started (it may have ended since).
	live  bool
	pid   int
	stdin *os.File
	// batches carries stdout from the supervisor; handled returns the
	// handling's error, so the supervisor reads on only once a batch is
	// recorded (a slow bus slows codex, nothing is dropped).
	batches chan [][]byte
	handled chan error
	// closing ends the supervisor's hand-over; stopped stops the process.
	closing   chan struct{}
	closeOnce sync.Once
	stopped   chan canceled
	// done is closed once proc.Run returned; res is its result then.
	done chan struct{}
	res  proc.Result[canceled]

	nextID   int64
	threadID string
	// model is the model thread/start answered: its pricing entry prices
	// the run for the USD cap.
	model string
	// prevTotals are the thread's token totals at the end of the previous
	// turn: a turn's usage is what the totals grew by since.
	prevTotals bus.Usage
	// dead is set once the session cannot take another turn.
	dead bool

	// The turn in progress.
	in        turnInput
	emitErr   error
	parseErrs int
	// waitID is the request whose response is awaited; resp its response.
	waitID int64
	resp   *rpcMessage
	// input is the question of a user-input request (the turn blocks).
	input string
	// declined names the approvals refused under a policy other than
	// never (the turn then ends blocked, as a claude permission denial
	// does).
	declined []string
	lastText string
	// canceled is a cancel of the run that arrived during a tool call.
	canceled *canceled
	sendErr  error
	// turnStart: the request awaited is turn/start.
	turnStart bool
}

func (s *codexSession) command() []string { return s.argv }

// readTimeout is codex.read_timeout_ms.
func (s *codexSession) readTimeout() time.Duration {
	if ms := s.spec.cfg.Codex.ReadTimeoutMS; ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return defaultCodexReadTimeout
}

// turnTimeout is codex.turn_timeout_ms: the longest silence of a turn.
func (s *codexSession) turnTimeout() time.Duration {
	if ms := s.spec.cfg.Codex.TurnTimeoutMS; ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return defaultCodexTurnTimeout
}

// approvalPolicy is codex.approval_policy as JSON.
func (s *codexSession) approvalPolicy() json.RawMessage {
	if p := s.spec.cfg.Codex.ApprovalPolicy; len(p) > 0 && string(p) != "null" {
		return p
	}
	return json.RawMessage(defaultApprovalPolicy)
}

// autoApprove: under approval_policy "never" codex should not ask; if it
// does anyway, the high-trust posture approves for the session.
func (s *codexSession) autoApprove() bool {
	var p string
	return json.Unmarshal(s.approvalPolicy(), &p) == nil && p == "never"
}

// turnSandboxPolicy is codex.turn_sandbox_policy, or workspace-write
// rooted at the run's workspace.
func (s *codexSession) turnSandboxPolicy() json.RawMessage {
	if p := s.spec.cfg.Codex.TurnSandboxPolicy; len(p) > 0 && string(p) != "null" {
		return p
	}
	raw, _ := json.Marshal(map[string]any{"type": "workspaceWrite", "writableRoots": []string{s.spec.dir},
		"networkAccess": false, "excludeTmpdirEnvVar": false, "excludeSlashTmp": false})
	return raw
}

// start starts the app-server under proc.Run in a goroutine the session
// owns (close ends it). Its stdin is a pipe the session writes requests
// to.
func (s *codexSession) start(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		s.in.started(0)
		return fmt.Errorf("stdin pipe: %w", err)
	}
	s.stdin = w
	s.batches, s.handled = make(chan [][]byte), make(chan error)
	s.closing, s.stopped, s.done = make(chan struct{}), make(chan canceled, 1), make(chan struct{})
	// The supervisor's goroutine reports the start; the run hears of it
	// from this one (turnInput.started belongs to the run's goroutine).
	startedPID := make(chan int, 1)
	spec := proc.Spec{Argv: s.argv, Dir: s.spec.dir, Env: s.spec.env(), Stdin: r, MaxLine: MaxLineBytes,
		MarkerName: markerEnv, MarkerValue: s.spec.runID, Since: s.in.since,
		Started: func(pid int) {
			// The child has its copy of the read end.
			r.Close()
			startedPID <- pid
		}}
	s.live = true
	go func() {
		defer close(s.done)
		s.res = proc.Run(ctx, spec, s.stopped, s.hand)
	}()
	select {
	case s.pid = <-startedPID:
	case <-s.done:
		// Started and ended already (the handshake says how), or a pipe
		// could not be made and Started was never called.
		select {
		case s.pid = <-startedPID:
		default:
		}
	}
	s.in.started(s.pid)
	if s.pid > 0 {
		return nil
	}
	<-s.done
	r.Close()
	return fmt.Errorf("start %s: %w", strings.Join(s.argv, " "), s.res.StartErr)
}

// hand is the supervisor's proc.Lines: it hands a batch to the session
// and waits until it is handled. An error stops the process.
func (s *codexSession) hand(batch [][]byte) (bool, error) {
	select {
	case s.batches <- batch:
	case <-s.closing:
		return false, errSessionClosed
	}
	select {
	case err := <-s.handled:
		return false, err
	case <-s.closing:
		return false, errSessionClosed
	}
}

var errSessionClosed = errors.New("the codex session is closed")

// stop stops the process (SIGTERM to its group, SIGKILL after KillGrace;
// whatever carries the run's marker goes too) and waits until it is gone.
func (s *codexSession) stop() {
	if !s.live {
		return
	}
	s.dead = true
	s.closeOnce.Do(func() {
		close(s.closing)
		select {
		case s.stopped <- canceled{}:
		default:
		}
	})
	<-s.done
	s.stdin.Close()
}

// close ends the session: the process is stopped.
func (s *codexSession) close() { s.stop() }

// send writes one message to the app-server, bounded by the read timeout
// (a server that stopped reading must not hang the run).
func (s *codexSession) send(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_ = s.stdin.SetWriteDeadline(time.Now().Add(s.readTimeout()))
	_, err = s.stdin.Write(append(raw, '\n'))
	return err
}

// request sends a request and waits (read_timeout_ms) for its response,
// handling whatever else arrives meanwhile.
func (s *codexSession) request(ctx context.Context, method string, params any) (json.RawMessage, *codexFail) {
	s.nextID++
	s.waitID, s.resp = s.nextID, nil
	if err := s.send(map[string]any{"method": method, "id": s.waitID, "params": params}); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The server stopped reading its stdin.
			s.stop()
			return nil, &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: codex did not read %s within %s (codex.read_timeout_ms)", codexResponseTimeout, method, s.readTimeout())}
		}
		return nil, s.exitFail(fmt.Sprintf("sending %s: %v", method, err))
	}
	if f := s.await(ctx, func() bool { return s.resp != nil }, s.readTimeout(), false, method); f != nil {
		return nil, f
	}
	resp := s.resp
	s.waitID, s.resp = 0, nil
	if resp.Error != nil {
		return nil, &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: %s answered %s", codexResponseError, method, resp.Error)}
	}
	if len(resp.Result) == 0 {
		return nil, &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: %s answered without a result", codexResponseError, method)}
	}
	return resp.Result, nil
}

// codexFail is how a session step failed: the turn's status and error.
type codexFail struct {
	status bus.RunStatus
	err    string
	// hit is the cap of a turn stopped at a budget (budgetFail).
	hit *capHit
}

// exitFail is the failure of a process that ended (or whose stdin broke)
// while Symphony waited for it: codex_not_found when bash could not find
// the command, port_exit otherwise, with the stderr tail.
func (s *codexSession) exitFail(while string) *codexFail {
	select {
	case <-s.done:
	case <-time.After(KillGrace):
		// The pipe broke but the process lives on: stop it.
		s.stop()
	}
	res := s.res
	tail := lastLine(res.Stderr)
	if res.ExitCode != nil && *res.ExitCode == 127 {
		return &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: bash could not run %q (exit status 127): %s", codexNotFound, s.argv[2], tail)}
	}
	how := "exited"
	switch {
	case res.ExitCode != nil:
		how = fmt.Sprintf("exited with status %d", *res.ExitCode)
	case res.Signal != "":
		how = "was killed (" + res.Signal + ")"
	}
	msg := fmt.Sprintf("%s: codex app-server %s during %s", codexPortExit, how, while)
	if res.ReadErr != nil {
		msg += "; reading its output: " + res.ReadErr.Error()
	}
	if tail != "" {
		msg += ": " + tail
	}
	return &codexFail{status: bus.RunFailed, err: msg}
}
