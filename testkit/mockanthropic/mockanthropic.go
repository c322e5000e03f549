// Package mockanthropic is a scripted stand-in for the Anthropic Messages API,
// good enough to drive the real `claude` CLI offline in tests.
//
// A Server answers each POST /v1/messages with the next Step of its script,
// streamed as server-sent events exactly like the real API (message_start,
// ping, content_block_start/delta/stop, message_delta, message_stop), or as a
// plain JSON message when the request says "stream": false. When the script
// runs out every further request gets the text "done" with stop_reason
// end_turn. HEAD and GET requests get 200; POST /v1/messages/count_tokens gets
// a token count without consuming a step.
//
// Typical use:
//
//	srv := mockanthropic.New(
//		mockanthropic.Write("hello.txt", "hi\n"), // relative: resolved against the CLI's cwd
//		mockanthropic.Text("Done."),
//	)
//	defer srv.Close()
//	bin, err := mockanthropic.CLIPath()
//	...
//	cmd := exec.Command(bin, "-p", "write hello.txt", "--output-format", "stream-json",
//		"--verbose", "--permission-mode", "acceptEdits")
//	cmd.Dir = workDir
//	cmd.Env = append(os.Environ(), mockanthropic.Env(srv.URL(), configDir)...)
//
// The package uses only the standard library.
package mockanthropic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/testkit"
	"github.com/symphony-oss/symphony/testkit/mockserver"
)

// Usage is the token accounting reported for one answer. A zero Usage is
// replaced by {InputTokens: 100, OutputTokens: 20}.
type Usage struct {
	InputTokens              int
	OutputTokens             int
	CacheCreationInputTokens int
	CacheReadInputTokens     int
}

// Tool is a tool_use block of an answer.
type Tool struct {
	// ID of the tool_use block; a random "toolu_mock_..." id when empty.
	ID string
	// Name of the tool, e.g. "Write", "Bash", "Edit".
	Name string
	// Input of the tool call. A relative "file_path" string is resolved
	// against the Primary working directory seen in the request (the CLI's
	// file tools require absolute paths).
	Input map[string]any
}

// Step is one scripted model answer: an HTTP error when Status is set,
// otherwise a message with an optional text block followed by an optional
// tool_use block.
type Step struct {
	// Text is the text block (omitted when empty and Tool is set).
	Text string
	// Tool, when set, adds a tool_use block; the stop_reason becomes "tool_use".
	Tool *Tool
	// StopReason overrides the stop_reason ("end_turn", or "tool_use" with Tool).
	StopReason string

	// Status, when non-zero, answers with this HTTP status and an Anthropic
	// error body {"type":"error","error":{"type":ErrorType,"message":ErrorMessage}}.
	Status int
	// ErrorType defaults from Status (e.g. api_error, overloaded_error).
	ErrorType string
	// ErrorMessage defaults to "mock injected <status>".
	ErrorMessage string

	// Delay waits this long before answering (a slow model). The wait ends
	// early when the client goes away or the server closes.
	Delay time.Duration
	// Gate, when non-nil, holds the answer until the channel is closed (or
	// the client goes away, or the server closes); applied after Delay.
	Gate <-chan struct{}

	// Usage is reported in message_start/message_delta (or the JSON body).
	Usage Usage
}

// Text is a step answering text with stop_reason end_turn.
func Text(text string) Step { return Step{Text: text} }

// ToolUse is a step answering one tool_use block (stop_reason tool_use).
func ToolUse(name string, input map[string]any) Step {
	return Step{Tool: &Tool{Name: name, Input: input}}
}

// Write is a step calling the Write tool. A relative filePath is resolved
// against the working directory the CLI reports in its request.
func Write(filePath, content string) Step {
	return ToolUse("Write", map[string]any{"file_path": filePath, "content": content})
}

// Error is a step answering an HTTP error with an Anthropic error body.
func Error(status int, message string) Step {
	return Step{Status: status, ErrorMessage: message}
}

