package mockopenai_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// TestCodexCommandApproval runs a command under approvalPolicy
// "untrusted": the server asks item/commandExecution/requestApproval and
// the client's decision runs it ("accept"), refuses it and lets the turn
// go on ("decline"), or ends the turn ("cancel").
func TestCodexCommandApproval(t *testing.T) {
	cases := []struct {
		decision   string
		wantFile   bool
		itemStatus string
		turnStatus string
		modelSees  string // in the function_call_output, "" when the model is not asked again
	}{
		{"accept", true, "completed", "completed", "Process exited with code 0"},
		{"acceptForSession", true, "completed", "completed", "Process exited with code 0"},
		{"decline", false, "declined", "completed", "rejected by user"},
		{"cancel", false, "declined", "interrupted", ""},
	}
	for _, tc := range cases {
		t.Run(tc.decision, func(t *testing.T) {
			srv := mockopenai.New(mockopenai.Exec("touch approved.txt"), mockopenai.Text("ok"))
			defer srv.Close()
			cwd := t.TempDir()
			a := startAppServer(t, srv, false)
			var asked []rpcMsg
			a.onRequest = func(method string, p rpcMsg) any {
				if method != "item/commandExecution/requestApproval" {
					t.Errorf("unexpected server request %s %v", method, p)
				}
				asked = append(asked, p)
				return rpcMsg{"decision": tc.decision}
			}
			thread := a.startThread(threadParams(cwd, "untrusted"))
			msgs := a.turn(thread, "touch approved.txt")
			if len(asked) != 1 {
				t.Fatalf("%d approval requests, want 1", len(asked))
			}
			raw, _ := json.Marshal(asked[0])
			t.Logf("requestApproval params: %s", raw)
			p := asked[0]
			if p["threadId"] != thread || p["turnId"] == nil || p["itemId"] == nil || !strings.Contains(p["command"].(string), "touch approved.txt") || p["cwd"] != cwd || p["availableDecisions"] == nil {
				t.Fatalf("requestApproval params %s", raw)
			}
			if _, err := os.Stat(filepath.Join(cwd, "approved.txt")); (err == nil) != tc.wantFile {
				t.Fatalf("approved.txt exists: %v, want %v", err == nil, tc.wantFile)
			}
			items := completedItems(msgs, "commandExecution")
			if len(items) != 1 || items[0]["status"] != tc.itemStatus || items[0]["id"] != p["itemId"] {
				t.Fatalf("commandExecution items %v, want one %s with id %v", items, tc.itemStatus, p["itemId"])
			}
			if turn := completedTurn(t, msgs); turn["status"] != tc.turnStatus {
				t.Fatalf("turn status %v, want %s", turn["status"], tc.turnStatus)
			}
			reqs := srv.Responses()
			if tc.modelSees == "" {
				if len(reqs) != 1 {
					t.Fatalf("%d model requests, want 1 (the turn ended)", len(reqs))
				}
				return
			}
			if len(reqs) != 2 || !strings.Contains(reqs[1].ToolResultText(), tc.modelSees) {
				t.Fatalf("model saw %q, want %q", reqs[len(reqs)-1].ToolResultText(), tc.modelSees)
			}
		})
	}
}

// TestCodexRequestUserInput reaches request_user_input: codex offers the
// tool always but refuses it outside Plan mode; a turn started with
// collaborationMode plan (experimentalApi) sends item/tool/requestUserInput
// and the client's answers reach the model as JSON.
func TestCodexRequestUserInput(t *testing.T) {
	questions := map[string]any{"questions": []any{map[string]any{
		"id": "pick", "header": "Pick", "question": "Which one?",
		"options": []any{
			map[string]any{"label": "A (Recommended)", "description": "the first"},
			map[string]any{"label": "B", "description": "the second"},
		},
	}}}
	srv := mockopenai.New(
		mockopenai.FunctionCall("request_user_input", questions), mockopenai.Text("ok"),
		mockopenai.FunctionCall("request_user_input", questions), mockopenai.Text("ok"),
	)
	defer srv.Close()
	a := startAppServer(t, srv, true)
	var asked []rpcMsg
	a.onRequest = func(method string, p rpcMsg) any {
		if method != "item/tool/requestUserInput" {
			t.Errorf("unexpected server request %s %v", method, p)
		}
		asked = append(asked, p)
		return rpcMsg{"answers": rpcMsg{"pick": rpcMsg{"answers": []any{"B"}}}}
	}
	thread := a.startThread(threadParams(t.TempDir(), "never"))

	// Default mode: refused to the model, the client is not asked.
	a.turn(thread, "ask me")
	if got := srv.Responses()[1].ToolResultText(); len(asked) != 0 || !strings.Contains(got, "unavailable in Default mode") {
		t.Fatalf("default mode: %d requests, model saw %q", len(asked), got)
	}

	_, seen := a.call("turn/start", rpcMsg{
		"threadId":          thread,
		"input":             []any{rpcMsg{"type": "text", "text": "ask me"}},
		"collaborationMode": rpcMsg{"mode": "plan", "settings": rpcMsg{"model": mockopenai.Model}},
	})
	for len(seen) == 0 || seen[len(seen)-1]["method"] != "turn/completed" {
		seen = append(seen, a.next())
	}
	if turn := completedTurn(t, seen); turn["status"] != "completed" {
		t.Fatalf("plan turn %v", turn)
	}
	if len(asked) != 1 {
		t.Fatalf("%d requestUserInput requests, want 1", len(asked))
	}
	raw, _ := json.Marshal(asked[0])
	t.Logf("requestUserInput params: %s", raw)
	q, _ := dig(asked[0], "questions").([]any)
	if asked[0]["threadId"] != thread || asked[0]["itemId"] == nil || asked[0]["isBlocking"] != true || len(q) != 1 || dig(q[0].(rpcMsg), "id") != "pick" {
		t.Fatalf("requestUserInput params %s", raw)
	}
	reqs := srv.Responses()
	if got := reqs[len(reqs)-1].ToolResultText(); got != `{"answers":{"pick":{"answers":["B"]}}}` {
		t.Fatalf("model saw %q, want the answers as JSON", got)
	}
}
