package fakeagent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The fake as `codex app-server` (its first argument app-server): JSON-RPC
// one object per line on stdio, as codex-cli 0.169.0 speaks it (the
// transcripts in ../shared/agent-cli). FOR TESTS ONLY: it proves nothing
// about the real server. It answers initialize, thread/start and
// turn/start, and plays each turn as FAKEAGENT_CODEX says:
//
//	ok          (default) turn/started, a command execution, an agent message
//	            streamed in deltas, token totals (absolute, growing by 120
//	            input and 20 output tokens per turn, 30 cached), a rate-limit
//	            snapshot, turn/completed. The message says which turn, thread
//	            and process it is, and on turn 1 what thread/start asked for.
//	tool        ok, with two dynamic tool calls first: FAKEAGENT_CODEX_TOOL
//	            (default files_set_state) and no_such_tool; the message
//	            carries both answers.
//	approval    ok, with a command approval request first (and a legacy
//	            execCommandApproval); the message carries the decisions.
//	input       a user-input request, then nothing.
//	error_reply turn/start is answered with a JSON-RPC error.
//	no_reply    initialize is never answered.
//	silent      turn/started, then nothing.
//	hang        as silent, ignoring SIGTERM, with a child `sleep 600` whose
//	            pid goes to FAKEAGENT_PIDFILE.
//	crash       turn/started, then "fatal: codex crashed" on stderr, exit 3.
//	failed      an error notification, then turn/completed failed (as the
//	            real server reports an HTTP 500 of the model).
//	garbage     ok, after a line that is not JSON and one of an unknown
//	            method.
//	spend       turn/started, token totals of 4000 input (1000 cached) and
//	            1000 output tokens, then nothing (a turn that spends on
//	            and on); its own pid goes to FAKEAGENT_PIDFILE.
//	stream      the benchmarks' turn: turn/started, then FAKEAGENT_EVENTS
//	            events (default 9) of FAKEAGENT_SIZE payload bytes (default
//	            64), FAKEAGENT_INTERVAL before each, as the claude fake
//	            streams them: an agent message (item/completed), a command's
//	            start (item/started), its output (item/completed), in turn —
//	            one line each, each one turn event of Symphony's — then token
//	            totals and turn/completed.
//
// and the hostile scenarios of codex_hostile.go.

// EnvCodex selects the app-server scenario.
const EnvCodex = "FAKEAGENT_CODEX"

// codexFake is one app-server session.
type codexFake struct {
	scenario string
	in       *bufio.Scanner
	out      io.Writer
	errw     io.Writer
	getenv   func(string) string
	thread   string
	// stream plays the stream scenario's events (its options from the
	// same FAKEAGENT_* variables as the claude fake's).
	stream  *player
	turns   int
	nextID  int
	started string // what thread/start asked for
	input   int64
	output  int64
}

// playCodex serves one app-server session until stdin ends.
func playCodex(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := &codexFake{scenario: getenv(EnvCodex), in: bufio.NewScanner(stdin), out: stdout, errw: stderr, getenv: getenv,
		thread: fmt.Sprintf("0000%04x-aaaa-4bbb-8ccc-dddddddddddd", os.Getpid()&0xffff)}
	f.in.Buffer(make([]byte, 64<<10), 16<<20)
	if f.scenario == "" {
		f.scenario = "ok"
	}
	if f.scenario == "stream" {
		o, err := Parse(nil, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "fakeagent:", err)
			return 1
		}
		f.stream = newPlayer(o, io.Discard, stderr)
	}
	if f.scenario == "hang" {
		signal.Ignore(syscall.SIGTERM)
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err == nil {
			if p := getenv(EnvPIDFile); p != "" {
				_ = os.WriteFile(p, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
			}
		}
	}
	for {
		m, ok := f.read()
		if !ok {
			return 0
		}
		if code, done := f.handle(m); done {
			return code
		}
	}
}

// codexMsg is a message either way.
type codexMsg struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
}

