package agentrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
)

// turn runs one turn on the session: the first starts the app-server and
// shakes hands, every one sends turn/start on the thread and reads until
// turn/completed. A turn that fails in any other way than turn/completed
// saying so stops the process before it returns.
func (s *codexSession) turn(ctx context.Context, in turnInput) turnOutcome {
	s.in, s.emitErr, s.parseErrs, s.input, s.declined, s.lastText, s.canceled, s.sendErr = in, nil, 0, "", nil, "", nil, nil
	s.stream.end = nil
	switch {
	case s.dead:
		in.started(0)
		return turnOutcome{status: bus.RunFailed, err: "the codex session has ended"}
	case !s.live:
		if err := s.start(ctx); err != nil {
			s.dead = true
			return turnOutcome{status: bus.RunFailed, err: "start agent: " + err.Error()}
		}
		if f := s.handshake(ctx); f != nil {
			return s.failed(f)
		}
	default:
		in.started(s.pid)
	}
	params := map[string]any{"threadId": s.threadID, "input": []map[string]string{{"type": "text", "text": in.prompt}},
		"cwd": s.spec.dir, "approvalPolicy": s.approvalPolicy(), "sandboxPolicy": s.turnSandboxPolicy()}
	if s.spec.title != "" {
		params["title"] = s.spec.title
	}
	s.turnStart = true
	_, f := s.request(ctx, "turn/start", params)
	s.turnStart = false
	if f != nil {
		return s.failed(f)
	}
	// Totals that came with turn/start's response were handled while it
	// was awaited.
	if f := s.budgetFail(); f != nil && s.stream.end == nil {
		return s.failed(f)
	}
	if f := s.await(ctx, func() bool { return s.stream.end != nil }, s.turnTimeout(), true, "the turn"); f != nil {
		return s.failed(f)
	}
	return s.ended()
}

// handshake is initialize, initialized and thread/start: the thread's id
// is the run's session id.
func (s *codexSession) handshake(ctx context.Context) *codexFail {
	if _, f := s.request(ctx, "initialize", map[string]any{
		"clientInfo":   map[string]string{"name": "symphony", "title": "Symphony", "version": codexClientVersion},
		"capabilities": map[string]any{"experimentalApi": true},
	}); f != nil {
		return f
	}
	if err := s.send(map[string]any{"method": "initialized"}); err != nil {
		return s.exitFail("initialized: " + err.Error())
	}
	sandbox := s.spec.cfg.Codex.ThreadSandbox
	if sandbox == "" {
		sandbox = defaultThreadSandbox
	}
	params := map[string]any{"cwd": s.spec.dir, "approvalPolicy": s.approvalPolicy(), "sandbox": sandbox}
	if tools := s.dynamicTools(); len(tools) > 0 {
		params["dynamicTools"] = tools
	}
	raw, f := s.request(ctx, "thread/start", params)
	if f != nil {
		return f
	}
	var r struct {
		Thread *struct {
			ID    string `json:"id"`
			Model string `json:"model"`
		} `json:"thread"`
		Model string `json:"model"`
		Cwd   string `json:"cwd"`
	}
	if err := jsonv1.Unmarshal(raw, &r); err != nil || r.Thread == nil {
		return &codexFail{status: bus.RunFailed, err: codexResponseError + ": thread/start answered without a thread"}
	}
	if !validSessionID(r.Thread.ID) {
		return &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: thread/start answered the thread id %q, which is not an identifier", codexResponseError, boundTo(r.Thread.ID, 80))}
	}
	s.threadID, s.stream.thread = r.Thread.ID, r.Thread.ID
	model := r.Model
	if model == "" {
		model = r.Thread.Model
	}
	s.model = strings.TrimSpace(model)
	e := s.stream.ev(bus.TurnInit)
	e.Text = bound("model " + model + ", cwd " + s.spec.dir + ", thread " + s.threadID)
	s.emit(e)
	return nil
}