// Request is what the server recorded about one HTTP request.
type Request struct {
	Method string
	Path   string // URL path without query, e.g. "/v1/messages"
	Query  string // raw query, e.g. "beta=true"
	Header http.Header
	Body   []byte

	// The fields below are filled for POST /v1/messages only.

	// Model is the request's "model".
	Model string
	// Stream is the request's "stream".
	Stream bool
	// Cwd is the " - Primary working directory: <dir>" the CLI put in its
	// system prompt ("" if absent).
	Cwd string
	// ToolResult reports whether the last message carries a tool_result
	// block; ToolResultError whether one of them has is_error true.
	ToolResult      bool
	ToolResultError bool
	// ToolResultText is the text of the last message's tool_result blocks
	// (what the tools answered), and ToolResultTools the names of the
	// tools they answer, from the tool_use blocks of the assistant
	// message before it ("mcp__symphony__linear_graphql").
	ToolResultText  string
	ToolResultTools []string
	// SessionID is the CLI session id the CLI puts in metadata.user_id
	// (a JSON string holding {"session_id": ...}); "" if absent.
	SessionID string
	// NumMessages is len(messages) (history included, e.g. after --resume).
	NumMessages int
	// Step is the index of the script step that answered, or -1 when the
	// script had run out (the "done" fallback) or for other requests.
	Step int
}

// IsMessages reports whether r is a POST /v1/messages (a model call).
func (r Request) IsMessages() bool {
	return r.Method == http.MethodPost && r.Path == "/v1/messages"
}

// Server is a running mock. It is safe for concurrent use; its script,
// recording and waits are mockserver's.
type Server struct {
	*mockserver.Script[Request, Step]
}

// New starts a server on a random 127.0.0.1 port answering steps in order.
// It panics if it cannot listen (as httptest.NewServer does).
func New(steps ...Step) *Server {
	s := &Server{}
	s.Script = mockserver.Listen(mockserver.Options[Request, Step]{
		Name:     "mockanthropic",
		IsCall:   Request.IsMessages,
		Fallback: func() Step { return Text("done") },
		SetStep:  func(r *Request, idx int) { r.Step = idx },
	}, steps...)
	s.Serve(s.serveHTTP)
	return s
}

// NewResponder starts a server whose every model answer is chosen by
// respond from the request (its cwd, whether it carries a tool result),
// for runs that interleave, like the demo's. respond must be safe to call
// from one request at a time (calls are serialized).
func NewResponder(respond func(Request) Step) *Server {
	s := New()
	s.Respond(respond)
	return s
}

// Messages returns the POST /v1/messages requests received so far.
func (s *Server) Messages() []Request { return s.Calls() }

// WaitMessages blocks until at least n POST /v1/messages requests have
// arrived (answered or not), ctx ends, or the server closes.
func (s *Server) WaitMessages(ctx context.Context, n int) error { return s.WaitCalls(ctx, n) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   body,
	}
	w.Header().Set("request-id", "req_mock_"+randomHex(12))

	switch {
	case r.Method == http.MethodHead || r.Method == http.MethodGet:
		s.Record(rec)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		s.Record(rec)
		writeJSON(w, http.StatusOK, map[string]any{"input_tokens": 100})
		return
	case r.Method != http.MethodPost || r.URL.Path != "/v1/messages":
		s.Record(rec)
		writeError(w, http.StatusNotFound, "not_found_error", "mockanthropic: no route for "+r.Method+" "+r.URL.Path)
		return
	}

	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.Record(rec)
		writeError(w, http.StatusBadRequest, "invalid_request_error", "mockanthropic: bad JSON: "+err.Error())
		return
	}
	rec.Model = req.Model
	rec.Stream = req.Stream
	rec.Cwd = req.cwd()
	rec.ToolResult, rec.ToolResultError = req.lastToolResult()
	rec.ToolResultText, rec.ToolResultTools = req.lastToolResultContent()
	rec.NumMessages = len(req.Messages)
	rec.SessionID = req.sessionID()
	st := s.Record(rec)

	if !s.Wait(r.Context(), st.Delay, st.Gate) {
		return
	}
	if st.Status != 0 {
		typ := st.ErrorType
		if typ == "" {
			typ = errorType(st.Status)
		}
		msg := st.ErrorMessage
		if msg == "" {
			msg = fmt.Sprintf("mock injected %d", st.Status)
		}
		writeError(w, st.Status, typ, msg)
		return
	}
	m := buildMessage(st, req.Model, rec.Cwd)
	if req.Stream {
		writeStream(w, m)
	} else {
		writeJSON(w, http.StatusOK, m.json())
	}
}

