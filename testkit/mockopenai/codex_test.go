package mockopenai_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// sumUsage is what codex should report as the thread's total after steps.
func sumUsage(steps ...mockopenai.Step) (in, out, cached int) {
	for _, st := range steps {
		u := mockopenai.EffectiveUsage(st)
		in += u.InputTokens
		out += u.OutputTokens
		cached += u.CachedTokens
	}
	return in, out, cached
}

func assertTotal(t *testing.T, msgs []rpcMsg, steps ...mockopenai.Step) {
	t.Helper()
	in, out, cached := sumUsage(steps...)
	total := lastTotal(t, msgs)
	want := map[string]float64{"inputTokens": float64(in), "outputTokens": float64(out), "cachedInputTokens": float64(cached), "totalTokens": float64(in + out)}
	for k, v := range want {
		if total[k] != v {
			t.Errorf("tokenUsage.total.%s = %v, want %v (total %v)", k, total[k], v, total)
		}
	}
}

// TestCodexExecWritesFileAndCountsTokens drives two turns on one thread:
// the model writes a file with a shell command, codex reports the command
// item and the token totals the mock sent, cumulative across turns.
func TestCodexExecWritesFileAndCountsTokens(t *testing.T) {
	write := mockopenai.WriteFile("hello.txt", "hello from mock\n")
	write.Usage = mockopenai.Usage{InputTokens: 1000, OutputTokens: 30, CachedTokens: 400}
	say := mockopenai.Text("Done: wrote hello.txt.")
	say.Usage = mockopenai.Usage{InputTokens: 1100, OutputTokens: 12, CachedTokens: 1000}
	srv := mockopenai.New(write, say)
	defer srv.Close()
	cwd := t.TempDir()
	a := startAppServer(t, srv, false)
	thread := a.startThread(threadParams(cwd, "never"))

	msgs := a.turn(thread, "write hello.txt")
	if turn := completedTurn(t, msgs); turn["status"] != "completed" {
		t.Fatalf("turn status %v, want completed: %v", turn["status"], turn)
	}
	got, err := os.ReadFile(filepath.Join(cwd, "hello.txt"))
	if err != nil || string(got) != "hello from mock\n" {
		t.Fatalf("hello.txt = %q, %v; want the model's content", got, err)
	}
	cmds := completedItems(msgs, "commandExecution")
	if len(cmds) != 1 || cmds[0]["status"] != "completed" || cmds[0]["exitCode"] != float64(0) || !strings.Contains(cmds[0]["command"].(string), "hello.txt") {
		t.Fatalf("commandExecution items %v", cmds)
	}
	if msg := completedItems(msgs, "agentMessage"); len(msg) != 1 || msg[0]["text"] != "Done: wrote hello.txt." {
		t.Fatalf("agentMessage items %v", msg)
	}
	if len(byMethod(msgs, "item/agentMessage/delta")) == 0 {
		t.Error("no item/agentMessage/delta")
	}
	assertTotal(t, msgs, write, say)
	reqs := srv.Responses()
	if len(reqs) != 2 || reqs[0].ThreadID != thread || !reqs[0].HasTool("exec_command") {
		t.Fatalf("responses requests: %d, thread %q (want %q), tools %v", len(reqs), reqs[0].ThreadID, thread, reqs[0].Tools)
	}
	if out := reqs[1].ToolOutputs; len(out) != 1 || out[0].Name != "exec_command" {
		t.Fatalf("second request's tool outputs %+v, want the exec_command's", out)
	}

	// A continuation turn on the same thread: totals keep adding up.
	again := mockopenai.Exec("cat hello.txt")
	fin := mockopenai.Text("It says hello.")
	srv.Append(again, fin)
	msgs = a.turn(thread, "read it back")
	if turn := completedTurn(t, msgs); turn["status"] != "completed" {
		t.Fatalf("second turn status %v", turn["status"])
	}
	assertTotal(t, msgs, write, say, again, fin)
	reqs = srv.Responses()
	if len(reqs) != 4 || !strings.Contains(reqs[3].ToolResultText(), "hello from mock") || reqs[2].UserText != "read it back" {
		t.Fatalf("continuation requests: %d, tool output %q, user text %q", len(reqs), reqs[len(reqs)-1].ToolResultText(), reqs[2].UserText)
	}
}

// TestCodexModelError500 checks an HTTP 500 from the model fails the turn
// at once (retries are off) with an error notification.
func TestCodexModelError500(t *testing.T) {
	srv := mockopenai.New(mockopenai.Error(500, "boom"))
	defer srv.Close()
	a := startAppServer(t, srv, false)
	thread := a.startThread(threadParams(t.TempDir(), "never"))
	msgs := a.turn(thread, "say hi")
	turn := completedTurn(t, msgs)
	if turn["status"] != "failed" || dig(turn, "error", "message") == nil {
		t.Fatalf("turn %v, want failed with an error", turn)
	}
	errs := byMethod(msgs, "error")
	if len(errs) != 1 || errs[0]["willRetry"] != false || dig(errs[0], "error", "codexErrorInfo") == nil {
		t.Fatalf("error notifications %v", errs)
	}
	t.Logf("error notification: %v", errs[0])
	if n := len(srv.Responses()); n != 1 {
		t.Fatalf("%d model requests, want 1 (no retries)", n)
	}
}

