package fakeagent

import (
	"bytes"
	"encoding/json"
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
