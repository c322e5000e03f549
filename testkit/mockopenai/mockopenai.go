// Package mockopenai is a scripted stand-in for the OpenAI Responses API,
// good enough to drive the real `codex app-server` offline in tests.
//
// A Server answers each POST /v1/responses with the next Step of its
// script, streamed as server-sent events the way the real API streams
// (response.created, response.in_progress, response.output_item.added,
// response.output_text.delta, response.function_call_arguments.delta,
// response.output_item.done, response.completed with usage). When the
// script runs out every further request gets the text "done". Other
// routes get 404 and are recorded.
//
// Codex 0.169.0 offers the model (among others) the function tools
// exec_command {cmd, workdir, ...} — a shell command, run in the thread's
// cwd — and every dynamic tool of thread/start as a plain function tool
// by its name; it offers no apply_patch tool to a model it has no
// metadata for, so files are written with a shell command (WriteFile).
//
// Typical use:
//
//	srv := mockopenai.New(
//		mockopenai.WriteFile("hello.txt", "hi\n"), // relative to the thread's cwd
//		mockopenai.Text("Done."),
//	)
//	defer srv.Close()
//	bin, err := mockopenai.CLIPath()
//	env, err := mockopenai.CodexHome(t.TempDir(), srv.URL())
//	cmd := exec.Command(bin, "app-server")
//	cmd.Env = append(os.Environ(), env...)
//
// The package uses only the standard library.
package mockopenai

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/testkit"
	"github.com/symphony-oss/symphony/testkit/mockserver"
)

// maxBody bounds a request body read by the mock (codex sends ~30 KB).
const maxBody = 32 << 20

// Usage is the token accounting reported in response.completed. A zero
// Usage is replaced by {InputTokens: 100, OutputTokens: 20}.
type Usage struct {
	InputTokens  int
	OutputTokens int
	// CachedTokens is input_tokens_details.cached_tokens (part of InputTokens).
	CachedTokens int
}

// Total is InputTokens + OutputTokens, the API's total_tokens.
func (u Usage) Total() int { return u.InputTokens + u.OutputTokens }

// EffectiveUsage is the usage the server reports for st (the default when
// st.Usage is zero), so tests can sum what codex was told.
func EffectiveUsage(st Step) Usage {
	if st.Usage == (Usage{}) {
		return Usage{InputTokens: 100, OutputTokens: 20}
	}
	return st.Usage
}

// Call is one function_call output item: the model calling a tool.
type Call struct {
	// ID is the call_id; a random "call_mock_..." id when empty.
	ID string
	// Name of the function tool, e.g. "exec_command" or a dynamic tool's name.
	Name string
	// Arguments are sent JSON-encoded, as the API does.
	Arguments map[string]any
}

// Step is one scripted model answer: an HTTP error when Status is set,
// otherwise an optional assistant message followed by function calls.
type Step struct {
	// Text is the assistant message (omitted when empty and Calls is set).
	Text string
	// Calls are function_call items after the message.
	Calls []Call

	// Status, when non-zero, answers with this HTTP status and an OpenAI
	// error body {"error":{"message","type","code"}}.
	Status int
	// ErrorMessage defaults to "mock injected <status>".
	ErrorMessage string

	// Delay waits this long before answering (a slow model). The wait ends
	// early when the client goes away or the server closes.
	Delay time.Duration
	// Gate, when non-nil, holds the answer until the channel is closed (or
	// the client goes away, or the server closes); applied after Delay.
	Gate <-chan struct{}

	// Usage is reported in response.completed.
	Usage Usage
}

// Text is a step answering an assistant message (the turn ends there).
func Text(text string) Step { return Step{Text: text} }

// FunctionCall is a step calling one function tool by name, e.g. a
// dynamic tool given to thread/start.
func FunctionCall(name string, args map[string]any) Step {
	return Step{Calls: []Call{{Name: name, Arguments: args}}}
}

// Exec is a step running a shell command through codex's exec_command
// tool, in the thread's cwd.
func Exec(cmd string) Step {
	return FunctionCall("exec_command", map[string]any{"cmd": cmd, "login": false})
}

