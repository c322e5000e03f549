package agentrunner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// claudeLine is one stream-json line of the claude CLI. Only the fields
// Symphony uses are decoded; the type field discriminates.
type claudeLine struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype"`
	SessionID string `json:"session_id"`
	// system/init
	Cwd   string `json:"cwd"`
	Model string `json:"model"`
	// system/api_retry
	Attempt     int             `json:"attempt"`
	MaxRetries  int             `json:"max_retries"`
	ErrorStatus *int            `json:"error_status"`
	Error       json.RawMessage `json:"error"`
	// assistant, user
	Message *struct {
		Content []contentBlock `json:"content"`
		// ID and Usage are the API message's: claude prints one line per
		// content block, each with the message's id and its usage so far
		// (read leniently: a malformed one is no usage, not a bad line).
		ID    json.RawMessage `json:"id"`
		Usage json.RawMessage `json:"usage"`
	} `json:"message"`
	// result
	IsError           *bool             `json:"is_error"`
	Result            string            `json:"result"`
	NumTurns          int               `json:"num_turns"`
	DurationMS        int64             `json:"duration_ms"`
	StopReason        string            `json:"stop_reason"`
	TotalCostUSD      *float64          `json:"total_cost_usd"`
	APIErrorStatus    *int              `json:"api_error_status"`
	Usage             *bus.Usage        `json:"usage"`
	PermissionDenials []json.RawMessage `json:"permission_denials"`
}

type contentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// unmarshalFunc decodes JSON into a value, as json.Unmarshal does.
type unmarshalFunc func([]byte, any) error

// parseClaudeLine turns one line into zero or more turn events (an
// assistant message may carry several blocks). It never panics; a line that
// is not a JSON object with a string type is an error.
//
// Every line an agent prints passes here, so it decodes with the v1 API of
// go-json-experiment/json (the json/v2 engine keeping encoding/json's
// behaviour), which validates and decodes in one pass where encoding/json
// scans every line twice; a fuzz target checks both give the same events.
func parseClaudeLine(line []byte) ([]bus.TurnEvent, error) {
	return parseClaudeLineWith(line, jsonv1.Unmarshal)
}

// validSessionID reports whether a session id the agent gave may be passed
// back to it on the command line (`--resume <id>`): the identifier rule of
// SECURITY.md, and no leading dash, which the CLI's parser would take for
// a flag (the rule alone lets "--dangerously-skip-permissions" through).
// Real ids are UUIDs.
func validSessionID(id string) bool { return safeid.Valid(id) && id[0] != '-' }

func parseClaudeLineWith(line []byte, unmarshal unmarshalFunc) ([]bus.TurnEvent, error) {
	evs, _, err := parseClaudeLineMeta(line, unmarshal)
	return evs, err
}

// lineMeta is what a line says about the turn's spend before its result:
// the model (system/init) and an assistant message's id and usage.
type lineMeta struct {
	init  bool
	model string
	msgID string
	usage *bus.Usage
}

// parseClaudeLineMeta is parseClaudeLineWith with the line's lineMeta.
func parseClaudeLineMeta(line []byte, unmarshal unmarshalFunc) ([]bus.TurnEvent, lineMeta, error) {
	var meta lineMeta
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, meta, nil
	}
	if line[0] != '{' {
		return nil, meta, errors.New("not a JSON object")
	}
	var l claudeLine
	if err := unmarshal(line, &l); err != nil {
		return nil, meta, fmt.Errorf("invalid JSON: %v", err)
	}
	if len(l.SessionID) > MaxNameBytes {
		return nil, meta, fmt.Errorf("session_id of %d bytes (at most %d)", len(l.SessionID), MaxNameBytes)
	}
	if l.SessionID != "" && !validSessionID(l.SessionID) {
		return nil, meta, fmt.Errorf("session_id %s refused: it becomes the argument of --resume on the next turn, so it must match %s and not start with -", safeid.Quote(l.SessionID), safeid.Rule)
	}
	ev := func(kind bus.TurnEventKind) bus.TurnEvent { return bus.TurnEvent{Kind: kind, SessionID: l.SessionID} }
	switch l.Type {
	case "":
		return nil, meta, errors.New(`no "type" field`)
	case "system":
		switch l.Subtype {
		case "init":
			meta.init, meta.model = true, boundName(strings.TrimSpace(l.Model))
			e := ev(bus.TurnInit)
			e.Text = bound("model " + l.Model + ", cwd " + l.Cwd)
			return []bus.TurnEvent{e}, meta, nil
		case "api_retry":
			e := ev(bus.TurnAPIRetry)
			status := ""
			if l.ErrorStatus != nil {
				status = fmt.Sprintf(" (HTTP %d)", *l.ErrorStatus)
			}
			e.Text = bound(fmt.Sprintf("attempt %d/%d%s: %s", l.Attempt, l.MaxRetries, status, rawText(l.Error, unmarshal)))
			return []bus.TurnEvent{e}, meta, nil
		}
		e := ev(bus.TurnSystem)
		e.Text = boundName(l.Subtype)
		e.Raw = boundRaw(line)
		return []bus.TurnEvent{e}, meta, nil
	case "assistant", "user":
		if l.Message == nil {
			return nil, meta, fmt.Errorf("%s event without a message", l.Type)
		}
		if l.Type == "assistant" {
			meta.msgID, meta.usage = l.messageUsage(unmarshal)
		}
		return l.messageEvents(unmarshal), meta, nil
	case "result":
		if l.IsError == nil {
			return nil, meta, errors.New(`result event without "is_error"`)
		}
		e := ev(bus.TurnOutcome)
		e.Result = l.result(unmarshal)
		e.Text = bound(l.Result)
		return []bus.TurnEvent{e}, meta, nil
	}
	// A well-formed event of a type this build does not know (stream_event
	// with --include-partial-messages, or a newer CLI): kept, bounded.
	e := ev(bus.TurnOther)
	e.Text = boundName(l.Type)
	e.Raw = boundRaw(line)
	return []bus.TurnEvent{e}, meta, nil
}

