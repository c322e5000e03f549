package agentrunner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
)

// The codex app-server's stdout is JSON-RPC 2.0 without the "jsonrpc"
// member, one object per line: responses to Symphony's requests, requests
// of the server (approvals, dynamic tool calls, user input) and
// notifications (the turn's items, token usage, rate limits, its end).
// This file decodes a line and turns notifications into turn events; the
// session (codex_turn.go) answers requests and decides the outcome.

// rpcMessage is one line of the app-server. A response has an id and a
// result or an error; a request an id and a method; a notification a
// method alone.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *rpcError       `json:"error"`
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (e *rpcError) String() string {
	msg := boundName(e.Message)
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("%s (code %d)", msg, e.Code)
}

// isResponse: a reply to one of Symphony's requests.
func (m *rpcMessage) isResponse() bool { return len(m.ID) > 0 && m.Method == "" }

// isRequest: the server asks Symphony something and waits for the answer.
func (m *rpcMessage) isRequest() bool { return len(m.ID) > 0 && m.Method != "" }

// parseRPCLine decodes one line. It never panics; a line that is not a
// JSON object with a method or an id is an error naming what was wrong.
func parseRPCLine(line []byte) (*rpcMessage, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	if line[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var m rpcMessage
	if err := jsonv1.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if len(m.ID) > 0 && string(m.ID) == "null" {
		m.ID = nil
	}
	switch {
	case m.Method == "" && len(m.ID) == 0:
		return nil, errors.New(`neither "method" nor "id"`)
	case len(m.ID) > MaxNameBytes:
		return nil, fmt.Errorf("id of %d bytes (at most %d)", len(m.ID), MaxNameBytes)
	case len(m.ID) > 0 && m.ID[0] != '"' && (m.ID[0] < '0' || m.ID[0] > '9') && m.ID[0] != '-':
		return nil, errors.New("id is neither a number nor a string")
	case len(m.Method) > MaxNameBytes:
		return nil, fmt.Errorf("method of %d bytes (at most %d)", len(m.Method), MaxNameBytes)
	}
	return &m, nil
}

// codexItem is a thread item of item/started and item/completed (the
// fields Symphony records; the type discriminates).
type codexItem struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	// agentMessage, plan
	Text string `json:"text"`
	// reasoning: lists of strings (a userMessage's content is a list of
	// objects, so both are decoded by type)
	Summary json.RawMessage `json:"summary"`
	Content json.RawMessage `json:"content"`
	// commandExecution
	Command          string  `json:"command"`
	Cwd              string  `json:"cwd"`
	Status           string  `json:"status"`
	AggregatedOutput *string `json:"aggregatedOutput"`
	ExitCode         *int    `json:"exitCode"`
	DurationMS       *int64  `json:"durationMs"`
	// fileChange
	Changes []struct {
		Path string          `json:"path"`
		Kind json.RawMessage `json:"kind"`
	} `json:"changes"`
	// mcpToolCall, dynamicToolCall
	Server       string          `json:"server"`
	Tool         string          `json:"tool"`
	Arguments    json.RawMessage `json:"arguments"`
	Result       json.RawMessage `json:"result"`
	Error        json.RawMessage `json:"error"`
	Success      *bool           `json:"success"`
	ContentItems []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"contentItems"`
}

// codexTokens is one of thread/tokenUsage/updated's token counts.
type codexTokens struct {
	InputTokens           int64 `json:"inputTokens"`
	CachedInputTokens     int64 `json:"cachedInputTokens"`
	CacheWriteInputTokens int64 `json:"cacheWriteInputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
}

// usage maps codex's counts onto Symphony's: inputTokens (which include
// the cached ones, as OpenAI counts them) as input, cachedInputTokens as
// cache reads, cacheWriteInputTokens as cache creation. A negative count
// is read as none.
func (t codexTokens) usage() bus.Usage {
	return bus.Usage{InputTokens: t.InputTokens, OutputTokens: t.OutputTokens,
		CacheCreationInputTokens: t.CacheWriteInputTokens, CacheReadInputTokens: t.CachedInputTokens}.Clamped()
}