// messagesRequest is the part of a Messages API request the mock reads.
type messagesRequest struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	System   json.RawMessage `json:"system"`
	Metadata struct {
		UserID string `json:"user_id"`
	} `json:"metadata"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// sessionID reads the session id out of metadata.user_id.
func (m *messagesRequest) sessionID() string {
	var u struct {
		SessionID string `json:"session_id"`
	}
	if json.Unmarshal([]byte(m.Metadata.UserID), &u) != nil {
		return ""
	}
	return u.SessionID
}

var cwdPattern = regexp.MustCompile(`(?i)primary working directory:[ \t]*([^\r\n]+)`)

// cwd finds " - Primary working directory: <dir>" in the system prompt
// (the "system" field or role:"system" messages), else anywhere in messages.
func (m *messagesRequest) cwd() string {
	var system, other []string
	system = collectText(m.System, system)
	for _, msg := range m.Messages {
		if msg.Role == "system" {
			system = collectText(msg.Content, system)
		} else {
			other = collectText(msg.Content, other)
		}
	}
	for _, group := range [][]string{system, other} {
		for _, t := range group {
			if sm := cwdPattern.FindStringSubmatch(t); sm != nil {
				return strings.TrimSpace(sm[1])
			}
		}
	}
	return ""
}

// collectText appends the text of a string or an array of content blocks.
func collectText(raw json.RawMessage, out []string) []string {
	if len(raw) == 0 {
		return out
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return append(out, s)
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) == nil {
		for _, b := range blocks {
			if b.Text != "" {
				out = append(out, b.Text)
			}
		}
	}
	return out
}

// lastToolResult reports whether the last message has a tool_result block
// and whether any such block has is_error true.
func (m *messagesRequest) lastToolResult() (has, isErr bool) {
	if len(m.Messages) == 0 {
		return false, false
	}
	var blocks []struct {
		Type    string `json:"type"`
		IsError bool   `json:"is_error"`
	}
	if json.Unmarshal(m.Messages[len(m.Messages)-1].Content, &blocks) != nil {
		return false, false
	}
	for _, b := range blocks {
		if b.Type == "tool_result" {
			has = true
			isErr = isErr || b.IsError
		}
	}
	return has, isErr
}

// lastToolResultContent is the text of the last message's tool_result
// blocks and the names of the tools they answer.
func (m *messagesRequest) lastToolResultContent() (string, []string) {
	n := len(m.Messages)
	if n == 0 {
		return "", nil
	}
	type contentBlock struct {
		Type      string          `json:"type"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		ToolUseID string          `json:"tool_use_id"`
		Content   json.RawMessage `json:"content"`
	}
	var last []contentBlock
	if json.Unmarshal(m.Messages[n-1].Content, &last) != nil {
		return "", nil
	}
	names := map[string]string{}
	if n >= 2 {
		var prev []contentBlock
		if json.Unmarshal(m.Messages[n-2].Content, &prev) == nil {
			for _, b := range prev {
				if b.Type == "tool_use" {
					names[b.ID] = b.Name
				}
			}
		}
	}
	var text []string
	var tools []string
	for _, b := range last {
		if b.Type != "tool_result" {
			continue
		}
		text = collectText(b.Content, text)
		if name, ok := names[b.ToolUseID]; ok {
			tools = append(tools, name)
		}
	}
	return strings.Join(text, "\n"), tools
}

// message is one assistant answer in a wire-neutral form.
type message struct {
	id, model, stopReason string
	blocks                []block
	usage                 Usage
}

type block struct {
	typ       string // "text" or "tool_use"
	text      string
	toolID    string
	toolName  string
	toolInput []byte // JSON object
}

func buildMessage(st Step, model, cwd string) message {
	if model == "" {
		model = "claude-mock"
	}
	m := message{id: "msg_mock_" + randomHex(12), model: model, usage: st.Usage}
	if m.usage == (Usage{}) {
		m.usage = Usage{InputTokens: 100, OutputTokens: 20}
	}
	if st.Text != "" || st.Tool == nil {
		m.blocks = append(m.blocks, block{typ: "text", text: st.Text})
	}
	m.stopReason = "end_turn"
	if st.Tool != nil {
		id := st.Tool.ID
		if id == "" {
			id = "toolu_mock_" + randomHex(12)
		}
		input := map[string]any{}
		for k, v := range st.Tool.Input {
			input[k] = v
		}
		if p, ok := input["file_path"].(string); ok && p != "" && !filepath.IsAbs(p) && cwd != "" {
			input["file_path"] = filepath.Join(cwd, p)
		}
		raw, err := json.Marshal(input)
		if err != nil {
			raw = []byte("{}")
		}
		m.blocks = append(m.blocks, block{typ: "tool_use", toolID: id, toolName: st.Tool.Name, toolInput: raw})
		m.stopReason = "tool_use"
	}
	if st.StopReason != "" {
		m.stopReason = st.StopReason
	}
	return m
}