// rawText renders a JSON value as text: a string as itself, a list of
// {type:text,text} blocks as their texts, anything else as JSON.
func rawText(raw json.RawMessage, unmarshal unmarshalFunc) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if unmarshal(raw, &blocks) == nil {
		var parts []string
		for _, b := range blocks {
			if b.Text != "" {
				parts = append(parts, b.Text)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, "\n")
		}
	}
	return string(raw)
}

// event is an event of the line's kind and session.
func (l *claudeLine) event(kind bus.TurnEventKind) bus.TurnEvent {
	return bus.TurnEvent{Kind: kind, SessionID: l.SessionID}
}

// messageEvents are the events of an assistant or user message: one per
// content block.
func (l *claudeLine) messageEvents(unmarshal unmarshalFunc) []bus.TurnEvent {
	var out []bus.TurnEvent
	for _, b := range l.Message.Content {
		switch b.Type {
		case "text":
			e := l.event(bus.TurnText)
			e.Text = bound(b.Text)
			out = append(out, e)
		case "thinking":
			e := l.event(bus.TurnThinking)
			e.Text = bound(b.Thinking)
			out = append(out, e)
		case "tool_use":
			e := l.event(bus.TurnToolUse)
			e.Tool = &bus.ToolCall{ID: boundName(b.ID), Name: boundName(b.Name), Input: boundRaw(b.Input)}
			out = append(out, e)
		case "tool_result":
			e := l.event(bus.TurnToolResult)
			e.Tool = &bus.ToolCall{ID: boundName(b.ToolUseID), IsError: b.IsError}
			e.Text = bound(rawText(b.Content, unmarshal))
			out = append(out, e)
		default:
			e := l.event(bus.TurnOther)
			e.Text = boundName(l.Type + "/" + b.Type)
			raw, _ := json.Marshal(b)
			e.Raw = boundRaw(raw)
			out = append(out, e)
		}
	}
	return out
}

// messageUsage is an assistant message's id (bounded) and usage (counts
// clamped to zero); nil usage when the line has none or a malformed one.
func (l *claudeLine) messageUsage(unmarshal unmarshalFunc) (string, *bus.Usage) {
	var id string
	if len(l.Message.ID) > 0 && unmarshal(l.Message.ID, &id) != nil {
		id = ""
	}
	if len(l.Message.Usage) == 0 || string(l.Message.Usage) == "null" {
		return boundName(id), nil
	}
	var u bus.Usage
	if unmarshal(l.Message.Usage, &u) != nil {
		return boundName(id), nil
	}
	u = u.Clamped()
	return boundName(id), &u
}

// result is the result line's outcome, bounded.
func (l *claudeLine) result(unmarshal unmarshalFunc) *bus.TurnResult {
	r := &bus.TurnResult{IsError: *l.IsError, Subtype: boundName(l.Subtype), NumTurns: l.NumTurns, Duration: l.DurationMS,
		CostUSD: clampUSD(l.TotalCostUSD), StopReason: boundName(l.StopReason)}
	if l.Usage != nil {
		// Counts are taken as counts: a negative one is none.
		r.Usage = l.Usage.Clamped()
	}
	if l.APIErrorStatus != nil {
		r.APIStatus = *l.APIErrorStatus
	}
	for _, d := range l.PermissionDenials {
		var pd struct {
			ToolName string `json:"tool_name"`
		}
		if len(r.PermissionDenials) == maxDenials {
			break
		}
		if unmarshal(d, &pd) == nil && pd.ToolName != "" {
			r.PermissionDenials = append(r.PermissionDenials, boundName(pd.ToolName))
		}
	}
	return r
}