// dynamicTools are the run's tracker tools as thread/start advertises
// them (DynamicToolSpec of type function).
func (s *codexSession) dynamicTools() []map[string]any {
	if s.spec.tools == nil {
		return nil
	}
	out := make([]map[string]any, 0, len(s.spec.tools.specs.Tools))
	for _, t := range s.spec.tools.specs.Tools {
		schema := t.InputSchema
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		out = append(out, map[string]any{"type": "function", "name": t.Name, "description": t.Description, "inputSchema": schema})
	}
	return out
}

// await reads the server's lines until done holds. wait bounds it: as a
// silence (each batch resets it: turn_timeout_ms) or as a deadline
// (read_timeout_ms for the response to what).
func (s *codexSession) await(ctx context.Context, done func() bool, wait time.Duration, silence bool, what string) *codexFail {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !done() {
		select {
		case b := <-s.batches:
			s.handleBatch(ctx, b)
			s.handled <- s.emitErr
			if s.emitErr != nil {
				return &codexFail{status: bus.RunFailed, err: "recording agent events failed: " + s.emitErr.Error()}
			}
			if s.sendErr != nil {
				return &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: codex did not read a reply within %s (codex.read_timeout_ms): %v", codexResponseTimeout, s.readTimeout(), s.sendErr)}
			}
			if c := s.canceled; c != nil {
				return &codexFail{status: c.status, err: c.reason}
			}
			if f := s.budgetFail(); f != nil && !done() {
				return f
			}
			if s.input != "" {
				return &codexFail{status: bus.RunBlocked, err: codexTurnInputRequired + ": codex asked for input, and a Symphony run has no one to answer: " + s.input}
			}
			if silence {
				timer.Reset(wait)
			}
		case <-s.done:
			return s.exitFail(what)
		case <-timer.C:
			if silence {
				return &codexFail{status: bus.RunTimedOut, err: fmt.Sprintf("%s: no output from codex for %s (codex.turn_timeout_ms)", codexTurnTimeout, wait)}
			}
			return &codexFail{status: bus.RunFailed, err: fmt.Sprintf("%s: no response to %s within %s (codex.read_timeout_ms)", codexResponseTimeout, what, wait)}
		case c := <-s.in.cancel:
			return &codexFail{status: c.status, err: c.reason}
		case <-ctx.Done():
			return &codexFail{status: bus.RunInterrupted, err: "symphony is shutting down"}
		}
	}
	return nil
}

// failed ends a turn that failed short of turn/completed: the process is
// stopped, and the outcome carries how it ended.
func (s *codexSession) failed(f *codexFail) turnOutcome {
	s.stop()
	out := turnOutcome{status: f.status, err: f.err, sessionID: s.threadID, parseErrs: s.parseErrs,
		exitCode: s.res.ExitCode, signal: s.res.Signal, stderr: s.res.Stderr, abandoned: s.res.Abandoned, runUSD: s.runUSD(), hit: f.hit}
	if s.threadID != "" {
		out.result = &bus.TurnResult{IsError: true, Subtype: "error", Usage: s.usageDelta()}
	}
	return out
}

// ended is the outcome of a turn codex completed: turn/completed's status
// decides it.
func (s *codexSession) ended() turnOutcome {
	end := s.stream.end
	res := &bus.TurnResult{IsError: end.status != "completed", Subtype: end.status, Usage: s.usageDelta(), PermissionDenials: s.declined}
	text := s.lastText
	if end.err != "" {
		text = end.err
	}
	ev := s.stream.ev(bus.TurnOutcome)
	ev.Result, ev.Text = res, bound(text)
	s.emit(ev)
	if s.emitErr == nil && s.in.commit != nil {
		s.emitErr = s.in.commit()
	}
	out := turnOutcome{status: bus.RunSucceeded, sessionID: s.threadID, result: res, resultText: text, parseErrs: s.parseErrs, runUSD: s.runUSD()}
	switch {
	case s.emitErr != nil:
		out.status, out.err = bus.RunFailed, "recording agent events failed: "+s.emitErr.Error()
	case end.status == "failed":
		out.status, out.err = bus.RunFailed, codexTurnFailed+": "+orElse(end.err, "codex reported the turn failed")
	case end.status == "interrupted":
		out.status, out.err = bus.RunFailed, codexTurnCancelled+": codex interrupted the turn"
	case end.status != "completed":
		out.status, out.err = bus.RunFailed, fmt.Sprintf("%s: the turn ended with status %q", codexTurnFailed, end.status)
	case len(s.declined) > 0:
		out.status, out.err = bus.RunBlocked, "codex was refused approval for "+strings.Join(s.declined, ", ")+" (codex.approval_policy is not never); it needs an operator"
	}
	return out
}

