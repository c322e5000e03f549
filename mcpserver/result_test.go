package mcpserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
)

func TestCheckArguments(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "null", want: ""},
		{in: " \n", want: ""},
		{in: `{"query":"{ viewer { id } }"}`, want: `{"query":"{ viewer { id } }"}`},
		{in: ` {"a":1} `, want: `{"a":1}`},
		{in: `[1]`, err: "must be a JSON object, not an array"},
		{in: `"x"`, err: "not a string"},
		{in: `12`, err: "not a number"},
		{in: `true`, err: "not a boolean"},
		{in: `{"a":`, err: "not valid JSON"},
		{in: `{"a":"` + strings.Repeat("x", bus.ToolArgumentsMaxBytes) + `"}`, err: "over the bound of 65536 bytes"},
	} {
		got, err := checkArguments(json.RawMessage(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.40q: %v, want an error saying %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%.40q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestResultOf(t *testing.T) {
	ok := resultOf("t", bus.ToolResult{OK: true, Output: json.RawMessage(`[1,2]`)})
	if ok.IsError || ok.StructuredContent != nil || ok.Content[0].(*mcp.TextContent).Text != `[1,2]` {
		t.Errorf("an array output: %+v", ok)
	}
	empty := resultOf("t", bus.ToolResult{OK: true})
	if empty.IsError || empty.Content[0].(*mcp.TextContent).Text != "null" {
		t.Errorf("no output: %+v", empty)
	}
	limited := resultOf("linear_graphql", bus.ToolResult{Error: "rate limited", Class: "tracker_rate_limited",
		RateLimit: &bus.ToolRateLimit{Limited: true, RetryAfterMS: 30000}})
	if msg := limited.Content[0].(*mcp.TextContent).Text; !limited.IsError || !strings.Contains(msg, "waits 30s") || strings.Contains(msg, "rule:") {
		t.Errorf("rate limited: %q", msg)
	}
	big := resultOf("t", bus.ToolResult{OK: true, Output: make(json.RawMessage, bus.ToolOutputMaxBytes+1)})
	if !big.IsError || !strings.Contains(big.Content[0].(*mcp.TextContent).Text, "over the bound") {
		t.Errorf("oversized output: %+v", big)
	}
}

// FuzzCheckArguments: whatever the agent sends as arguments, the check
// ends, and what it lets through is a JSON object within the bound.
func FuzzCheckArguments(f *testing.F) {
	for _, s := range []string{"", "null", `{"query":"query { viewer { id } }","variables":{"id":"x"}}`, `[]`, `{"a":`, " {} ", `"s"`, `{"a":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := checkArguments(raw)
		if err != nil {
			if got != nil {
				t.Fatalf("an error with arguments %q", got)
			}
			return
		}
		if got == nil {
			return
		}
		if len(got) > bus.ToolArgumentsMaxBytes || !json.Valid(got) || got[0] != '{' {
			t.Fatalf("let through %q", got)
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("let through %q, not an object: %v", got, err)
		}
	})
}

// FuzzResultOf: whatever the answer holds (its output is the tracker's
// provider's bytes), its MCP result marshals, is an error exactly when the
// call failed, names the class and rule of a failure, and never carries
// the recorded arguments.
func FuzzResultOf(f *testing.F) {
	f.Add(true, []byte(`{"data":{"issue":{"id":"x"}}}`), "", "", "")
	f.Add(false, []byte(`{"errors":[{"message":"no"}]}`), "GraphQL error", "tracker_graphql_error", "")
	f.Add(false, []byte{}, "refused", bus.ToolRefused, "own_issue_only")
	f.Add(true, []byte("\xff\xfe not json"), "", "", "")
	f.Fuzz(func(t *testing.T, ok bool, output []byte, msg, class, rule string) {
		const marker = "ARGS-MARKER-7f3a"
		if strings.Contains(string(output), marker) || strings.Contains(msg+class+rule, marker) {
			return
		}
		res := resultOf("tool", bus.ToolResult{OK: ok, Output: output, Error: msg, Class: class, Rule: rule,
			Arguments: json.RawMessage(`{"x":"` + marker + `"}`)})
		raw, err := json.Marshal(res)
		if err != nil {
			t.Fatalf("the result does not marshal: %v", err)
		}
		if strings.Contains(string(raw), marker) {
			t.Fatalf("the result carries the recorded arguments: %s", raw)
		}
		if res.IsError == ok {
			t.Fatalf("ok %v, isError %v", ok, res.IsError)
		}
		if len(res.Content) != 1 {
			t.Fatalf("%d content blocks", len(res.Content))
		}
		text := res.Content[0].(*mcp.TextContent).Text
		if !ok && (class != "" && !strings.Contains(text, "class: "+class) || rule != "" && !strings.Contains(text, "rule: "+rule)) {
			t.Fatalf("failure text %q does not name class %q and rule %q", text, class, rule)
		}
		var back mcp.CallToolResult
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("the result does not read back: %v\n%s", err, raw)
		}
	})
}