// WriteFile is a step writing content to name (relative to the thread's
// cwd) with a shell command through exec_command.
func WriteFile(name, content string) Step {
	return Exec("printf '%s' " + shellQuote(content) + " > " + shellQuote(name))
}

// Error is a step answering an HTTP error with an OpenAI error body.
func Error(status int, message string) Step {
	return Step{Status: status, ErrorMessage: message}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ToolOutput is one function_call_output item of a request: what a tool
// answered the model.
type ToolOutput struct {
	CallID string
	// Name is the tool the output answers, from the matching function_call.
	Name string
	// Output is the output text (content items' texts joined by newlines).
	Output string
}

// Request is what the server recorded about one HTTP request.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte

	// The fields below are filled for POST /v1/responses only.

	Model  string
	Stream bool
	// ThreadID is client_metadata.thread_id (codex's thread id), else
	// prompt_cache_key.
	ThreadID string
	// Tools are the names of the tools offered (a namespace's tools as
	// "namespace.tool").
	Tools []string
	// UserText is the text of the last user message in input.
	UserText string
	// ToolOutputs are the function_call_output items answering the calls
	// of the latest step that made calls (history resends every earlier
	// output; those are in AllToolOutputs). When the latest output answers
	// a call this server did not issue, it alone.
	ToolOutputs []ToolOutput
	// AllToolOutputs are every function_call_output item of input.
	AllToolOutputs []ToolOutput
	// NumInput is len(input) (the whole history codex resends).
	NumInput int
	// Step is the index of the script step that answered, or -1 when the
	// script had run out (the "done" fallback) or for other requests.
	Step int
}

// IsResponses reports whether r is a POST /v1/responses (a model call).
func (r Request) IsResponses() bool {
	return r.Method == http.MethodPost && r.Path == "/v1/responses"
}

// ToolResultText is the text of ToolOutputs, joined by
// newlines (like mockanthropic's field of that name).
func (r Request) ToolResultText() string {
	out := make([]string, 0, len(r.ToolOutputs))
	for _, o := range r.ToolOutputs {
		out = append(out, o.Output)
	}
	return strings.Join(out, "\n")
}

// HasTool reports whether the request offered a tool of that name.
func (r Request) HasTool(name string) bool {
	for _, t := range r.Tools {
		if t == name {
			return true
		}
	}
	return false
}

// Server is a running mock. It is safe for concurrent use; its script,
// recording and waits are mockserver's.
type Server struct {
	*mockserver.Script[Request, Step]

	calls  sync.Mutex     // guards issued and serial
	issued map[string]int // call_id -> serial of the answer that made the call
	serial int
}

// New starts a server on a random 127.0.0.1 port answering steps in order.
// It panics if it cannot listen (as httptest.NewServer does).
func New(steps ...Step) *Server {
	s := &Server{issued: map[string]int{}}
	s.Script = mockserver.Listen(mockserver.Options[Request, Step]{
		Name:     "mockopenai",
		IsCall:   Request.IsResponses,
		Fallback: func() Step { return Text("done") },
		SetStep:  func(r *Request, idx int) { r.Step = idx },
	}, steps...)
	s.Serve(s.serveHTTP)
	return s
}

// NewResponder starts a server whose every model answer is chosen by
// respond from the request (its tool outputs, its user text). Calls are
// serialized.
func NewResponder(respond func(Request) Step) *Server {
	s := New()
	s.Respond(respond)
	return s
}

// Responses returns the POST /v1/responses requests received so far.
func (s *Server) Responses() []Request { return s.Calls() }

// WaitResponses blocks until at least n POST /v1/responses requests have
// arrived (answered or not), ctx ends, or the server closes.
func (s *Server) WaitResponses(ctx context.Context, n int) error { return s.WaitCalls(ctx, n) }