func orElse(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// usageDelta is what the thread's absolute token totals grew by since the
// previous turn: the run sums its turns' usage, so the run's tokens are
// the last totals codex reported (spec §13.5: never `last` added up).
func (s *codexSession) usageDelta() bus.Usage {
	if s.stream.totals == nil {
		return bus.Usage{}
	}
	t, p := *s.stream.totals, s.prevTotals
	s.prevTotals = t
	// The totals only grow (highWater); a delta is never negative.
	sub := func(a, b int64) int64 { return max(a-b, 0) }
	return bus.Usage{InputTokens: sub(t.InputTokens, p.InputTokens), OutputTokens: sub(t.OutputTokens, p.OutputTokens),
		CacheCreationInputTokens: sub(t.CacheCreationInputTokens, p.CacheCreationInputTokens),
		CacheReadInputTokens:     sub(t.CacheReadInputTokens, p.CacheReadInputTokens)}
}

// emit records one event; after a failed emit nothing more is recorded
// (the turn is stopped).
func (s *codexSession) emit(ev bus.TurnEvent) {
	if ev.Kind == bus.TurnText {
		s.lastText = ev.Text
	}
	if s.emitErr == nil {
		s.emitErr = s.in.emit(ev)
	}
}

// handleBatch handles the lines the server wrote in one go, then commits
// their events as one message.
func (s *codexSession) handleBatch(ctx context.Context, batch [][]byte) {
	for _, line := range batch {
		if s.canceled != nil || s.input != "" || s.emitErr != nil || s.sendErr != nil {
			break
		}
		select {
		case c := <-s.in.cancel:
			s.canceled = &c
			continue
		default:
		}
		s.handleLine(ctx, line)
	}
	if s.emitErr == nil && s.in.commit != nil {
		s.emitErr = s.in.commit()
	}
}

// handleLine handles one line: a response is kept for the request that
// waits for it, a request is answered, a notification recorded.
func (s *codexSession) handleLine(ctx context.Context, line []byte) {
	if line == nil {
		s.parseErr(fmt.Sprintf("line longer than %d bytes dropped", MaxLineBytes))
		return
	}
	m, err := parseRPCLine(line)
	switch {
	case err != nil:
		s.parseErr(err.Error())
		return
	case m == nil:
		return
	case m.isResponse():
		var id int64
		if jsonv1.Unmarshal(m.ID, &id) == nil && id == s.waitID && s.waitID != 0 {
			s.resp = m
			if s.turnStart {
				// The turn's id, before anything that follows the
				// response in this batch is read: a turn/completed of
				// another turn (a stale one included) does not end it.
				var tr struct {
					Turn *struct {
						ID string `json:"id"`
					} `json:"turn"`
				}
				if jsonv1.Unmarshal(m.Result, &tr) == nil && tr.Turn != nil {
					s.stream.turnID = tr.Turn.ID
				}
				if e := s.stream.end; e != nil && e.turnID != s.stream.turnID {
					s.stream.end = nil
				}
			}
			return
		}
		e := s.stream.ev(bus.TurnOther)
		e.Text, e.Raw = "response to no pending request", boundRaw(line)
		s.emit(e)
	case m.isRequest():
		s.serverRequest(ctx, m)
	default:
		evs, err := s.stream.notification(m.Method, m.Params, line)
		if err != nil {
			s.parseErr(err.Error())
		}
		for _, e := range evs {
			s.emit(e)
		}
	}
}

func (s *codexSession) parseErr(why string) {
	s.parseErrs++
	e := s.stream.ev(bus.TurnParseError)
	e.Text = bound(why)
	s.emit(e)
}

// reply answers a server request. A failed write is not the request's
// failure: the process is then gone or going, which await sees.
func (s *codexSession) reply(id json.RawMessage, result any) {
	if err := s.send(map[string]any{"id": id, "result": result}); err != nil && s.sendErr == nil {
		s.sendErr = err
	}
}

// replyError answers a server request with a JSON-RPC error.
func (s *codexSession) replyError(id json.RawMessage, code int, msg string) {
	if err := s.send(map[string]any{"id": id, "error": map[string]any{"code": code, "message": msg}}); err != nil && s.sendErr == nil {
		s.sendErr = err
	}
}

// serverRequest answers a request of the server; none is left waiting.
func (s *codexSession) serverRequest(ctx context.Context, m *rpcMessage) {
	switch m.Method {
	case "item/tool/call":
		s.toolCall(ctx, m)
	case "item/commandExecution/requestApproval", "item/fileChange/requestApproval":
		s.approval(m, "acceptForSession", "decline")
	case "execCommandApproval", "applyPatchApproval":
		s.approval(m, "approved_for_session", map[string]any{"denied": map[string]string{"rejection": "Symphony runs codex without an operator to approve"}})
	case "item/tool/requestUserInput", "mcpServer/elicitation/request", "item/permissions/requestApproval":
		s.input = userQuestion(m)
		s.replyError(m.ID, -32000, "Symphony runs codex without an operator: the run ends blocked with this question")
		e := s.stream.ev(bus.TurnSystem)
		e.Text, e.Raw = bound(codexTurnInputRequired+": "+s.input), boundRaw(m.Params)
		s.emit(e)
	default:
		s.replyError(m.ID, -32601, "Symphony does not handle "+m.Method)
		e := s.stream.ev(bus.TurnOther)
		e.Text, e.Raw = boundName("request "+m.Method+" (answered: not handled)"), boundRaw(m.Params)
		s.emit(e)
	}
}

// approval answers an approval request per codex.approval_policy: under
// never, approved for the session (codex should not have asked; the
// high-trust posture of spec §10.5); under any other policy, refused (no
// operator is there to decide), and the turn ends blocked.
func (s *codexSession) approval(m *rpcMessage, accept string, decline any) {
	var p struct {
		Command json.RawMessage `json:"command"`
		Reason  string          `json:"reason"`
		ItemID  string          `json:"itemId"`
	}
	_ = jsonv1.Unmarshal(m.Params, &p)
	what := m.Method
	if len(p.Command) > 0 && string(p.Command) != "null" {
		what += " " + boundTo(string(p.Command), 200)
	}
	e := s.stream.ev(bus.TurnSystem)
	e.Raw = boundRaw(m.Params)
	if s.autoApprove() {
		s.reply(m.ID, map[string]any{"decision": accept})
		e.Text = bound(fmt.Sprintf("approval: %s -> %s (codex.approval_policy never)", what, accept))
	} else {
		s.reply(m.ID, map[string]any{"decision": decline})
		if len(s.declined) < maxDenials {
			s.declined = append(s.declined, boundName(what))
		}
		e.Text = bound(fmt.Sprintf("approval: %s -> declined (codex.approval_policy %s)", what, boundTo(string(s.approvalPolicy()), 200)))
	}
	s.emit(e)
}

// userQuestion is what a user-input request or elicitation asks.
func userQuestion(m *rpcMessage) string {
	var p struct {
		Questions []struct {
			Header   string `json:"header"`
			Question string `json:"question"`
		} `json:"questions"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	_ = jsonv1.Unmarshal(m.Params, &p)
	var qs []string
	for _, q := range p.Questions {
		text := strings.TrimSpace(q.Question)
		if h := strings.TrimSpace(q.Header); h != "" {
			text = h + ": " + text
		}
		qs = append(qs, text)
	}
	qs = append(qs, p.Message, p.Reason)
	qs = slices.DeleteFunc(qs, func(q string) bool { return strings.TrimSpace(q) == "" })
	if len(qs) == 0 {
		return "(" + m.Method + ", no question text)"
	}
	return boundTo(strings.Join(qs, " / "), 1<<10)
}

// toolCall runs a dynamic tool call host-side through the run's tracker
// tools and answers it (DynamicToolCallResponse: success, contentItems);
// a tool the run does not have gets a structured failure, and the session
// goes on.
func (s *codexSession) toolCall(ctx context.Context, m *rpcMessage) {
	var p struct {
		Tool      string          `json:"tool"`
		Arguments json.RawMessage `json:"arguments"`
	}
	_ = jsonv1.Unmarshal(m.Params, &p)
	known := s.spec.tools != nil && s.spec.callTool != nil &&
		slices.ContainsFunc(s.spec.tools.specs.Tools, func(t bus.ToolSpec) bool { return t.Name == p.Tool })
	if !known {
		names := []string{}
		if s.spec.tools != nil {
			for _, t := range s.spec.tools.specs.Tools {
				names = append(names, t.Name)
			}
		}
		out, _ := json.Marshal(map[string]any{"error": map[string]any{"message": fmt.Sprintf("Unsupported dynamic tool: %q.", boundName(p.Tool)), "supportedTools": names}})
		s.reply(m.ID, dynamicToolResult(false, string(out)))
		e := s.stream.ev(bus.TurnSystem)
		e.Text = bound(fmt.Sprintf("dynamic tool call refused: %q is not one of the run's tools", boundName(p.Tool)))
		s.emit(e)
		return
	}
	res := s.callTool(ctx, bus.RunTool{Tool: p.Tool, Arguments: p.Arguments})
	text := string(res.Output)
	if !res.OK {
		out, _ := json.Marshal(map[string]any{"error": map[string]any{"message": res.Error, "class": res.Class, "rule": res.Rule}, "output": res.Output})
		text = string(out)
	}
	s.reply(m.ID, dynamicToolResult(res.OK, text))
}

func dynamicToolResult(ok bool, text string) map[string]any {
	return map[string]any{"success": ok, "contentItems": []map[string]string{{"type": "inputText", "text": text}}}
}

// callTool runs one tool call; a cancel of the run that arrives meanwhile
// ends the call at once (the tracker's answer can take up to
// toolCallTimeout) and is kept for await, which ends the turn with it.
func (s *codexSession) callTool(ctx context.Context, req bus.RunTool) bus.ToolResult {
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case c := <-s.in.cancel:
			s.canceled = &c
			stop()
		case <-quit:
		}
	}()
	res := s.spec.callTool(cctx, req)
	close(quit)
	<-done
	return res
}

// runUSD is the run's cost as the thread's totals at the model's price
// say (the thread is the run's: one app-server per run); nil without
// totals or without a pricing entry for the model.
func (s *codexSession) runUSD() *float64 {
	if s.stream.totals == nil {
		return nil
	}
	p, ok := s.spec.cfg.Pricing[s.model]
	if !ok || s.model == "" {
		return nil
	}
	c := p.CostUSD(*s.stream.totals)
	return &c
}

// overBudget checks the thread's latest totals against the per-run caps
// and what remains of the issue's and of the day's: codex reports them
// during the turn, so a turn is stopped as soon as they reach one, not
// only at its end.
func (s *codexSession) overBudget() (capHit, bool) {
	caps := s.spec.cfg.Budget.PerRun
	if s.stream.totals == nil || (!caps.Capped() && s.spec.issue == nil && s.spec.day == nil) {
		return capHit{}, false
	}
	sp := spend{tokens: s.stream.totals.BudgetTokens(bus.AgentCodex)}
	if c := s.runUSD(); c != nil {
		sp.usd, sp.priced = *c, true
	}
	return overCaps(caps, s.spec.issue, s.spec.day, sp)
}

// budgetFail is the end of a turn whose totals reached a cap.
func (s *codexSession) budgetFail() *codexFail {
	if hit, over := s.overBudget(); over {
		hit.why += "; codex was stopped mid-turn"
		return &codexFail{status: bus.RunBudgetExceeded, err: hit.why, hit: &hit}
	}
	return nil
}