// TestCodexDynamicTool gives thread/start a dynamic tool, lets the model
// call it and answers the server's item/tool/call request; the answer
// reaches the model as the function_call_output.
func TestCodexDynamicTool(t *testing.T) {
	call := mockopenai.FunctionCall("linear_graphql", map[string]any{"query": "{ viewer { id } }", "variables": map[string]any{"n": 1}})
	srv := mockopenai.New(call, mockopenai.Text("Got it."))
	defer srv.Close()
	cwd := t.TempDir()
	tool := rpcMsg{"name": "linear_graphql", "description": "Run a GraphQL query against Linear.", "inputSchema": rpcMsg{
		"type": "object", "properties": rpcMsg{"query": rpcMsg{"type": "string"}, "variables": rpcMsg{"type": "object"}}, "required": []any{"query"},
	}}

	// Without experimentalApi, dynamicTools is refused.
	plain := startAppServer(t, srv, false)
	params := threadParams(cwd, "never")
	params["dynamicTools"] = []any{tool}
	if _, errObj, _ := plain.try("thread/start", params); errObj == nil || !strings.Contains(errObj["message"].(string), "experimentalApi") {
		t.Fatalf("thread/start with dynamicTools and experimentalApi false: error %v, want one naming experimentalApi", errObj)
	}

	a := startAppServer(t, srv, true)
	var calls []rpcMsg
	a.onRequest = func(method string, p rpcMsg) any {
		if method != "item/tool/call" {
			t.Errorf("unexpected server request %s %v", method, p)
			return rpcMsg{}
		}
		calls = append(calls, p)
		return rpcMsg{"success": true, "contentItems": []any{rpcMsg{"type": "inputText", "text": `{"data":{"viewer":{"id":"VIEWER-42"}}}`}}}
	}
	thread := a.startThread(params)
	msgs := a.turn(thread, "who am i")
	if turn := completedTurn(t, msgs); turn["status"] != "completed" {
		t.Fatalf("turn %v", turn)
	}
	if len(calls) != 1 {
		t.Fatalf("%d item/tool/call requests, want 1", len(calls))
	}
	raw, _ := json.Marshal(calls[0])
	t.Logf("item/tool/call params: %s", raw)
	c := calls[0]
	if c["tool"] != "linear_graphql" || c["threadId"] != thread || c["turnId"] == nil || c["callId"] == nil || dig(c, "arguments", "query") != "{ viewer { id } }" {
		t.Fatalf("item/tool/call params %s", raw)
	}
	reqs := srv.Responses()
	if !reqs[0].HasTool("linear_graphql") {
		t.Fatalf("tools offered %v, want linear_graphql", reqs[0].Tools)
	}
	out := reqs[len(reqs)-1].ToolOutputs
	if len(out) != 1 || out[0].Name != "linear_graphql" || !strings.Contains(out[0].Output, "VIEWER-42") || out[0].CallID != c["callId"] {
		t.Fatalf("model saw tool outputs %+v, want the client's answer", out)
	}
	for _, typ := range []string{"dynamicToolCall"} {
		items := completedItems(msgs, typ)
		raw, _ := json.Marshal(items)
		t.Logf("%s items: %s", typ, raw)
	}
}

