package agentrunner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Stream limits (CONTRACT §5).
const (
	// MaxLineBytes caps one stream-json line; a longer line is dropped
	// (and counted) without being held in memory.
	MaxLineBytes = 10 << 20
	// MaxTextBytes caps the text kept in one turn event.
	MaxTextBytes = 64 << 10
	// MaxRawBytes caps the raw JSON kept for an unknown event.
	MaxRawBytes = 4 << 10
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
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, nil
	}
	if line[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var l claudeLine
	if err := unmarshal(line, &l); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if len(l.SessionID) > MaxNameBytes {
		return nil, fmt.Errorf("session_id of %d bytes (at most %d)", len(l.SessionID), MaxNameBytes)
	}
	if l.SessionID != "" && !validSessionID(l.SessionID) {
		return nil, fmt.Errorf("session_id %s refused: it becomes the argument of --resume on the next turn, so it must match %s and not start with -", safeid.Quote(l.SessionID), safeid.Rule)
	}
	ev := func(kind bus.TurnEventKind) bus.TurnEvent { return bus.TurnEvent{Kind: kind, SessionID: l.SessionID} }
	switch l.Type {
	case "":
		return nil, errors.New(`no "type" field`)
	case "system":
		switch l.Subtype {
		case "init":
			e := ev(bus.TurnInit)
			e.Text = bound("model " + l.Model + ", cwd " + l.Cwd)
			return []bus.TurnEvent{e}, nil
		case "api_retry":
			e := ev(bus.TurnAPIRetry)
			status := ""
			if l.ErrorStatus != nil {
				status = fmt.Sprintf(" (HTTP %d)", *l.ErrorStatus)
			}
			e.Text = bound(fmt.Sprintf("attempt %d/%d%s: %s", l.Attempt, l.MaxRetries, status, rawText(l.Error, unmarshal)))
			return []bus.TurnEvent{e}, nil
		}
		e := ev(bus.TurnSystem)
		e.Text = boundName(l.Subtype)
		e.Raw = boundRaw(line)
		return []bus.TurnEvent{e}, nil
	case "assistant", "user":
		if l.Message == nil {
			return nil, fmt.Errorf("%s event without a message", l.Type)
		}
		var out []bus.TurnEvent
		for _, b := range l.Message.Content {
			switch b.Type {
			case "text":
				e := ev(bus.TurnText)
				e.Text = bound(b.Text)
				out = append(out, e)
			case "thinking":
				e := ev(bus.TurnThinking)
				e.Text = bound(b.Thinking)
				out = append(out, e)
			case "tool_use":
				e := ev(bus.TurnToolUse)
				e.Tool = &bus.ToolCall{ID: boundName(b.ID), Name: boundName(b.Name), Input: boundRaw(b.Input)}
				out = append(out, e)
			case "tool_result":
				e := ev(bus.TurnToolResult)
				e.Tool = &bus.ToolCall{ID: boundName(b.ToolUseID), IsError: b.IsError}
				e.Text = bound(rawText(b.Content, unmarshal))
				out = append(out, e)
			default:
				e := ev(bus.TurnOther)
				e.Text = boundName(l.Type + "/" + b.Type)
				raw, _ := json.Marshal(b)
				e.Raw = boundRaw(raw)
				out = append(out, e)
			}
		}
		return out, nil
	case "result":
		if l.IsError == nil {
			return nil, errors.New(`result event without "is_error"`)
		}
		r := &bus.TurnResult{IsError: *l.IsError, Subtype: boundName(l.Subtype), NumTurns: l.NumTurns, Duration: l.DurationMS,
			CostUSD: l.TotalCostUSD, StopReason: boundName(l.StopReason)}
		if l.Usage != nil {
			r.Usage = *l.Usage
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
		e := ev(bus.TurnOutcome)
		e.Result = r
		e.Text = bound(l.Result)
		return []bus.TurnEvent{e}, nil
	}
	// A well-formed event of a type this build does not know (stream_event
	// with --include-partial-messages, or a newer CLI): kept, bounded.
	e := ev(bus.TurnOther)
	e.Text = boundName(l.Type)
	e.Raw = boundRaw(line)
	return []bus.TurnEvent{e}, nil
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

// bound cuts text to MaxTextBytes on a rune boundary.
func bound(s string) string { return boundTo(s, MaxTextBytes) }

// boundTo cuts s to max bytes on a rune boundary, saying how much it cut.
func boundTo(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + fmt.Sprintf("… [%d bytes cut]", len(s)-n)
}

// MaxNameBytes bounds the short strings of an agent event (a type, a tool's
// name or id, a session id), which a broken or hostile agent could make
// megabytes long: each agent event stays small enough to store and follow.
// maxDenials bounds the permission denials kept from one result.
const (
	MaxNameBytes = 1 << 10
	maxDenials   = 100
)

// boundName cuts a name to MaxNameBytes, as bound does text.
func boundName(s string) string { return boundTo(s, MaxNameBytes) }

// boundRaw keeps raw JSON only when it is small enough to stay valid.
func boundRaw(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxRawBytes || !json.Valid(raw) {
		b, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(raw)})
		return b
	}
	return append(json.RawMessage(nil), raw...)
}

// lineReader yields the lines of r, each at most max bytes; longer lines are
// consumed and reported as too long without being kept.
type lineReader struct {
	r   *bufio.Reader
	src *readSize
	max int
	buf []byte
}

// The agent's stdout is read with a small buffer until a read fills it
// (the agent wrote faster than it is read: a flood, or a long line), and
// with a large one from then on, so that a flood is read a pipe's worth
// (64 KiB) at a time. An agent writing an event at a time never needs
// more: with 50 such agents the large buffers were 3 MB of a heap of 12.
const (
	lineReaderSmall = 4 << 10
	lineReaderLarge = 64 << 10
)

// readSize remembers whether the last read filled what was asked of it.
type readSize struct {
	r    io.Reader
	full bool
}

func (s *readSize) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.full = n == len(p) && n > 0
	return n, err
}

func newLineReader(r io.Reader, max int) *lineReader {
	src := &readSize{r: r}
	return &lineReader{r: bufio.NewReaderSize(src, lineReaderSmall), src: src, max: max}
}

// next returns the next line (without the newline). tooLong reports a line
// over the limit (line is then nil). err is io.EOF at the end.
func (lr *lineReader) next() (line []byte, tooLong bool, err error) {
	if lr.src.full && lr.r.Size() < lineReaderLarge {
		// What the small buffer still holds is read first; nothing else
		// points into it (a line returned is a copy, lr.buf).
		rest, _ := lr.r.Peek(lr.r.Buffered())
		lr.r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), lr.src), lineReaderLarge)
	}
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if !tooLong {
			if len(lr.buf)+len(chunk) > lr.max+1 {
				tooLong = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && len(lr.buf) == 0 && !tooLong:
			return nil, false, err
		case tooLong:
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, true, err
			}
			return nil, true, nil
		}
		return bytes.TrimRight(lr.buf, "\r\n"), false, nil
	}
}

// tail keeps the last n bytes written to it (stderr).
type tail struct {
	n    int
	buf  []byte
	seen int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.seen += int64(len(p))
	if len(p) >= t.n {
		t.buf = append(t.buf[:0], p[len(p)-t.n:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.n; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	if t.seen > int64(len(t.buf)) {
		return fmt.Sprintf("[… %d bytes]", t.seen-int64(len(t.buf))) + string(t.buf)
	}
	return string(t.buf)
}