// codexParams are the fields of the notifications Symphony reads.
type codexParams struct {
	ThreadID string     `json:"threadId"`
	TurnID   string     `json:"turnId"`
	ItemID   string     `json:"itemId"`
	Delta    string     `json:"delta"`
	Item     *codexItem `json:"item"`
	// turn/started, turn/completed
	Turn *struct {
		ID     string          `json:"id"`
		Status string          `json:"status"`
		Error  *codexTurnError `json:"error"`
	} `json:"turn"`
	// thread/tokenUsage/updated: total is the thread's absolute count;
	// last (one request's) is never added up (spec §13.5).
	TokenUsage *struct {
		Total *codexTokens `json:"total"`
	} `json:"tokenUsage"`
	// error
	Error     *codexTurnError `json:"error"`
	WillRetry bool            `json:"willRetry"`
	// warning, configWarning
	Message string `json:"message"`
	Summary string `json:"summary"`
}

// codexTurnError is a turn's error (turn/completed, error).
type codexTurnError struct {
	Message           string          `json:"message"`
	CodexErrorInfo    json.RawMessage `json:"codexErrorInfo"`
	AdditionalDetails *string         `json:"additionalDetails"`
}

func (e *codexTurnError) String() string {
	s := e.Message
	if len(e.CodexErrorInfo) > 0 && string(e.CodexErrorInfo) != "null" {
		s += " [" + boundTo(string(e.CodexErrorInfo), 200) + "]"
	}
	if e.AdditionalDetails != nil && *e.AdditionalDetails != "" {
		s += ": " + *e.AdditionalDetails
	}
	return bound(s)
}

// maxOpenItems bounds the agent messages and reasoning items whose deltas
// are held at once (an item normally completes before the next starts).
const maxOpenItems = 64

// codexStream turns one session's notifications into turn events. It
// keeps what spans lines: the deltas of items not completed yet, the
// thread's latest absolute token totals, and how the turn ended.
type codexStream struct {
	thread string
	turnID string
	// deltas are the texts of agent messages and reasoning items streamed
	// so far, by item id: a completed item's own text wins, and what is
	// still open when the turn ends is flushed.
	deltas map[string]*openItem
	order  []string
	// totals are the thread's absolute token totals: per count, the
	// highest codex reported (a total that goes down is ignored, see
	// highWater).
	totals *bus.Usage
	// end is turn/completed's turn, once it arrived.
	end *turnEnding
}

type openItem struct {
	kind bus.TurnEventKind
	text strings.Builder
}

// turnEnding is how turn/completed said the turn ended.
type turnEnding struct {
	status string // completed, failed, interrupted
	err    string
	turnID string
}

func newCodexStream() *codexStream { return &codexStream{deltas: map[string]*openItem{}} }

// ev is an event of the stream's session (the thread).
func (s *codexStream) ev(kind bus.TurnEventKind) bus.TurnEvent {
	return bus.TurnEvent{Kind: kind, SessionID: s.thread}
}

