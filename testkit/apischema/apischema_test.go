package apischema

import (
	"strings"
	"testing"
)

// TestSchemasTellRightFromWrong: each schema accepts an answer of the
// specification's shape and refuses one that breaks it, naming where.
func TestSchemasTellRightFromWrong(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	running := `{"issue_id":"a","issue_identifier":"MT-1","issue_url":null,"state":"In Progress","session_id":"s","turn_count":1,
		"last_event":"notification","last_message":"x","started_at":"2026-02-24T20:10:12Z","last_event_at":"2026-02-24T20:14:59Z",
		"tokens":{"input_tokens":1,"output_tokens":2,"total_tokens":3},"workspace_path":"/w/MT-1","worker_host":null}`
	cases := []struct {
		schema, body, wrong string // wrong: a word of the error, "" when valid
	}{
		{State, `{"generated_at":"2026-02-24T20:15:30Z","counts":{"running":1,"retrying":0,"blocked":0},"running":[` + running + `],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":1,"output_tokens":2,"total_tokens":3,"seconds_running":1.5},"rate_limits":null,"extra":1}`, ""},
		// blocked[] and counts.blocked are required.
		{State, `{"generated_at":"2026-02-24T20:15:30Z","counts":{"running":0,"retrying":0},"running":[],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":0,"output_tokens":0,"total_tokens":0,"seconds_running":0},"rate_limits":null}`, "blocked"},
		{State, `{"generated_at":"2026-02-24T20:15:30Z","counts":{"running":0,"retrying":0,"blocked":0},"running":[],"retrying":[],
			"codex_totals":{"input_tokens":0,"output_tokens":0,"total_tokens":0,"seconds_running":0},"rate_limits":null}`, "blocked"},
		// Times are whole seconds (jq's fromdateiso8601 refuses fractions).
		{State, `{"generated_at":"2026-02-24T20:15:30.123Z","counts":{"running":0,"retrying":0,"blocked":0},"running":[],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":0,"output_tokens":0,"total_tokens":0,"seconds_running":0},"rate_limits":null}`, "generated_at"},
		// A row without worker_host.
		{State, `{"generated_at":"2026-02-24T20:15:30Z","counts":{"running":1,"retrying":0,"blocked":0},"running":[` + strings.Replace(running, `,"worker_host":null`, "", 1) + `],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":1,"output_tokens":2,"total_tokens":3,"seconds_running":1.5},"rate_limits":null}`, "worker_host"},
		{State, `{"generated_at":"yesterday","counts":{"running":0,"retrying":0,"blocked":0},"running":[],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":0,"output_tokens":0,"total_tokens":0,"seconds_running":0},"rate_limits":null}`, "generated_at"},
		{State, `{"generated_at":"2026-02-24T20:15:30Z","counts":{"running":1,"retrying":0,"blocked":0},"running":[` + strings.Replace(running, `"notification"`, `"tool_use"`, 1) + `],"retrying":[],"blocked":[],
			"codex_totals":{"input_tokens":1,"output_tokens":2,"total_tokens":3,"seconds_running":1.5},"rate_limits":null}`, "last_event"},
		{Issue, `{"issue_identifier":"MT-1","issue_id":"a","status":"retrying","workspace":{"path":"/w/MT-1","host":null},
			"attempts":{"restart_count":0,"current_retry_attempt":null},"running":null,"retry":{"attempt":1,"due_at":"2026-02-24T20:15:30Z","error":"x","workspace_path":"/w/MT-1","worker_host":null},
			"logs":{"codex_session_logs":[]},"recent_events":[],"last_error":"x","tracked":{}}`, "current_retry_attempt"},
		{Issue, `{"issue_identifier":"MT-1","issue_id":"a","status":"idle","workspace":{"path":"/w/MT-1","host":null},
			"attempts":{"restart_count":0,"current_retry_attempt":0},"running":null,"retry":null,
			"logs":{"codex_session_logs":[]},"recent_events":[],"last_error":null,"tracked":{}}`, "status"},
		{Refresh, `{"queued":true,"coalesced":false,"requested_at":"2026-02-24T20:15:30Z","operations":["poll","reconcile"]}`, ""},
		{Error, `{"error":{"code":"issue_not_found","message":"no such issue"}}`, ""},
		{Error, `{"error":{"code":"issue_not_found"}}`, "message"},
		// The error object is the code and the message, nothing else.
		{Error, `{"error":{"code":"issue_not_found","message":"no such issue","detail":1}}`, "detail"},
	}
	for i, c := range cases {
		err := s.Check(c.schema, []byte(c.body))
		switch {
		case c.wrong == "" && err != nil:
			t.Errorf("case %d (%s): valid answer refused: %v", i, c.schema, err)
		case c.wrong != "" && (err == nil || !strings.Contains(err.Error(), c.wrong)):
			t.Errorf("case %d (%s): want an error naming %q, got %v", i, c.schema, c.wrong, err)
		}
	}
}
