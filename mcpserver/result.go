package mcpserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/symphony-oss/symphony/bus"
)

// checkArguments bounds a call's arguments (the agent's, outside input)
// before they cross the bus: at most bus.ToolArgumentsMaxBytes, a JSON
// object, or nothing (absent or null, which the tracker reads as {}).
// What the object holds is the tool's to check against its schema.
func checkArguments(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) > bus.ToolArgumentsMaxBytes {
		return nil, fmt.Errorf("its arguments are %d bytes, over the bound of %d bytes", len(raw), bus.ToolArgumentsMaxBytes)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, nil
	}
	if !json.Valid(trimmed) {
		return nil, fmt.Errorf("its arguments are not valid JSON")
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("its arguments must be a JSON object, not %s", jsonKind(trimmed[0]))
	}
	return trimmed, nil
}

// jsonKind names the kind of a JSON value by its first byte.
func jsonKind(b byte) string {
	switch b {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// resultOf is the MCP result of a tool's answer. Success: the output
// JSON as text, and as structured content when it is an object. Failure:
// isError, with the error, its class and rule, and the output (a GraphQL
// response's errors) in text. The answer's copy of the arguments (the
// run's record) is never passed back.
func resultOf(tool string, r bus.ToolResult) *mcp.CallToolResult {
	if len(r.Output) > bus.ToolOutputMaxBytes {
		return errorResult(fmt.Sprintf("%s answered %d bytes of output, over the bound of %d bytes", tool, len(r.Output), bus.ToolOutputMaxBytes))
	}
	output := bytes.TrimSpace(r.Output)
	if r.OK {
		text := string(output)
		if len(output) == 0 {
			text = "null"
		}
		res := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
		if len(output) > 0 && output[0] == '{' && json.Valid(output) {
			res.StructuredContent = json.RawMessage(output)
		}
		return res
	}
	var b strings.Builder
	msg := r.Error
	if msg == "" {
		msg = "no reason given"
	}
	fmt.Fprintf(&b, "%s failed: %s", tool, msg)
	if r.Class != "" {
		fmt.Fprintf(&b, "\nclass: %s", r.Class)
	}
	if r.Rule != "" {
		fmt.Fprintf(&b, "\nrule: %s", r.Rule)
	}
	if rl := r.RateLimit; rl != nil && rl.Limited {
		fmt.Fprintf(&b, "\nrate limited: the tracker waits %s before its next request", time.Duration(rl.RetryAfterMS)*time.Millisecond)
	}
	if len(output) > 0 {
		fmt.Fprintf(&b, "\noutput: %s", output)
	}
	return errorResult(b.String())
}

// errorResult is a failure the agent reads as the call's result.
func errorResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}