func (f *codexFake) read() (codexMsg, bool) {
	for f.in.Scan() {
		var m codexMsg
		if json.Unmarshal(f.in.Bytes(), &m) == nil {
			return m, true
		}
		fmt.Fprintf(f.errw, "fakeagent: not JSON: %.80s\n", f.in.Bytes())
	}
	return codexMsg{}, false
}

func (f *codexFake) send(v any) {
	raw, _ := json.Marshal(v)
	_, _ = f.out.Write(append(raw, '\n'))
}

func (f *codexFake) notify(method string, params any) {
	f.send(map[string]any{"method": method, "params": params})
}

// handle answers one client message; done ends the session with code.
func (f *codexFake) handle(m codexMsg) (code int, done bool) {
	switch m.Method {
	case "initialize":
		if f.scenario == "no_reply" {
			return 0, false
		}
		f.send(map[string]any{"id": m.ID, "result": map[string]any{"userAgent": "fakeagent/0.169.0", "platformOs": "linux"}})
	case "initialized":
	case "thread/start":
		var p struct {
			Cwd            string          `json:"cwd"`
			ApprovalPolicy json.RawMessage `json:"approvalPolicy"`
			Sandbox        string          `json:"sandbox"`
			DynamicTools   []struct {
				Type string `json:"type"`
				Name string `json:"name"`
			} `json:"dynamicTools"`
		}
		_ = json.Unmarshal(m.Params, &p)
		var tools []string
		for _, t := range p.DynamicTools {
			tools = append(tools, t.Type+":"+t.Name)
		}
		f.started = fmt.Sprintf("approval=%s sandbox=%s cwd=%s tools=%s", p.ApprovalPolicy, p.Sandbox, p.Cwd, strings.Join(tools, ","))
		f.send(map[string]any{"id": m.ID, "result": map[string]any{"thread": map[string]any{"id": f.thread, "cwd": p.Cwd}, "model": "fake-codex-model"}})
	case "turn/start":
		return f.turn(m)
	default:
		if len(m.ID) > 0 && m.Method != "" {
			f.send(map[string]any{"id": m.ID, "error": map[string]any{"code": -32601, "message": "unknown method " + m.Method}})
		}
	}
	return 0, false
}