// notification maps one notification to its events; line is the raw line
// kept (bounded) by events of methods Symphony does not know.
func (s *codexStream) notification(method string, params json.RawMessage, line []byte) ([]bus.TurnEvent, error) {
	var p codexParams
	if len(params) > 0 && string(params) != "null" {
		if err := jsonv1.Unmarshal(params, &p); err != nil {
			return nil, fmt.Errorf("%s: invalid params: %v", boundName(method), err)
		}
	}
	switch method {
	case "item/agentMessage/delta":
		s.delta(p.ItemID, bus.TurnText, p.Delta)
		return nil, nil
	case "item/reasoning/summaryTextDelta", "item/reasoning/textDelta":
		s.delta(p.ItemID, bus.TurnThinking, p.Delta)
		return nil, nil
	case "item/started":
		if p.Item == nil {
			return nil, errors.New("item/started without an item")
		}
		return s.itemStarted(p.Item), nil
	case "item/completed":
		if p.Item == nil {
			return nil, errors.New("item/completed without an item")
		}
		return s.itemCompleted(p.Item), nil
	case "thread/tokenUsage/updated":
		if p.TokenUsage == nil || p.TokenUsage.Total == nil {
			return nil, errors.New("thread/tokenUsage/updated without tokenUsage.total")
		}
		u := p.TokenUsage.Total.usage()
		if p.ThreadID != "" && s.thread != "" && p.ThreadID != s.thread {
			e := s.ev(bus.TurnOther)
			e.Text, e.Raw = "token totals of another thread", boundRaw(params)
			return []bus.TurnEvent{e}, nil
		}
		var decreased error
		if s.totals != nil {
			u, decreased = highWater(*s.totals, u)
		}
		s.totals = &u
		e := s.ev(bus.TurnSystem)
		e.Text = fmt.Sprintf("token totals: input %d (cached %d), output %d", u.InputTokens, u.CacheReadInputTokens, u.OutputTokens)
		e.Raw = boundRaw(params)
		totals := u
		e.Totals = &totals
		return []bus.TurnEvent{e}, decreased
	case "account/rateLimits/updated":
		e := s.ev(bus.TurnRateLimit)
		e.Text = method
		e.Raw = boundRaw(params)
		return []bus.TurnEvent{e}, nil
	case "error":
		e := s.ev(bus.TurnSystem)
		e.Text = "error"
		if p.Error != nil {
			e.Text = "error: " + p.Error.String()
		}
		if p.WillRetry {
			e.Kind = bus.TurnAPIRetry
		}
		e.Raw = boundRaw(params)
		return []bus.TurnEvent{e}, nil
	case "turn/completed":
		if p.Turn == nil {
			return nil, errors.New("turn/completed without a turn")
		}
		if (p.ThreadID != "" && s.thread != "" && p.ThreadID != s.thread) || (s.turnID != "" && p.Turn.ID != s.turnID) {
			e := s.ev(bus.TurnOther)
			e.Text, e.Raw = "turn/completed of another turn or thread", boundRaw(line)
			return []bus.TurnEvent{e}, nil
		}
		s.end = &turnEnding{status: boundName(p.Turn.Status), turnID: p.Turn.ID}
		if p.Turn.Error != nil {
			s.end.err = p.Turn.Error.String()
		}
		return s.flush(), nil
	case "item/commandExecution/outputDelta", "item/fileChange/outputDelta":
		// The completed item carries the aggregated output.
		return nil, nil
	case "turn/started", "thread/status/changed", "thread/started", "thread/readState/changed", "thread/name/updated",
		"turn/diff/updated", "turn/plan/updated", "serverRequest/resolved", "remoteControl/status/changed",
		"mcpServer/startupStatus/updated", "warning", "configWarning", "deprecationNotice":
		e := s.ev(bus.TurnSystem)
		e.Text = boundName(method)
		if m := orElse(p.Message, p.Summary); m != "" {
			e.Text += ": " + boundTo(m, MaxTextBytes-len(e.Text))
		}
		e.Raw = boundRaw(params)
		return []bus.TurnEvent{e}, nil
	}
	e := s.ev(bus.TurnOther)
	e.Text = boundName(method)
	e.Raw = boundRaw(line)
	return []bus.TurnEvent{e}, nil
}

// delta adds streamed text to its item.
func (s *codexStream) delta(id string, kind bus.TurnEventKind, text string) {
	it := s.deltas[id]
	if it == nil {
		if len(s.deltas) >= maxOpenItems {
			// An item that never completes must not hold memory for
			// the rest of the session: the oldest goes out as it is.
			return
		}
		it = &openItem{kind: kind}
		s.deltas[id] = it
		s.order = append(s.order, id)
	}
	if room := MaxTextBytes - it.text.Len(); room > 0 {
		it.text.WriteString(boundTo(text, room))
	}
}

