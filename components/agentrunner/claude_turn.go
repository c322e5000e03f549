package agentrunner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
	"github.com/symphony-oss/symphony/internal/procscan"
)

// Process control (see the proc package).
const (
	// KillGrace is the wait between SIGTERM and SIGKILL on cancel.
	KillGrace = proc.KillGrace
	// StderrTail is how much of the agent's stderr is kept.
	StderrTail = proc.StderrTail
	// DrainGrace bounds how long the agent's output pipes may stay open
	// after it exited (see proc.DrainGrace).
	DrainGrace = proc.DrainGrace
	// markerEnv marks every agent process with its run (the value is the
	// run id), so that what left the process group can still be found.
	markerEnv = bus.RunMarkerEnv
)

// turnSpec is one invocation of the claude CLI.
type turnSpec struct {
	argv  []string // argv[0] is the binary
	dir   string   // the workspace; the child's cwd
	env   []string
	stdin string // the prompt
	// silence fails the turn when stdout stays quiet this long.
	silence time.Duration
	// runID, when set, is the markerEnv value env carries: at the end of
	// the turn every process carrying it is killed too.
	runID string
	// since, when set, delivers a window opened earlier (before anything
	// of this turn started) to search for what the turn leaves behind;
	// without it the turn opens one just before the agent's start.
	since <-chan procscan.Window
	// started, when set, is called once the agent's start has been tried,
	// with the agent's pid (0 when the start failed).
	started func(pid int)
	// commit, when set, is called after the events of each batch of lines
	// were handed to emit: what the agent wrote in one go is stored as one
	// message (see runlog.Writer.AppendTurn). An error stops the turn as a
	// failed emit does.
	commit func() error
	// overStreamed, when set, checks the run's spend with the tokens the
	// turn's streamed messages reported so far: when it says a cap is
	// reached, the turn is stopped (budget_exceeded) without waiting for
	// its result.
	overStreamed func(bus.Usage) (capHit, bool)
}

// errStreamedBudget stops a claude turn whose streamed usage reached a
// cap (claudeLines.hit says which).
var errStreamedBudget = errors.New("the turn's streamed usage reached a budget cap")

// runTurn runs one claude invocation under proc.Run: its stdout parsed
// line by line and every event handed to emit (synchronously: a slow bus
// slows the reader, the pipe fills, and the child waits — events are never
// dropped). The result line decides the outcome (turnEnd.status), whatever
// order the exit and the last line come in. cancel, when it fires, stops
// the group (SIGTERM, SIGKILL after KillGrace).
func runTurn(ctx context.Context, spec turnSpec, cancel <-chan canceled, emit func(bus.TurnEvent) error) turnOutcome {
	cl := &claudeLines{emit: emit, commit: spec.commit, over: spec.overStreamed}
	res := proc.Run(ctx, proc.Spec{
		Argv: spec.argv, Dir: spec.dir, Env: spec.env, Stdin: strings.NewReader(spec.stdin),
		Silence: spec.silence, MaxLine: MaxLineBytes, MarkerName: markerEnv, MarkerValue: spec.runID,
		Since: spec.since, Started: spec.started,
	}, cancel, cl.batch)
	out := turnOutcome{sessionID: cl.sessionID, result: cl.result, resultText: cl.resultText, parseErrs: cl.parseErrs,
		exitCode: res.ExitCode, signal: res.Signal, stderr: res.Stderr, abandoned: res.Abandoned}
	out.status, out.err = turnEnd{
		command: spec.argv[0], startErr: res.StartErr, stop: res.Stop, cancel: res.Cancel, linesErr: res.LinesErr,
		silence: spec.silence, silenceKey: "claude.turn_timeout_ms", result: cl.result, resultText: cl.resultText,
		readErr: res.ReadErr, waitErr: res.WaitErr, stderr: res.Stderr,
	}.status()
	if res.StartErr != nil {
		// An agent that never started said nothing.
		return turnOutcome{status: out.status, err: out.err}
	}
	out.streamed, out.model, out.spoke = cl.streamed(), cl.model, cl.init
	if res.Stop == proc.StoppedByLines && errors.Is(res.LinesErr, errStreamedBudget) {
		// Stopped by the group stop every cancel takes (SIGTERM, SIGKILL
		// after KillGrace), for a cap its streamed usage reached.
		out.status, out.err, out.hit = bus.RunBudgetExceeded, cl.hit.why+"; claude was stopped mid-turn", cl.hit
	}
	return out
}

// claudeLines turns the CLI's stdout lines into turn events and hands them
// to emit; after a failed emit nothing more is emitted (the turn is
// stopped), but the lines are still read for the session and result.
type claudeLines struct {
	emit   func(bus.TurnEvent) error
	commit func() error
	err    error

	sessionID  string
	result     *bus.TurnResult
	resultText string
	parseErrs  int

	// init: claude's system/init line came (its model in model). closed
	// is the usage of the turn's finished API messages, cur (message
	// curID) the latest one's so far: claude repeats a message's usage on
	// each of its content-block lines, so a message counts once, with
	// the highest figures its lines gave.
	init   bool
	model  string
	closed bus.Usage
	cur    bus.Usage
	curID  string
	over   func(bus.Usage) (capHit, bool)
	hit    *capHit
}

// streamed is the usage the turn's assistant messages reported so far: a
// lower bound of the turn's (the result's usage, when it comes, is the
// whole; a message's output count grows after its first line).
func (l *claudeLines) streamed() bus.Usage { return l.closed.Add(l.cur) }

// addUsage counts one assistant line's usage, and stops the turn when
// the run's spend with it reaches a cap.
func (l *claudeLines) addUsage(meta lineMeta) {
	u := *meta.usage
	if meta.msgID != "" && meta.msgID == l.curID {
		u, _ = highWater(l.cur, u)
	} else {
		l.closed, l.curID = l.closed.Add(l.cur), meta.msgID
	}
	l.cur = u
	if l.over == nil || l.hit != nil {
		return
	}
	if hit, over := l.over(l.streamed()); over {
		l.hit = &hit
	}
}

// batch is the proc.Lines of a claude turn: the result line is its last
// word.
func (l *claudeLines) batch(lines [][]byte) (bool, error) {
	for _, line := range lines {
		l.line(line)
	}
	if l.err == nil && l.commit != nil {
		l.err = l.commit()
	}
	if l.err == nil && l.hit != nil && l.result == nil {
		return false, errStreamedBudget
	}
	return l.result != nil, l.err
}

// line parses one line and records its events.
func (l *claudeLines) line(line []byte) {
	if line == nil {
		l.parseErrs++
		l.send(bus.TurnEvent{Kind: bus.TurnParseError, Text: fmt.Sprintf("line longer than %d bytes dropped", MaxLineBytes)})
		return
	}
	evs, meta, perr := parseClaudeLineMeta(line, jsonv1.Unmarshal)
	if meta.init {
		l.init, l.model = true, meta.model
	}
	if meta.usage != nil {
		l.addUsage(meta)
	}
	if perr != nil {
		l.parseErrs++
		l.send(bus.TurnEvent{Kind: bus.TurnParseError, Text: bound(perr.Error())})
		return
	}
	for _, ev := range evs {
		if ev.SessionID != "" {
			l.sessionID = ev.SessionID
		}
		if ev.Kind == bus.TurnOutcome {
			l.result, l.resultText = ev.Result, ev.Text
		}
		l.send(ev)
	}
}

func (l *claudeLines) send(ev bus.TurnEvent) {
	if l.err == nil {
		l.err = l.emit(ev)
	}
}