// turn plays one turn.
func (f *codexFake) turn(m codexMsg) (int, bool) {
	if f.scenario == "error_reply" {
		f.send(map[string]any{"id": m.ID, "error": map[string]any{"code": -32600, "message": "turn refused by the fake"}})
		return 0, false
	}
	var p struct {
		ThreadID      string          `json:"threadId"`
		Title         string          `json:"title"`
		SandboxPolicy json.RawMessage `json:"sandboxPolicy"`
		Input         []struct {
			Text string `json:"text"`
		} `json:"input"`
	}
	_ = json.Unmarshal(m.Params, &p)
	f.turns++
	turnID := fmt.Sprintf("turn-%d", f.turns)
	f.send(map[string]any{"id": m.ID, "result": map[string]any{"turn": map[string]any{"id": turnID, "status": "inProgress"}}})
	ids := map[string]string{"threadId": f.thread, "turnId": turnID}
	f.notify("turn/started", map[string]any{"threadId": f.thread, "turn": map[string]any{"id": turnID, "status": "inProgress"}})
	switch f.scenario {
	case "silent", "hang":
		for {
			time.Sleep(time.Hour)
		}
	case "spend":
		if pf := f.getenv(EnvPIDFile); pf != "" {
			_ = os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())), 0o644)
		}
		total := map[string]int64{"totalTokens": 5000, "inputTokens": 4000, "cachedInputTokens": 1000, "cacheWriteInputTokens": 0, "outputTokens": 1000}
		f.notify("thread/tokenUsage/updated", map[string]any{"threadId": f.thread, "turnId": turnID, "tokenUsage": map[string]any{"total": total, "last": total}})
		for {
			time.Sleep(time.Hour)
		}
	case "crash":
		fmt.Fprintln(f.errw, "fatal: codex crashed")
		return 3, true
	case "input":
		f.request("item/tool/requestUserInput", map[string]any{"threadId": f.thread, "turnId": turnID, "itemId": "ask-1", "isBlocking": true,
			"questions": []map[string]any{{"id": "q1", "header": "Database", "question": "Which database should I use?", "isOther": false, "isSecret": false, "options": nil}}})
		for {
			time.Sleep(time.Hour)
		}
	case "failed":
		e := map[string]any{"message": "We're currently experiencing high demand.", "codexErrorInfo": "internalServerError", "additionalDetails": nil}
		f.notify("error", map[string]any{"error": e, "willRetry": false, "threadId": f.thread, "turnId": turnID})
		f.notify("turn/completed", map[string]any{"threadId": f.thread, "turn": map[string]any{"id": turnID, "status": "failed", "error": e}})
		return 0, false
	case "garbage":
		_, _ = io.WriteString(f.out, "this is not JSON\n")
		f.notify("fake/unknownThing", map[string]any{"x": 1})
	case "stream":
		f.streamTurn(turnID)
		return 0, false
	}
	if f.hostileTurn(turnID) {
		return 0, false
	}
	var notes []string
	switch f.scenario {
	case "tool":
		tool := f.getenv("FAKEAGENT_CODEX_TOOL")
		if tool == "" {
			tool = "files_set_state"
		}
		for _, name := range []string{tool, "no_such_tool"} {
			f.notify("item/started", map[string]any{"item": map[string]any{"type": "dynamicToolCall", "id": "dt-" + name, "tool": name, "arguments": map[string]string{"state": "Done"}, "status": "inProgress"}})
			res := f.request("item/tool/call", map[string]any{"threadId": f.thread, "turnId": turnID, "callId": "dt-" + name, "tool": name, "arguments": map[string]string{"state": "Done"}})
			notes = append(notes, name+"="+string(res))
			f.notify("item/completed", map[string]any{"item": map[string]any{"type": "dynamicToolCall", "id": "dt-" + name, "tool": name, "status": "completed"}})
		}
	case "approval":
		res := f.request("item/commandExecution/requestApproval", map[string]any{"threadId": f.thread, "turnId": turnID, "itemId": "call-1", "command": "rm -rf build", "reason": "needs write"})
		legacy := f.request("execCommandApproval", map[string]any{"conversationId": f.thread, "callId": "call-2", "command": []string{"make"}, "cwd": "/"})
		notes = append(notes, "approval="+string(res), "legacy="+string(legacy))
	}
	f.okTurn(turnID, ids, p.Title, p.ThreadID, p.SandboxPolicy, notes)
	return 0, false
}

