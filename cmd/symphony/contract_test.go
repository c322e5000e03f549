package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/internal/procscan"
	"github.com/symphony-oss/symphony/testkit/apischema"
)

// contractAgent is the agent of TestAPIContract, by issue: CON-2 fails at
// once (a retry is queued), CON-3 ends its turn with a tool it was denied
// (the issue is parked: blocked), any other starts its session, says
// something and works on (running) until it is stopped.
func contractAgent() int {
	session := fmt.Sprintf("contract-%d", os.Getpid())
	switch os.Getenv("SYMPHONY_ISSUE_IDENTIFIER") {
	case "CON-2":
		fmt.Fprintln(os.Stderr, "failing on purpose")
		return 1
	case "CON-3":
		fmt.Printf(`{"type":"system","subtype":"init","session_id":%q,"cwd":"x","model":"fake"}`+"\n", session)
		fmt.Printf(`{"type":"result","subtype":"success","is_error":false,"result":"I need Bash.","num_turns":1,"duration_ms":5,"session_id":%q,`+
			`"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":20},"permission_denials":[{"tool_name":"Bash","tool_use_id":"t1","tool_input":{}}]}`+"\n", session)
		return 0
	}
	fmt.Printf(`{"type":"system","subtype":"init","session_id":%q,"cwd":"x","model":"fake"}`+"\n", session)
	fmt.Printf(`{"type":"assistant","session_id":%q,"message":{"content":[{"type":"text","text":"Reading the code."}]}}`+"\n", session)
	time.Sleep(10 * time.Minute)
	return 0
}

