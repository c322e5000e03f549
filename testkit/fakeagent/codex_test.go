package fakeagent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCodexAppServer: as `app-server` the fake answers the handshake and
// plays a turn to turn/completed with absolute token totals; error_reply
// answers turn/start with a JSON-RPC error; crash dies mid-turn.
func TestCodexAppServer(t *testing.T) {
	bin := Build(t)
	in := strings.Join([]string{
		`{"method":"initialize","id":1,"params":{"clientInfo":{"name":"t","version":"1"}}}`,
		`{"method":"initialized"}`,
		`{"method":"thread/start","id":2,"params":{"cwd":"/w","approvalPolicy":"never","sandbox":"workspace-write","dynamicTools":[{"type":"function","name":"x"}]}}`,
		`{"method":"turn/start","id":3,"params":{"threadId":"t","input":[{"type":"text","text":"hi"}],"title":"A-1: T"}}`,
		`{"method":"no/such","id":4}`,
	}, "\n") + "\n"
	play := func(scenario string) (methods []string, byID map[string]string, stderr string, code int) {
		cmd := exec.Command(bin, "app-server")
		cmd.Env = append(os.Environ(), EnvCodex+"="+scenario)
		cmd.Stdin = strings.NewReader(in)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		byID = map[string]string{}
		for l := range bytes.SplitSeq(bytes.TrimSpace(o.Bytes()), []byte("\n")) {
			var m struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if json.Unmarshal(l, &m) != nil {
				t.Fatalf("%s: not JSON: %q", scenario, l)
			}
			if m.Method != "" {
				methods = append(methods, m.Method)
			} else {
				byID[string(m.ID)] = string(m.Result) + string(m.Error)
			}
		}
		return methods, byID, e.String(), exitCode(err)
	}
	methods, byID, _, code := play("ok")
	got := strings.Join(methods, " ")
	if code != 0 || !strings.HasPrefix(got, "turn/started item/started item/completed") || !strings.HasSuffix(got, "thread/tokenUsage/updated account/rateLimits/updated turn/completed") {
		t.Errorf("ok: exit %d, notifications %s", code, got)
	}
	if !strings.Contains(byID["2"], `"thread":{"cwd":"/w","id":`) || !strings.Contains(byID["3"], `"status":"inProgress"`) || !strings.Contains(byID["4"], "-32601") {
		t.Errorf("ok: responses %v", byID)
	}
	if _, byID, _, _ := play("error_reply"); !strings.Contains(byID["3"], "turn refused by the fake") {
		t.Errorf("error_reply: turn/start answered %q", byID["3"])
	}
	if _, _, stderr, code := play("crash"); code != 3 || !strings.Contains(stderr, "fatal: codex crashed") {
		t.Errorf("crash: exit %d, stderr %q", code, stderr)
	}
}