// TestCodexDynamicToolFailures: a {success:false} answer, an answer codex
// cannot read and a JSON-RPC error all reach the model as a failed call
// (the turn goes on); a call of a tool that was never declared is answered by codex
// itself without asking the client.
func TestCodexDynamicToolFailures(t *testing.T) {
	srv := mockopenai.New(
		mockopenai.FunctionCall("linear_graphql", map[string]any{"query": "q"}), mockopenai.Text("ok"),
		mockopenai.FunctionCall("linear_graphql", map[string]any{"query": "q"}), mockopenai.Text("ok"),
		mockopenai.FunctionCall("linear_graphql", map[string]any{"query": "q"}), mockopenai.Text("ok"),
		mockopenai.FunctionCall("no_such_tool", map[string]any{}), mockopenai.Text("ok"),
	)
	defer srv.Close()
	a := startAppServer(t, srv, true)
	answers := []any{
		rpcMsg{"success": false, "contentItems": []any{rpcMsg{"type": "inputText", "text": "tool broke"}}},
		rpcMsg{"unexpected": 1},
		rpcError{"code": -32000, "message": "no executor"},
	}
	a.onRequest = func(method string, p rpcMsg) any {
		if method != "item/tool/call" || len(answers) == 0 {
			t.Fatalf("unexpected server request %s %v", method, p)
		}
		ans := answers[0]
		answers = answers[1:]
		return ans
	}
	params := threadParams(t.TempDir(), "never")
	params["dynamicTools"] = []any{rpcMsg{"name": "linear_graphql", "description": "d", "inputSchema": rpcMsg{"type": "object"}}}
	thread := a.startThread(params)
	for i, want := range []string{"tool broke", "dynamic tool response was invalid", "dynamic tool request failed", "unsupported call: no_such_tool"} {
		msgs := a.turn(thread, "go")
		if turn := completedTurn(t, msgs); turn["status"] != "completed" {
			t.Fatalf("turn %d: %v", i, turn)
		}
		reqs := srv.Responses()
		if got := reqs[len(reqs)-1].ToolResultText(); got != want {
			t.Errorf("turn %d: model saw %q, want %q", i, got, want)
		}
		items := completedItems(msgs, "dynamicToolCall")
		if i < 3 && (len(items) != 1 || items[0]["status"] != "failed" || items[0]["success"] != false) {
			t.Errorf("turn %d: dynamicToolCall items %v, want one failed", i, items)
		}
	}
}

// TestCodexResumeKeepsDynamicTools: a second app-server process on the
// same CODEX_HOME resumes the thread with thread/resume; the dynamic tools
// given to thread/start are still offered and still routed to the client,
// and the token totals go on from the first process's.
func TestCodexResumeKeepsDynamicTools(t *testing.T) {
	srv := mockopenai.New(mockopenai.Text("first"), mockopenai.FunctionCall("linear_graphql", map[string]any{"query": "q"}), mockopenai.Text("ok"))
	defer srv.Close()
	home := filepath.Join(t.TempDir(), "codex-home")
	cwd := t.TempDir()
	a := startAppServerIn(t, srv, true, home)
	params := threadParams(cwd, "never")
	params["dynamicTools"] = []any{rpcMsg{"name": "linear_graphql", "description": "d", "inputSchema": rpcMsg{"type": "object"}}}
	thread := a.startThread(params)
	a.turn(thread, "go")
	a.stop()

	b := startAppServerIn(t, srv, true, home)
	var calls int
	b.onRequest = func(method string, p rpcMsg) any {
		if method != "item/tool/call" || p["threadId"] != thread {
			t.Errorf("unexpected server request %s %v", method, p)
		}
		calls++
		return rpcMsg{"success": true, "contentItems": []any{rpcMsg{"type": "inputText", "text": "after resume"}}}
	}
	res, _ := b.call("thread/resume", rpcMsg{"threadId": thread, "cwd": cwd, "approvalPolicy": "never", "sandbox": "danger-full-access"})
	if dig(res, "thread", "id") != thread {
		t.Fatalf("thread/resume result %v", res)
	}
	msgs := b.turn(thread, "again")
	if turn := completedTurn(t, msgs); turn["status"] != "completed" || calls != 1 {
		t.Fatalf("turn %v, %d tool calls", turn["status"], calls)
	}
	reqs := srv.Responses()
	if !reqs[1].HasTool("linear_graphql") || reqs[2].ToolResultText() != "after resume" {
		t.Fatalf("after resume: tools %v, model saw %q", reqs[1].Tools, reqs[2].ToolResultText())
	}
	assertTotal(t, msgs, srv.Steps()...)
}

// TestCodexTurnInterrupt stops a turn whose model answer is pending with
// turn/interrupt {threadId, turnId}: the reply is {} and turn/completed
// says interrupted.
func TestCodexTurnInterrupt(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	srv := mockopenai.New(mockopenai.Step{Text: "late", Gate: gate})
	defer srv.Close()
	a := startAppServer(t, srv, false)
	thread := a.startThread(threadParams(t.TempDir(), "never"))
	res, _ := a.call("turn/start", rpcMsg{"threadId": thread, "input": []any{rpcMsg{"type": "text", "text": "x"}}})
	turnID, _ := dig(res, "turn", "id").(string)
	ctx, cancel := context.WithTimeout(context.Background(), msgTimeout)
	defer cancel()
	if err := srv.WaitResponses(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got, seen := a.call("turn/interrupt", rpcMsg{"threadId": thread, "turnId": turnID})
	if len(got) != 0 {
		t.Errorf("turn/interrupt result %v, want {}", got)
	}
	for len(seen) == 0 || seen[len(seen)-1]["method"] != "turn/completed" {
		seen = append(seen, a.next())
	}
	if turn := completedTurn(t, seen); turn["status"] != "interrupted" || turn["id"] != turnID {
		t.Fatalf("turn %v, want %s interrupted", turn, turnID)
	}
}