// TestAPIContract holds the JSON API to the reference specification's
// shapes (SPEC §13.7.2), written as JSON Schemas in testdata/api-schema/:
// a real `symphony`, started as the reference's service would be
// (`symphony --port N path/WORKFLOW.md`), with one issue running, one
// retrying, one blocked, answers GET /api/v1/state, GET
// /api/v1/<identifier> for each, and for an unknown one, POST
// /api/v1/refresh and a wrong method, each checked against its schema;
// then SIGTERM stops it with exit 0.
func TestAPIContract(t *testing.T) {
	schemas, err := apischema.Load()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		t.Fatal(err)
	}
	ids := []string{"CON-1", "CON-2", "CON-3"}
	for i, id := range ids {
		writeFile(t, filepath.Join(issues, id+".md"), fmt.Sprintf("---\ntitle: contract %d\nstate: Todo\nurl: https://tracker.test/%s\n---\n", i+1, id))
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}}
polling: {interval_ms: 300}
workspace: {root: ws}
agent: {max_concurrent_agents: 5, max_turns: 1, max_retry_backoff_ms: 600000}
claude: {command: %q, turn_timeout_ms: 600000, stall_timeout_ms: 600000}
---
Work on {{ issue.identifier }}.
`, os.Args[0]))
	t.Setenv(fakeAgentEnv, "contract")
	t.Cleanup(func() {
		for _, id := range ids {
			_, _ = procscan.Kill("SYMPHONY_ISSUE_IDENTIFIER", id)
		}
	})
	port := refPort(t)
	p := start(t, "--port", strconv.Itoa(port), wf)
	p.waitFor(t, fmt.Sprintf("dashboard on http://127.0.0.1:%d", port))
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/", port)

	// Wait for the three at once (CON-1's session known): CON-2's retry comes due every 10 s or
	// more and runs for a moment, so the issue answers are read while the
	// state still shows it retrying, else again.
	var state []byte
	held := map[string][]byte{}
	deadline := time.Now().Add(testTimeout)
	for {
		state = mustGet(t, api+"state", http.StatusOK)
		if rows := stateRows(t, state); rows["CON-1"] == "running" && rows["CON-2"] == "retrying" && rows["CON-3"] == "blocked" {
			for _, id := range ids {
				held[id] = apiGet(t, api+id)
			}
			if issueStatus(held["CON-1"]) == "running" && issueStatus(held["CON-2"]) == "retrying" && issueStatus(held["CON-3"]) == "blocked" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never running, retrying and blocked at once; last state:\n%s\nissues: %s\noutput:\n%s", state, held, p.all)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := schemas.Check(apischema.State, state); err != nil {
		t.Errorf("GET /api/v1/state: %v\n%s", err, state)
	}
	for _, id := range ids {
		if err := schemas.Check(apischema.Issue, held[id]); err != nil {
			t.Errorf("GET /api/v1/%s: %v\n%s", id, err, held[id])
		}
	}
	checkContractValues(t, state, held)

	// Unknown: an issue this instance never saw.
	body := mustGet(t, api+"NOPE-1", http.StatusNotFound)
	checkError(t, schemas, "GET /api/v1/NOPE-1", body, "issue_not_found")
	// A refresh, and a wrong method on its route.
	resp, err := http.Post(api+"refresh", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST /api/v1/refresh: %d\n%s", resp.StatusCode, body)
	}
	if err := schemas.Check(apischema.Refresh, body); err != nil {
		t.Errorf("POST /api/v1/refresh: %v\n%s", err, body)
	}
	body = mustGet(t, api+"refresh", http.StatusMethodNotAllowed)
	checkError(t, schemas, "GET /api/v1/refresh", body, "method_not_allowed")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, p.all)
	}
}

// checkContractValues checks what the schemas cannot: the values the
// reference's readers rely on.
func checkContractValues(t *testing.T, state []byte, held map[string][]byte) {
	t.Helper()
	var st struct {
		Running []struct {
			IssueIdentifier string  `json:"issue_identifier"`
			IssueURL        *string `json:"issue_url"`
			SessionID       *string `json:"session_id"`
			LastEvent       *string `json:"last_event"`
		}
		Retrying []struct {
			IssueIdentifier string  `json:"issue_identifier"`
			IssueURL        *string `json:"issue_url"`
			Error           *string
		}
		Blocked []struct {
			IssueIdentifier string `json:"issue_identifier"`
			Error           string
			SessionID       *string `json:"session_id"`
		}
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Running {
		if r.IssueIdentifier == "CON-1" && (r.IssueURL == nil || *r.IssueURL != "https://tracker.test/CON-1" || r.SessionID == nil || r.LastEvent == nil) {
			t.Errorf("running CON-1: url %v, session %v, last event %v", r.IssueURL, r.SessionID, r.LastEvent)
		}
	}
	for _, r := range st.Retrying {
		if r.IssueIdentifier == "CON-2" && (r.IssueURL == nil || *r.IssueURL != "https://tracker.test/CON-2" || r.Error == nil) {
			t.Errorf("retrying CON-2: url %v, error %v", r.IssueURL, r.Error)
		}
	}
	for _, b := range st.Blocked {
		if b.IssueIdentifier == "CON-3" && (!strings.Contains(b.Error, "Bash") || b.SessionID == nil) {
			t.Errorf("blocked CON-3: error %q, session %v", b.Error, b.SessionID)
		}
	}
	var retry struct {
		Attempts struct {
			RestartCount        int `json:"restart_count"`
			CurrentRetryAttempt int `json:"current_retry_attempt"`
		}
	}
	if err := json.Unmarshal(held["CON-2"], &retry); err != nil || retry.Attempts.CurrentRetryAttempt < 1 || retry.Attempts.RestartCount != retry.Attempts.CurrentRetryAttempt-1 {
		t.Errorf("CON-2 attempts %+v (%v)", retry.Attempts, err)
	}
}

// stateRows maps each identifier in a state answer to the list it is in;
// a running row counts once its session is known (the agent's first
// event), as the reference's readers expect a session_id from then on.
func stateRows(t *testing.T, state []byte) map[string]string {
	t.Helper()
	var st map[string]json.RawMessage
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatalf("state: %v\n%s", err, state)
	}
	out := map[string]string{}
	for list, status := range map[string]string{"running": "running", "retrying": "retrying", "blocked": "blocked"} {
		var rows []struct {
			IssueIdentifier string  `json:"issue_identifier"`
			SessionID       *string `json:"session_id"`
		}
		_ = json.Unmarshal(st[list], &rows)
		for _, r := range rows {
			if list != "running" || r.SessionID != nil {
				out[r.IssueIdentifier] = status
			}
		}
	}
	return out
}

func issueStatus(body []byte) string {
	var v struct{ Status string }
	_ = json.Unmarshal(body, &v)
	return v.Status
}

func checkError(t *testing.T, schemas *apischema.Set, what string, body []byte, code string) {
	t.Helper()
	if err := schemas.Check(apischema.Error, body); err != nil {
		t.Errorf("%s: %v\n%s", what, err, body)
	}
	if !bytes.Contains(body, []byte(`"code": "`+code+`"`)) {
		t.Errorf("%s: want code %s:\n%s", what, code, body)
	}
}

// apiGet reads a URL's body whatever the status.
func apiGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, resp)
}

func mustGet(t *testing.T, url string, status int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, body)
	}
	return body
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