// TestCodexAppServerStream: the stream scenario plays FAKEAGENT_EVENTS
// events of FAKEAGENT_SIZE bytes, one line each (message, command start,
// command output, in turn), between turn/started and the token totals
// and turn/completed; a bad variable ends the fake with its name.
func TestCodexAppServerStream(t *testing.T) {
	bin := Build(t)
	in := strings.Join([]string{
		`{"method":"initialize","id":1,"params":{"clientInfo":{"name":"t","version":"1"}}}`,
		`{"method":"thread/start","id":2,"params":{"cwd":"/w"}}`,
		`{"method":"turn/start","id":3,"params":{"threadId":"t","input":[{"type":"text","text":"hi"}]}}`,
	}, "\n") + "\n"
	cmd := exec.Command(bin, "app-server")
	cmd.Env = append(os.Environ(), EnvCodex+"=stream", EnvEvents+"=6", EnvSize+"=50", EnvInterval+"=1ms")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	var methods []string
	var usage string
	for l := range bytes.SplitSeq(bytes.TrimSpace(out), []byte("\n")) {
		var m struct {
			Method string `json:"method"`
			Params struct {
				Item struct {
					Type             string `json:"type"`
					Text             string `json:"text"`
					AggregatedOutput string `json:"aggregatedOutput"`
				} `json:"item"`
				TokenUsage json.RawMessage `json:"tokenUsage"`
			} `json:"params"`
		}
		if json.Unmarshal(l, &m) != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m.Method == "" {
			continue
		}
		it := m.Params.Item
		if n := len(it.Text) + len(it.AggregatedOutput); n != 0 && n != 50 {
			t.Errorf("%s %s: payload of %d bytes, want 50", m.Method, it.Type, n)
		}
		if m.Params.TokenUsage != nil {
			usage = string(m.Params.TokenUsage)
		}
		methods = append(methods, m.Method+":"+it.Type)
	}
	want := "turn/started: item/completed:agentMessage item/started:commandExecution item/completed:commandExecution" +
		" item/completed:agentMessage item/started:commandExecution item/completed:commandExecution thread/tokenUsage/updated: turn/completed:"
	if got := strings.Join(methods, " "); got != want {
		t.Errorf("notifications\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(usage, `"total":{"cacheWriteInputTokens":0,"cachedInputTokens":0,"inputTokens":100,"outputTokens":60,"totalTokens":160}`) {
		t.Errorf("token usage %s", usage)
	}

	bad := exec.Command(bin, "app-server")
	bad.Env = append(os.Environ(), EnvCodex+"=stream", EnvEvents+"=-1")
	bad.Stdin = strings.NewReader(in)
	var e bytes.Buffer
	bad.Stderr = &e
	if err := bad.Run(); exitCode(err) != 1 || !strings.Contains(e.String(), EnvEvents) {
		t.Errorf("bad FAKEAGENT_EVENTS: %v, stderr %q", err, e.String())
	}
}

// TestCodexAppServerHostile: the hostile scenarios that need no answers
// play their notifications in order (another thread's records beside the
// turn's own); huge_tool_name reports, in its message, whether each of the
// two lines it read after its requests was a whole JSON line.
func TestCodexAppServerHostile(t *testing.T) {
	bin := Build(t)
	start := strings.Join([]string{
		`{"method":"initialize","id":1,"params":{}}`,
		`{"method":"thread/start","id":2,"params":{"cwd":"/w"}}`,
		`{"method":"turn/start","id":3,"params":{"threadId":"t","input":[{"type":"text","text":"hi"}]}}`,
	}, "\n") + "\n"
	play := func(scenario, in string) string {
		cmd := exec.Command(bin, "app-server")
		cmd.Env = append(os.Environ(), EnvCodex+"="+scenario)
		cmd.Stdin = strings.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", scenario, err)
		}
		var got []string
		for l := range bytes.SplitSeq(bytes.TrimSpace(out), []byte("\n")) {
			var m struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Params struct {
					ThreadID string `json:"threadId"`
					Turn     struct {
						ID     string `json:"id"`
						Status string `json:"status"`
					} `json:"turn"`
					Item struct {
						Text string `json:"text"`
					} `json:"item"`
					TokenUsage struct {
						Total struct {
							InputTokens int64 `json:"inputTokens"`
						} `json:"total"`
					} `json:"tokenUsage"`
				} `json:"params"`
			}
			if json.Unmarshal(l, &m) != nil {
				t.Fatalf("%s: not JSON: %.100q", scenario, l)
			}
			p := m.Params
			switch m.Method {
			case "", "turn/started":
			case "item/completed":
				got = append(got, "message "+p.Item.Text)
			case "thread/tokenUsage/updated":
				got = append(got, fmt.Sprintf("totals %d", p.TokenUsage.Total.InputTokens)+threadMark(p.ThreadID))
			case "turn/completed":
				got = append(got, "completed "+p.Turn.ID+" "+p.Turn.Status+threadMark(p.ThreadID))
			default:
				got = append(got, m.Method+" "+string(m.ID))
			}
		}
		return strings.Join(got, ", ")
	}
	for _, c := range []struct{ scenario, in, want string }{
		{"other_completed", start, "completed sub-turn-1 failed (other thread), message turn 1 own message, completed turn-1 completed"},
		{"other_tokens", start, "totals 100, totals 99999 (other thread), message turn 1, completed turn-1 completed"},
		{"totals_backwards", start, "totals 100, message turn 1, completed turn-1 completed"},
		{"huge_tool_name", start + `{"id":3000,"result":{}}` + "\n" + `{"id":30` + "\n",
			"item/tool/call 3000, some/other 3001, message reply 1: valid id 3000, 23 bytes; reply 2: INVALID, 8 bytes, completed turn-1 completed"},
	} {
		if got := play(c.scenario, c.in); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.scenario, got, c.want)
		}
	}
}

// threadMark marks a record of a thread other than the fake's own.
func threadMark(id string) string {
	if id == otherThread {
		return " (other thread)"
	}
	return ""
}
