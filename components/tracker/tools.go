package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// Tools are what an adapter offers a run's agent (issue #21): declared with
// a JSON Schema, run here, host-side, with the adapter's own credential,
// and acting only on the run's own issue. The agent's arguments are outside
// input: bounded, decoded strictly, and every failure is a result that says
// what was wrong, never a crash or a request error.

// tool is one tool of an adapter.
type tool struct {
	spec bus.ToolSpec
	// call runs the tool; args are within bus.ToolArgumentsMaxBytes and
	// not yet decoded (decodeArgs does that, strictly).
	call func(ctx context.Context, run toolRun, args json.RawMessage) bus.ToolResult
}

// toolRun is the run a call is made for: its id and its own issue, the
// only one the call may act on.
type toolRun struct {
	id    string
	issue bus.IssueRef
}

// ToolCallTimeout bounds one tool call (the Linear adapter's HTTP timeout
// bounds each request inside it).
const ToolCallTimeout = time.Minute

// toolConcurrency is how many tool calls the tracker runs at once: a slow
// call of one agent must not hold up the others.
const toolConcurrency = 8

// specsOf lists the specs of tools.
func specsOf(tools []tool) []bus.ToolSpec {
	out := make([]bus.ToolSpec, 0, len(tools))
	for _, t := range tools {
		out = append(out, t.spec)
	}
	return out
}

// runTool finds and runs the named tool. Every outcome is a result.
func runTool(ctx context.Context, tools []tool, req bus.CallTool) bus.ToolResult {
	if req.Issue.ID == "" {
		return failed(bus.ToolBadArguments, "the call names no issue: a tool acts on its run's own issue, which Symphony sets")
	}
	i := slices.IndexFunc(tools, func(t tool) bool { return t.spec.Name == req.Tool })
	if i < 0 {
		names := make([]string, 0, len(tools))
		for _, t := range tools {
			names = append(names, t.spec.Name)
		}
		return failed(bus.ToolUnknown, fmt.Sprintf("no tool named %.100q; this tracker offers: %s", req.Tool, strings.Join(names, ", ")))
	}
	if len(req.Arguments) > bus.ToolArgumentsMaxBytes {
		return failed(bus.ToolBadArguments, fmt.Sprintf("arguments are %d bytes, over the bound of %d", len(req.Arguments), bus.ToolArgumentsMaxBytes))
	}
	ctx, cancel := context.WithTimeout(ctx, ToolCallTimeout)
	defer cancel()
	return tools[i].call(ctx, toolRun{id: req.RunID, issue: req.Issue}, req.Arguments)
}

// failed is a failure result.
func failed(class, msg string) bus.ToolResult {
	return bus.ToolResult{Class: class, Error: msg}
}

// refused is a failure result naming the rule that refused the call.
func refused(rule, msg string) bus.ToolResult {
	return bus.ToolResult{Class: bus.ToolRefused, Rule: rule, Error: msg}
}

// succeeded is a success result with out encoded as its output.
func succeeded(out any) bus.ToolResult {
	raw, err := json.Marshal(out)
	if err != nil {
		return failed(bus.TrackerRequestError, "encode the tool's output: "+err.Error())
	}
	return bus.ToolResult{OK: true, Output: raw}
}

// argField is one field of a tool's input: its name, whether it must be
// there, and where its value is decoded to.
type argField struct {
	name     string
	required bool
	dst      any
}

// decodeArgs decodes a tool's arguments strictly: a JSON object (absent or
// null reads as {}) whose keys are exactly the fields' names — an unknown
// key, a key in another case or a key given twice is refused — each value
// of its field's type (null counts as absent), and nothing after the
// object. Its errors name the field and what was wrong, for the agent to
// correct its call.
func decodeArgs(raw json.RawMessage, fields ...argField) error {
	if len(raw) > bus.ToolArgumentsMaxBytes {
		return fmt.Errorf("arguments are %d bytes, over the bound of %d", len(raw), bus.ToolArgumentsMaxBytes)
	}
	if !utf8.Valid(raw) {
		return errors.New("arguments are not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		trimmed = []byte("{}")
	}
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		names = append(names, f.name)
	}
	values, err := topLevel(trimmed, names)
	if err != nil {
		return err
	}
	for _, f := range fields {
		v, ok := values[f.name]
		if !ok || string(v) == "null" {
			if f.required {
				return fmt.Errorf("missing required field %q", f.name)
			}
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("field %q: want %s, got a JSON %s", f.name, kindOf(f.dst), te.Value)
			}
			return fmt.Errorf("field %q: %v", f.name, err)
		}
	}
	return nil
}

// topLevel splits a JSON object into its members, refusing what is not an
// object, keys other than names (compared exactly), repeated keys and
// anything after the object.
func topLevel(raw []byte, names []string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("arguments are not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("arguments must be a JSON object like {%s}, got %s", quotedList(names), describeToken(tok))
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("arguments are not JSON: %v", err)
		}
		key, _ := tok.(string)
		if !slices.Contains(names, key) {
			return nil, fmt.Errorf("unknown field %.100q: this tool takes %s", key, quotedList(names))
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("field %q is given twice", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("field %q: not JSON: %v", key, err)
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("arguments are not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("arguments have data after the JSON object")
	}
	return out, nil
}

func quotedList(names []string) string {
	q := make([]string, 0, len(names))
	for _, n := range names {
		q = append(q, fmt.Sprintf("%q", n))
	}
	if len(q) == 0 {
		return "no fields"
	}
	return strings.Join(q, ", ")
}

func describeToken(tok json.Token) string {
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// kindOf names the JSON type a destination takes, for errors.
func kindOf(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *map[string]any, *json.RawMessage:
		return "an object"
	}
	return fmt.Sprintf("%T", dst)
}

// boundOutput turns an output over limit into a failure result that says
// the call ran: a mutation's effect stands even when its answer is too
// large to return.
func boundOutput(res bus.ToolResult, limit int) bus.ToolResult {
	if len(res.Output) <= limit {
		return res
	}
	return bus.ToolResult{Class: bus.ToolOutputTooLarge, RateLimit: res.RateLimit,
		Error: fmt.Sprintf("the call ran, but its answer is %d bytes, over the bound of %d for a tool result; ask for fewer fields or a smaller page (a mutation's effect stands)", len(res.Output), limit)}
}