// okTurn is the rest of a turn that goes well.
func (f *codexFake) okTurn(turnID string, ids map[string]string, title, thread string, sandbox json.RawMessage, notes []string) {
	cmd := map[string]any{"type": "commandExecution", "id": "cmd-" + turnID, "command": "/bin/bash -lc 'echo hi'", "cwd": "/ws", "status": "inProgress", "exitCode": nil, "aggregatedOutput": nil}
	f.notify("item/started", map[string]any{"item": cmd, "threadId": f.thread, "turnId": turnID})
	cmd["status"], cmd["exitCode"], cmd["aggregatedOutput"] = "completed", 0, "hi\n"
	f.notify("item/completed", map[string]any{"item": cmd, "threadId": f.thread, "turnId": turnID})
	text := fmt.Sprintf("turn %d thread %s pid %d", f.turns, thread, os.Getpid())
	if f.turns == 1 {
		text += fmt.Sprintf(" %s title=%s sandboxPolicy=%s", f.started, title, sandbox)
	}
	if len(notes) > 0 {
		text += " " + strings.Join(notes, " ")
	}
	msgID := "msg-" + turnID
	f.notify("item/started", map[string]any{"item": map[string]any{"type": "agentMessage", "id": msgID, "text": ""}})
	half := len(text) / 2
	for _, d := range []string{text[:half], text[half:]} {
		f.notify("item/agentMessage/delta", map[string]any{"threadId": ids["threadId"], "turnId": turnID, "itemId": msgID, "delta": d})
	}
	f.notify("item/completed", map[string]any{"item": map[string]any{"type": "agentMessage", "id": msgID, "text": text}})
	f.input += 120
	f.output += 20
	tok := func(in, out int64) map[string]int64 {
		return map[string]int64{"totalTokens": in + out, "inputTokens": in, "cachedInputTokens": 30, "cacheWriteInputTokens": 0, "outputTokens": out}
	}
	f.notify("thread/tokenUsage/updated", map[string]any{"threadId": f.thread, "turnId": turnID, "tokenUsage": map[string]any{"total": tok(f.input, f.output), "last": tok(120, 20)}})
	f.notify("account/rateLimits/updated", map[string]any{"rateLimits": map[string]any{"limitId": "codex", "primary": map[string]any{"usedPercent": 42}}})
	f.notify("turn/completed", map[string]any{"threadId": f.thread, "turn": map[string]any{"id": turnID, "status": "completed", "error": nil}})
}

// streamTurn is the stream scenario's turn after turn/started: the
// events, the token totals (100 input and 10 output tokens an event, as
// the claude fake counts), turn/completed.
func (f *codexFake) streamTurn(turnID string) {
	p := f.stream
	for i := range p.o.Events {
		if p.o.Interval > 0 {
			sleepThread(p.o.Interval)
		}
		var item map[string]any
		method := "item/completed"
		switch i % 3 {
		case 0:
			item = map[string]any{"type": "agentMessage", "id": fmt.Sprintf("msg-%s-%d", turnID, i), "text": p.payload()}
		case 1:
			method = "item/started"
			item = map[string]any{"type": "commandExecution", "id": fmt.Sprintf("cmd-%s-%d", turnID, i), "command": "/bin/bash -lc " + strconv.Quote(p.payload()),
				"cwd": p.cwd, "status": "inProgress", "exitCode": nil, "aggregatedOutput": nil}
		case 2:
			item = map[string]any{"type": "commandExecution", "id": fmt.Sprintf("cmd-%s-%d", turnID, i-1), "command": "/bin/bash -lc true",
				"cwd": p.cwd, "status": "completed", "exitCode": 0, "aggregatedOutput": p.payload()}
		}
		f.notify(method, map[string]any{"item": item, "threadId": f.thread, "turnId": turnID})
	}
	f.input += 100
	f.output += int64(10 * p.o.Events)
	tok := func(in, out int64) map[string]int64 {
		return map[string]int64{"totalTokens": in + out, "inputTokens": in, "cachedInputTokens": 0, "cacheWriteInputTokens": 0, "outputTokens": out}
	}
	last := tok(100, int64(10*p.o.Events))
	f.notify("thread/tokenUsage/updated", map[string]any{"threadId": f.thread, "turnId": turnID, "tokenUsage": map[string]any{"total": tok(f.input, f.output), "last": last}})
	f.notify("turn/completed", map[string]any{"threadId": f.thread, "turn": map[string]any{"id": turnID, "status": "completed", "error": nil}})
}

// request sends a server request and returns the client's answer (its
// result or error), ignoring anything else it reads meanwhile.
func (f *codexFake) request(method string, params any) json.RawMessage {
	f.nextID++
	id := strconv.Itoa(1000 + f.nextID)
	f.send(map[string]any{"id": json.RawMessage(id), "method": method, "params": params})
	for {
		m, ok := f.read()
		if !ok {
			return nil
		}
		if string(m.ID) == id && m.Method == "" {
			if len(m.Error) > 0 {
				return m.Error
			}
			return m.Result
		}
	}
}