// record keeps, of the request's tool outputs, those answering the latest
// answer's calls, records it, and returns its step with its call ids
// filled in.
func (s *Server) record(r Request) Step {
	s.calls.Lock()
	defer s.calls.Unlock()
	r.ToolOutputs = s.latestOutputs(r.AllToolOutputs)
	st := s.Record(r)
	if len(st.Calls) > 0 {
		s.serial++
		st.Calls = append([]Call(nil), st.Calls...)
		for i := range st.Calls {
			if st.Calls[i].ID == "" {
				st.Calls[i].ID = "call_mock_" + randomHex(16)
			}
			s.issued[st.Calls[i].ID] = s.serial
		}
	}
	return st
}

// latestOutputs keeps the outputs answering the same answer's calls as
// the last output does.
func (s *Server) latestOutputs(all []ToolOutput) []ToolOutput {
	if len(all) == 0 {
		return nil
	}
	last := all[len(all)-1]
	serial, ok := s.issued[last.CallID]
	if !ok {
		return []ToolOutput{last}
	}
	var out []ToolOutput
	for _, o := range all {
		if s.issued[o.CallID] == serial {
			out = append(out, o)
		}
	}
	return out
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	rec := Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	w.Header().Set("x-request-id", "req_mock_"+randomHex(12))
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v1/responses":
		s.record(rec)
		writeError(w, http.StatusNotFound, "mockopenai: no route for "+r.Method+" "+r.URL.Path)
		return
	case err != nil || len(body) > maxBody:
		s.record(rec)
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("mockopenai: body unreadable or over %d bytes", maxBody))
		return
	}
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.record(rec)
		writeError(w, http.StatusBadRequest, "mockopenai: bad JSON: "+err.Error())
		return
	}
	req.fill(&rec)
	st := s.record(rec)
	if !s.Wait(r.Context(), st.Delay, st.Gate) {
		return
	}
	if st.Status != 0 {
		msg := st.ErrorMessage
		if msg == "" {
			msg = fmt.Sprintf("mock injected %d", st.Status)
		}
		writeError(w, st.Status, msg)
		return
	}
	model := req.Model
	if model == "" {
		model = "mock-model"
	}
	writeStream(w, st, model)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	raw, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	typ := "server_error"
	if status >= 400 && status < 500 {
		typ = "invalid_request_error"
	}
	writeJSON(w, status, map[string]any{
		"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil},
	})
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// APIKeyEnv is the variable the generated config names as the provider's
// env_key; CodexHome sets it to a dummy value.
const APIKeyEnv = "MOCKOPENAI_API_KEY"

// Model is the model name the generated config selects.
const Model = "mock-model"

// CodexHome writes dir/config.toml pointing codex at the mock at url (as
// URL returns it) and returns the environment that runs codex offline with
// its state in dir. Append it to os.Environ() (later entries win):
//
//	env, err := mockopenai.CodexHome(dir, srv.URL())
//	cmd.Env = append(os.Environ(), env...)
//
// Retries are off so an injected error fails the turn at once; analytics,
// plugins and apps are off because they would reach the network.
func CodexHome(dir, url string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mockopenai: codex home: %w", err)
	}
	config := fmt.Sprintf(`model = %q
model_provider = "mock"

[model_providers.mock]
name = "mock"
base_url = %q
wire_api = "responses"
env_key = %q
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
`, Model, strings.TrimSuffix(url, "/")+"/v1", APIKeyEnv)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("mockopenai: codex home: %w", err)
	}
	return []string{
		"CODEX_HOME=" + dir,
		APIKeyEnv + "=dummy",
		"RUST_LOG=error",
	}, nil
}

// InstallHint says how to install the CLI that CLIPath looks for.
const InstallHint = "install it with `go tool task tools` (runs `npm install @openai/codex@0.169.0` in <module root>/.tools/codex), or point $CODEX_CLI at a codex binary"

// CLIPath finds the codex CLI: $CODEX_CLI if set, else
// <module root>/.tools/codex/node_modules/.bin/codex, the module root being
// the nearest directory above the working directory holding go.mod.
func CLIPath() (string, error) {
	return testkit.ToolPath("codex CLI", "CODEX_CLI", "codex", "codex", InstallHint)
}