// take removes an item's streamed text.
func (s *codexStream) take(id string) (string, bool) {
	it, ok := s.deltas[id]
	if !ok {
		return "", false
	}
	delete(s.deltas, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return it.text.String(), true
}

// flush emits what is still streaming when the turn ends.
func (s *codexStream) flush() []bus.TurnEvent {
	var out []bus.TurnEvent
	for _, id := range s.order {
		it := s.deltas[id]
		if it.text.Len() > 0 {
			e := s.ev(it.kind)
			e.Text = bound(it.text.String())
			out = append(out, e)
		}
	}
	clear(s.deltas)
	s.order = s.order[:0]
	return out
}

// itemStarted: a tool's start is its tool_use; messages and reasoning
// wait for their completion.
func (s *codexStream) itemStarted(it *codexItem) []bus.TurnEvent {
	switch it.Type {
	case "commandExecution", "fileChange", "mcpToolCall", "dynamicToolCall":
		return []bus.TurnEvent{s.toolUse(it)}
	}
	return nil
}

// toolUse is the tool_use of a tool item.
func (s *codexStream) toolUse(it *codexItem) bus.TurnEvent {
	e := s.ev(bus.TurnToolUse)
	var name string
	var input any
	switch it.Type {
	case "commandExecution":
		name, input = "command", map[string]string{"command": it.Command, "cwd": it.Cwd}
	case "fileChange":
		paths := make([]string, 0, len(it.Changes))
		for _, c := range it.Changes {
			paths = append(paths, c.Path)
		}
		name, input = "file_change", map[string]any{"paths": paths}
	case "mcpToolCall":
		name, input = "mcp:"+it.Server+"/"+it.Tool, it.Arguments
	case "dynamicToolCall":
		name, input = it.Tool, it.Arguments
	}
	raw, _ := json.Marshal(input)
	e.Tool = &bus.ToolCall{ID: boundName(it.ID), Name: boundName(name), Input: boundRaw(raw)}
	return e
}

// itemCompleted: a message or reasoning with its final text, a tool's
// result.
func (s *codexStream) itemCompleted(it *codexItem) []bus.TurnEvent {
	streamed, _ := s.take(it.ID)
	switch it.Type {
	case "agentMessage", "reasoning", "plan":
		kind, text := bus.TurnText, it.Text
		if it.Type == "reasoning" {
			var summary, content []string
			_ = jsonv1.Unmarshal(it.Summary, &summary)
			_ = jsonv1.Unmarshal(it.Content, &content)
			kind, text = bus.TurnThinking, strings.Join(append(summary, content...), "\n")
		}
		if text == "" {
			text = streamed
		}
		if text == "" {
			return nil
		}
		e := s.ev(kind)
		e.Text = bound(text)
		return []bus.TurnEvent{e}
	case "commandExecution", "fileChange", "mcpToolCall", "dynamicToolCall":
		return []bus.TurnEvent{s.toolResult(it)}
	case "userMessage":
		// The prompt, already recorded as the turn's prompt event.
		return nil
	}
	e := s.ev(bus.TurnOther)
	e.Text = boundName("item/" + it.Type)
	raw, _ := json.Marshal(it)
	e.Raw = boundRaw(raw)
	return []bus.TurnEvent{e}
}

// toolResult is the tool_result of a completed tool item: its status,
// exit code and output (bounded).
func (s *codexStream) toolResult(it *codexItem) bus.TurnEvent {
	e := s.ev(bus.TurnToolResult)
	failed := it.Status == "failed" || it.Status == "declined" || (it.ExitCode != nil && *it.ExitCode != 0) ||
		(it.Success != nil && !*it.Success) || (len(it.Error) > 0 && string(it.Error) != "null")
	e.Tool = &bus.ToolCall{ID: boundName(it.ID), IsError: failed}
	var b strings.Builder
	b.WriteString("status " + it.Status)
	if it.ExitCode != nil {
		fmt.Fprintf(&b, ", exit code %d", *it.ExitCode)
	}
	switch {
	case it.AggregatedOutput != nil && *it.AggregatedOutput != "":
		b.WriteString("\n" + *it.AggregatedOutput)
	case len(it.ContentItems) > 0:
		for _, c := range it.ContentItems {
			if c.Text != "" {
				b.WriteString("\n" + boundTo(c.Text, MaxTextBytes))
			}
		}
	case len(it.Result) > 0 && string(it.Result) != "null":
		b.WriteString("\n" + boundTo(string(it.Result), MaxTextBytes))
	}
	if len(it.Error) > 0 && string(it.Error) != "null" {
		b.WriteString("\nerror: " + boundTo(string(it.Error), MaxTextBytes))
	}
	for _, c := range it.Changes {
		b.WriteString("\n" + boundTo(strings.Trim(string(c.Kind), `"`), 64) + " " + boundTo(c.Path, MaxNameBytes))
		if b.Len() > MaxTextBytes {
			break
		}
	}
	e.Text = bound(b.String())
	return e
}

// highWater keeps, per count, the larger of the thread's totals so far and
// a new report: absolute totals only grow, and one that went down would
// let the mid-turn check pass a cap it had seen crossed and make the
// turn's usage (what the totals grew by) negative. A decrease is named in
// the error (recorded as a parse error); the higher figure stays.
func highWater(prev, next bus.Usage) (bus.Usage, error) {
	hw := bus.Usage{InputTokens: max(prev.InputTokens, next.InputTokens), OutputTokens: max(prev.OutputTokens, next.OutputTokens),
		CacheCreationInputTokens: max(prev.CacheCreationInputTokens, next.CacheCreationInputTokens),
		CacheReadInputTokens:     max(prev.CacheReadInputTokens, next.CacheReadInputTokens)}
	if hw == next {
		return hw, nil
	}
	return hw, fmt.Errorf("thread/tokenUsage/updated: the thread's totals went down (input %d, cached %d, output %d after input %d, cached %d, output %d); the decrease is ignored and the highest totals kept",
		next.InputTokens, next.CacheReadInputTokens, next.OutputTokens, prev.InputTokens, prev.CacheReadInputTokens, prev.OutputTokens)
}
