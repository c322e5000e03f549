package mockanthropic_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/testkit/mockanthropic"
)

const cliTimeout = 60 * time.Second

// cliRun is one finished invocation of the real claude CLI.
type cliRun struct {
	lines    []map[string]any
	stdout   string
	stderr   string
	exitCode int
	took     time.Duration
}

// result returns the stream's "result" line, failing the test without one.
func (r cliRun) result(t *testing.T) map[string]any {
	t.Helper()
	for _, l := range r.lines {
		if l["type"] == "result" {
			return l
		}
	}
	t.Fatalf("no result line (exit %d)\nstdout:\n%s\nstderr:\n%s", r.exitCode, r.stdout, r.stderr)
	return nil
}

// sessionIDs returns every distinct session_id of the stream.
func (r cliRun) sessionIDs() []string {
	seen := map[string]bool{}
	var ids []string
	for _, l := range r.lines {
		if id, ok := l["session_id"].(string); ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// cli returns the claude binary or fails: these tests never skip.
func cli(t *testing.T) string {
	t.Helper()
	bin, err := mockanthropic.CLIPath()
	if err != nil {
		t.Fatalf("the real claude CLI is required: %v", err)
	}
	return bin
}

// runCLI runs `claude -p prompt --output-format stream-json --verbose
// --permission-mode acceptEdits extra...` in dir against srv.
func runCLI(t *testing.T, srv *mockanthropic.Server, dir, configDir, home, prompt string, extra ...string) cliRun {
	t.Helper()
	run, err := execCLI(cli(t), srv, dir, configDir, home, prompt, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("claude -p %q %v: exit %d in %s, %d stream lines", prompt, extra, run.exitCode, run.took.Round(time.Millisecond), len(run.lines))
	return run
}

// execCLI is runCLI without the testing.T, for use from other goroutines.
func execCLI(bin string, srv *mockanthropic.Server, dir, configDir, home, prompt string, extra ...string) (cliRun, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	args := append([]string{"-p", prompt, "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Env = append(cmd.Env, mockanthropic.Env(srv.URL(), configDir)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	run := cliRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		return run, fmt.Errorf("claude did not finish within %s\nstdout:\n%s\nstderr:\n%s", cliTimeout, run.stdout, run.stderr)
	}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		run.exitCode = exitErr.ExitCode()
	case err != nil:
		return run, fmt.Errorf("run claude: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(run.stdout))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return run, fmt.Errorf("stdout line is not JSON: %w\n%s", err, line)
		}
		run.lines = append(run.lines, m)
	}
	return run, nil
}

// dirs makes a work dir, a config dir and a home dir, with symlinks resolved
// (the CLI reports the real path).
func dirs(t *testing.T) (work, config, home string) {
	t.Helper()
	var out [3]string
	for i := range out {
		d, err := filepath.EvalSymlinks(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out[0], out[1], out[2]
}

func logRequests(t *testing.T, srv *mockanthropic.Server) {
	t.Helper()
	for i, r := range srv.Requests() {
		t.Logf("request %d: %s %s?%s model=%q stream=%v cwd=%q session=%q messages=%d tool_result=%v step=%d body=%dB",
			i, r.Method, r.Path, r.Query, r.Model, r.Stream, r.Cwd, r.SessionID, r.NumMessages, r.ToolResult, r.Step, len(r.Body))
	}
}

// TestRealCLIWriteAndResume: a Write tool_use then end_turn makes the real
// CLI write the file; --resume continues the same session.
func TestRealCLIWriteAndResume(t *testing.T) {
	t.Parallel()
	work, config, home := dirs(t)
	srv := mockanthropic.New(
		mockanthropic.Step{Text: "I'll create hello.txt.", Tool: &mockanthropic.Tool{
			Name:  "Write",
			Input: map[string]any{"file_path": "hello.txt", "content": "hello from mock\n"},
		}},
		mockanthropic.Step{Text: "Done: I created hello.txt.", Usage: mockanthropic.Usage{
			InputTokens: 300, OutputTokens: 7, CacheReadInputTokens: 50,
		}},
	)
	defer srv.Close()

	// (a) the first turn really writes the file.
	run := runCLI(t, srv, work, config, home, "write hello.txt")
	logRequests(t, srv)
	res := run.result(t)
	if res["is_error"] != false {
		t.Fatalf("result is_error = %v, want false: %v", res["is_error"], res)
	}
	if res["result"] != "Done: I created hello.txt." {
		t.Errorf("result text = %q", res["result"])
	}
	got, err := os.ReadFile(filepath.Join(work, "hello.txt"))
	if err != nil {
		t.Fatalf("the CLI did not write the file: %v\nstdout:\n%s", err, run.stdout)
	}
	if string(got) != "hello from mock\n" {
		t.Errorf("hello.txt = %q", got)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("messages requests = %d, want 2", len(msgs))
	}
	for i, m := range msgs {
		if m.Cwd != work {
			t.Errorf("request %d: cwd %q, want %q", i, m.Cwd, work)
		}
		if m.Model == "" || !m.Stream || m.Step != i {
			t.Errorf("request %d: model %q stream %v step %d", i, m.Model, m.Stream, m.Step)
		}
	}
	ids := run.sessionIDs()
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("session ids = %v, want one", ids)
	}
	session := ids[0]
	for i, m := range msgs {
		if m.SessionID != session {
			t.Errorf("request %d: session %q, want %q", i, m.SessionID, session)
		}
	}
	if msgs[0].ToolResult || !msgs[1].ToolResult || msgs[1].ToolResultError {
		t.Errorf("tool_result flags: first %v, second %v (error %v)", msgs[0].ToolResult, msgs[1].ToolResult, msgs[1].ToolResultError)
	}
	usage, _ := res["usage"].(map[string]any)
	if usage["output_tokens"] != float64(20+7) || usage["cache_read_input_tokens"] != float64(50) {
		t.Errorf("usage = %v", usage)
	}

	// (b) --resume in the same dir and config dir keeps the session.
	srv.Append(mockanthropic.Text("resumed"))
	run = runCLI(t, srv, work, config, home, "say it again", "--resume", session)
	logRequests(t, srv)
	res = run.result(t)
	if res["is_error"] != false || res["result"] != "resumed" {
		t.Fatalf("resume result: %v", res)
	}
	if ids := run.sessionIDs(); len(ids) != 1 || ids[0] != session {
		t.Errorf("resume session ids = %v, want [%s]", ids, session)
	}
	msgs = srv.Messages()
	if len(msgs) != 3 {
		t.Fatalf("messages requests = %d, want 3", len(msgs))
	}
	if last := msgs[2]; last.NumMessages <= msgs[1].NumMessages || last.Cwd != work || last.Step != 2 || last.SessionID != session {
		t.Errorf("resumed request: %d messages (before %d), cwd %q, step %d, session %q", last.NumMessages, msgs[1].NumMessages, last.Cwd, last.Step, last.SessionID)
	}
}

// TestRealCLIServerError: an HTTP 500 ends the run with is_error true.
func TestRealCLIServerError(t *testing.T) {
	t.Parallel()
	work, config, home := dirs(t)
	srv := mockanthropic.New(mockanthropic.Error(500, "mock injected 500"))
	defer srv.Close()
	run := runCLI(t, srv, work, config, home, "hello")
	logRequests(t, srv)
	res := run.result(t)
	if res["is_error"] != true {
		t.Fatalf("result is_error = %v, want true: %v", res["is_error"], res)
	}
	if res["api_error_status"] != float64(500) {
		t.Errorf("api_error_status = %v", res["api_error_status"])
	}
	if s, _ := res["result"].(string); !strings.Contains(s, "mock injected 500") {
		t.Errorf("result = %q", s)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("messages requests = %d, want 1 (no retries)", n)
	}
}

// TestRealCLIGatedAnswer: a gated step holds the CLI until released, which
// a test can observe with WaitMessages instead of sleeping.
func TestRealCLIGatedAnswer(t *testing.T) {
	t.Parallel()
	work, config, home := dirs(t)
	gate := make(chan struct{})
	srv := mockanthropic.New(mockanthropic.Step{Text: "slow answer", Gate: gate})
	defer srv.Close()
	bin := cli(t)
	type outcome struct {
		run cliRun
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		run, err := execCLI(bin, srv, work, config, home, "hello")
		done <- outcome{run, err}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	if err := srv.WaitMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		t.Fatalf("CLI finished before the gate opened: %v %s", o.err, o.run.stdout)
	default:
	}
	close(gate)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	res := o.run.result(t)
	if res["is_error"] != false || res["result"] != "slow answer" {
		t.Fatalf("result: %v", res)
	}
}

// TestStreamWireFormat checks the SSE event sequence with a plain client.
func TestStreamWireFormat(t *testing.T) {
	t.Parallel()
	srv := mockanthropic.New(mockanthropic.Step{
		Text: "héllo wörld",
		Tool: &mockanthropic.Tool{Name: "Write", Input: map[string]any{"file_path": "a.txt", "content": "x"}},
	})
	defer srv.Close()
	body := `{"model":"claude-x","stream":true,"system":[{"type":"text","text":"a"},{"type":"text","text":"env\n - Primary working directory: /srv/ws/demo\n - more"}],"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(srv.URL()+"/v1/messages?beta=true", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q", ct)
	}
	var events []string
	var text, partial strings.Builder
	var stop string
	sc := bufio.NewScanner(resp.Body)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			events = append(events, e)
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(data), &raw); err != nil {
			t.Fatal(err)
		}
		if raw["type"] != event {
			t.Errorf("data type %v under event %q", raw["type"], event)
		}
		if delta, ok := raw["delta"].(map[string]any); ok {
			if s, ok := delta["text"].(string); ok {
				text.WriteString(s)
			}
			if s, ok := delta["partial_json"].(string); ok {
				partial.WriteString(s)
			}
			if s, ok := delta["stop_reason"].(string); ok {
				stop = s
			}
		}
	}
	want := "message_start ping content_block_start content_block_delta content_block_delta content_block_stop content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	if text.String() != "héllo wörld" || stop != "tool_use" {
		t.Errorf("text %q stop %q", text.String(), stop)
	}
	var input map[string]any
	if err := json.Unmarshal([]byte(partial.String()), &input); err != nil || input["file_path"] != "/srv/ws/demo/a.txt" {
		t.Errorf("tool input %q (%v)", partial.String(), err)
	}
	if r := srv.Messages(); len(r) != 1 || r[0].Cwd != "/srv/ws/demo" || r[0].Model != "claude-x" || r[0].Query != "beta=true" {
		t.Errorf("recorded %+v", r)
	}
}

// TestNonStreamingAndFallback: stream:false gets a JSON message; after the
// script, "done"; errors carry the Anthropic body; HEAD/GET answer 200.
func TestNonStreamingAndFallback(t *testing.T) {
	t.Parallel()
	srv := mockanthropic.New(mockanthropic.Text("one"), mockanthropic.Error(529, "busy"))
	defer srv.Close()
	post := func() (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL()+"/v1/messages", "application/json", strings.NewReader(`{"model":"m","messages":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%v: %s", err, raw)
		}
		return resp.StatusCode, m
	}
	text := func(m map[string]any) string {
		c, _ := m["content"].([]any)
		if len(c) != 1 {
			return ""
		}
		b, _ := c[0].(map[string]any)
		s, _ := b["text"].(string)
		return s
	}
	if code, m := post(); code != 200 || text(m) != "one" || m["stop_reason"] != "end_turn" {
		t.Errorf("step 0: %d %v", code, m)
	}
	if code, m := post(); code != 529 || m["type"] != "error" || m["error"].(map[string]any)["type"] != "overloaded_error" || m["error"].(map[string]any)["message"] != "busy" {
		t.Errorf("step 1: %d %v", code, m)
	}
	if code, m := post(); code != 200 || text(m) != "done" {
		t.Errorf("fallback: %d %v", code, m)
	}
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, srv.URL()+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s /: %d", method, resp.StatusCode)
		}
	}
	if r := srv.Messages(); len(r) != 3 || r[2].Step != -1 {
		t.Errorf("messages %+v", r)
	}
	if n := len(srv.Requests()); n != 5 {
		t.Errorf("requests = %d, want 5", n)
	}
}

// TestDelayAbandonedOnClose: Close does not wait for a pending delay.
func TestDelayAbandonedOnClose(t *testing.T) {
	t.Parallel()
	srv := mockanthropic.New(mockanthropic.Step{Text: "late", Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL()+"/v1/messages", "application/json", strings.NewReader(`{"stream":true}`))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	if err := srv.WaitMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close blocked on a delayed answer")
	}
	<-errc
}

func TestCLIPathMentionsInstall(t *testing.T) {
	t.Setenv("CLAUDE_CLI", filepath.Join(t.TempDir(), "missing"))
	_, err := mockanthropic.CLIPath()
	if err == nil || !strings.Contains(err.Error(), "go tool task tools") {
		t.Fatalf("CLIPath error = %v", err)
	}
}