func (m message) usageJSON(outputTokens int) map[string]any {
	return map[string]any{
		"input_tokens":                m.usage.InputTokens,
		"output_tokens":               outputTokens,
		"cache_creation_input_tokens": m.usage.CacheCreationInputTokens,
		"cache_read_input_tokens":     m.usage.CacheReadInputTokens,
	}
}

func (b block) json(started bool) map[string]any {
	if b.typ == "text" {
		text := b.text
		if started {
			text = ""
		}
		return map[string]any{"type": "text", "text": text}
	}
	var input any = json.RawMessage(b.toolInput)
	if started {
		input = map[string]any{}
	}
	return map[string]any{"type": "tool_use", "id": b.toolID, "name": b.toolName, "input": input}
}

// json is the non-streaming response body.
func (m message) json() map[string]any {
	content := make([]any, 0, len(m.blocks))
	for _, b := range m.blocks {
		content = append(content, b.json(false))
	}
	return map[string]any{
		"id":            m.id,
		"type":          "message",
		"role":          "assistant",
		"model":         m.model,
		"content":       content,
		"stop_reason":   m.stopReason,
		"stop_sequence": nil,
		"usage":         m.usageJSON(m.usage.OutputTokens),
	}
}

// writeStream sends m as the Messages API's server-sent events.
func writeStream(w http.ResponseWriter, m message) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(event string, data map[string]any) {
		data["type"] = event
		raw, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, raw)
		if flusher != nil {
			flusher.Flush()
		}
	}
	send("message_start", map[string]any{"message": map[string]any{
		"id":            m.id,
		"type":          "message",
		"role":          "assistant",
		"model":         m.model,
		"content":       []any{},
		"stop_reason":   nil,
		"stop_sequence": nil,
		"usage":         m.usageJSON(1),
	}})
	send("ping", map[string]any{})
	for i, b := range m.blocks {
		send("content_block_start", map[string]any{"index": i, "content_block": b.json(true)})
		if b.typ == "text" {
			for _, chunk := range mockserver.Split(b.text, 2) {
				send("content_block_delta", map[string]any{"index": i, "delta": map[string]any{"type": "text_delta", "text": chunk}})
			}
		} else {
			for _, chunk := range mockserver.Split(string(b.toolInput), 2) {
				send("content_block_delta", map[string]any{"index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": chunk}})
			}
		}
		send("content_block_stop", map[string]any{"index": i})
	}
	send("message_delta", map[string]any{
		"delta": map[string]any{"stop_reason": m.stopReason, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": m.usage.OutputTokens},
	})
	send("message_stop", map[string]any{})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	raw, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{
		"type":  "error",
		"error": map[string]any{"type": typ, "message": msg},
	})
}

// errorType maps an HTTP status to the Anthropic error type.
func errorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	return "api_error"
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// Env returns the environment that runs the claude CLI offline against url
// with its state in configDir. Append it to os.Environ() (later entries win):
//
//	cmd.Env = append(os.Environ(), mockanthropic.Env(srv.URL(), dir)...)
func Env(url, configDir string) []string {
	return []string{
		"ANTHROPIC_BASE_URL=" + url,
		"ANTHROPIC_API_KEY=dummy",
		"CLAUDE_CONFIG_DIR=" + configDir,
		"DISABLE_TELEMETRY=1",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_ERROR_REPORTING=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"CLAUDE_CODE_MAX_RETRIES=0",
		"IS_SANDBOX=1",
	}
}

// InstallHint says how to install the CLI that CLIPath looks for.
const InstallHint = "install it with `go tool task tools` (runs `npm install @anthropic-ai/claude-code@2.1.197` in <module root>/.tools/claude), or point $CLAUDE_CLI at a claude binary"

// CLIPath finds the claude CLI: $CLAUDE_CLI if set, else
// <module root>/.tools/claude/node_modules/.bin/claude, the module root being
// the nearest directory above the working directory holding go.mod.
func CLIPath() (string, error) {
	return testkit.ToolPath("claude CLI", "CLAUDE_CLI", "claude", "claude", InstallHint)
}
