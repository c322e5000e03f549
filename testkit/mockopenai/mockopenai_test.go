package mockopenai_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// sseEvent is one server-sent event of a streamed answer.
type sseEvent struct {
	name string
	data map[string]any
}

func postResponses(t *testing.T, srv *mockopenai.Server, body string) (*http.Response, []sseEvent) {
	t.Helper()
	resp, err := http.Post(srv.URL()+"/v1/responses", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []sseEvent
	var name string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			name = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] != name {
			t.Errorf("data type %v under event %q", m["type"], name)
		}
		events = append(events, sseEvent{name, m})
	}
	return resp, events
}

// TestStreamWireFormat checks the event sequence, that the deltas add up
// to the text and arguments, and the usage of response.completed.
func TestStreamWireFormat(t *testing.T) {
	t.Parallel()
	st := mockopenai.Step{
		Text:  "héllo wörld",
		Calls: []mockopenai.Call{{ID: "call_1", Name: "linear_graphql", Arguments: map[string]any{"query": "q"}}},
		Usage: mockopenai.Usage{InputTokens: 7, OutputTokens: 3, CachedTokens: 2},
	}
	srv := mockopenai.New(st)
	defer srv.Close()
	resp, events := postResponses(t, srv, `{"model":"m","stream":true,"client_metadata":{"thread_id":"th"},"tools":[{"type":"function","name":"exec_command"},{"type":"namespace","name":"ns","tools":[{"type":"function","name":"x"}]},{"type":"web_search"}],"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content-type %q", ct)
	}
	var names []string
	var text, args strings.Builder
	for _, e := range events {
		names = append(names, e.name)
		switch e.name {
		case "response.output_text.delta":
			text.WriteString(e.data["delta"].(string))
		case "response.function_call_arguments.delta":
			args.WriteString(e.data["delta"].(string))
		}
	}
	want := "response.created response.in_progress " +
		"response.output_item.added response.content_part.added response.output_text.delta response.output_text.delta response.output_text.done response.content_part.done response.output_item.done " +
		"response.output_item.added response.function_call_arguments.delta response.function_call_arguments.delta response.function_call_arguments.done response.output_item.done " +
		"response.completed"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	if text.String() != "héllo wörld" || args.String() != `{"query":"q"}` {
		t.Errorf("text %q args %q", text.String(), args.String())
	}
	last := events[len(events)-1].data
	usage, _ := last["response"].(map[string]any)["usage"].(map[string]any)
	if usage["input_tokens"] != 7.0 || usage["output_tokens"] != 3.0 || usage["total_tokens"] != 10.0 || usage["input_tokens_details"].(map[string]any)["cached_tokens"] != 2.0 {
		t.Errorf("usage %v", usage)
	}
	fc := events[len(events)-2].data["item"].(map[string]any)
	if fc["type"] != "function_call" || fc["call_id"] != "call_1" || fc["name"] != "linear_graphql" || fc["arguments"] != `{"query":"q"}` {
		t.Errorf("function_call item %v", fc)
	}
	r := srv.Responses()
	if len(r) != 1 || r[0].ThreadID != "th" || r[0].UserText != "hi" || strings.Join(r[0].Tools, ",") != "exec_command,ns,ns.x,web_search" || r[0].Step != 0 {
		t.Errorf("recorded %+v", r)
	}
}

// TestToolOutputsAndFallback: the latest step's outputs are picked out of
// the resent history; errors carry an OpenAI body; after the script,
// "done"; other routes 404.
func TestToolOutputsAndFallback(t *testing.T) {
	t.Parallel()
	srv := mockopenai.New(
		mockopenai.Step{Calls: []mockopenai.Call{{ID: "a", Name: "t1"}, {ID: "b", Name: "t2"}}},
		mockopenai.Step{Calls: []mockopenai.Call{{ID: "c", Name: "t3"}}},
		mockopenai.Error(500, "boom"),
	)
	defer srv.Close()
	postResponses(t, srv, `{"input":[]}`)
	postResponses(t, srv, `{"input":[{"type":"function_call","call_id":"a","name":"t1"},{"type":"function_call","call_id":"b","name":"t2"},{"type":"function_call_output","call_id":"a","output":"A"},{"type":"function_call_output","call_id":"b","output":[{"type":"input_text","text":"B"}]}]}`)
	resp, err := http.Post(srv.URL()+"/v1/responses", "application/json", strings.NewReader(`{"input":[{"type":"function_call","call_id":"a","name":"t1"},{"type":"function_call_output","call_id":"a","output":"A"},{"type":"function_call","call_id":"c","name":"t3"},{"type":"function_call_output","call_id":"c","output":"C"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(raw), `"message":"boom"`) {
		t.Errorf("error step: %d %s", resp.StatusCode, raw)
	}
	_, events := postResponses(t, srv, `{"input":[]}`)
	if item := events[len(events)-2].data["item"].(map[string]any); item["type"] != "message" || !strings.Contains(mustJSON(item), `"text":"done"`) {
		t.Errorf("fallback item %v", item)
	}
	resp, err = http.Get(srv.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /v1/models: %d", resp.StatusCode)
	}
	r := srv.Responses()
	if len(r) != 4 || r[1].ToolResultText() != "A\nB" || r[1].ToolOutputs[1].Name != "t2" {
		t.Fatalf("second request outputs %+v", r[1].ToolOutputs)
	}
	if r[2].ToolResultText() != "C" || len(r[2].AllToolOutputs) != 2 || r[3].Step != -1 {
		t.Errorf("third request outputs %+v of %+v, fallback step %d", r[2].ToolOutputs, r[2].AllToolOutputs, r[3].Step)
	}
	if n := len(srv.Requests()); n != 5 {
		t.Errorf("requests = %d, want 5", n)
	}
}

func mustJSON(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

// TestDelayAbandonedOnClose: Close does not wait for a pending delay.
func TestDelayAbandonedOnClose(t *testing.T) {
	t.Parallel()
	srv := mockopenai.New(mockopenai.Step{Text: "late", Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL()+"/v1/responses", "application/json", strings.NewReader(`{"stream":true}`))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), msgTimeout)
	defer cancel()
	if err := srv.WaitResponses(ctx, 1); err != nil {
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

// TestCodexHomeConfig checks the written config and environment.
func TestCodexHomeConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	env, err := mockopenai.CodexHome(dir, "http://127.0.0.1:1234/")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`base_url = "http://127.0.0.1:1234/v1"`, `model_provider = "mock"`, `wire_api = "responses"`, "request_max_retries = 0", "stream_max_retries = 0", "plugins = false", "remote_plugin = false", "apps = false"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("config.toml lacks %q:\n%s", want, raw)
		}
	}
	if joined := strings.Join(env, " "); !strings.Contains(joined, "CODEX_HOME="+dir) || !strings.Contains(joined, mockopenai.APIKeyEnv+"=") {
		t.Errorf("env %v", env)
	}
}

func TestCLIPathMentionsInstall(t *testing.T) {
	t.Setenv("CODEX_CLI", filepath.Join(t.TempDir(), "missing"))
	_, err := mockopenai.CLIPath()
	if err == nil || !strings.Contains(err.Error(), "go tool task tools") {
		t.Fatalf("CLIPath error = %v", err)
	}
}
