package mockopenai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/symphony-oss/symphony/testkit/mockserver"
)

// responsesRequest is the part of a Responses API request the mock reads.
type responsesRequest struct {
	Model          string            `json:"model"`
	Stream         bool              `json:"stream"`
	PromptCacheKey string            `json:"prompt_cache_key"`
	ClientMetadata map[string]any    `json:"client_metadata"`
	Tools          []toolSpec        `json:"tools"`
	Input          []json.RawMessage `json:"input"`
}

type toolSpec struct {
	Type  string     `json:"type"`
	Name  string     `json:"name"`
	Tools []toolSpec `json:"tools"`
}

// inputItem is the part of an input item the mock reads.
type inputItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	CallID  string          `json:"call_id"`
	Name    string          `json:"name"`
	Output  json.RawMessage `json:"output"`
	Content json.RawMessage `json:"content"`
}

// fill copies what the request says into rec.
func (q *responsesRequest) fill(rec *Request) {
	rec.Model = q.Model
	rec.Stream = q.Stream
	rec.NumInput = len(q.Input)
	rec.ThreadID, _ = q.ClientMetadata["thread_id"].(string)
	if rec.ThreadID == "" {
		rec.ThreadID = q.PromptCacheKey
	}
	for _, t := range q.Tools {
		name := t.Name
		if name == "" {
			name = t.Type
		}
		rec.Tools = append(rec.Tools, name)
		for _, sub := range t.Tools {
			rec.Tools = append(rec.Tools, name+"."+sub.Name)
		}
	}
	items := make([]inputItem, 0, len(q.Input))
	for _, raw := range q.Input {
		var it inputItem
		_ = json.Unmarshal(raw, &it) // an unknown shape is just skipped
		items = append(items, it)
	}
	names := map[string]string{}
	for _, it := range items {
		if it.Type == "function_call" {
			names[it.CallID] = it.Name
		}
		if it.Type == "message" && it.Role == "user" {
			if text := joinText(it.Content); text != "" {
				rec.UserText = text
			}
		}
	}
	for _, it := range items {
		if it.Type == "function_call_output" {
			rec.AllToolOutputs = append(rec.AllToolOutputs, ToolOutput{CallID: it.CallID, Name: names[it.CallID], Output: outputText(it.Output)})
		}
	}
}

// joinText joins the texts of a content array (or returns a string content).
func joinText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Text != "" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}

// outputText reads a function_call_output's output: a string, an array of
// content items, or {"content": ...}.
func outputText(raw json.RawMessage) string {
	if text := joinText(raw); text != "" {
		return text
	}
	var obj struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil && len(obj.Content) > 0 {
		return joinText(obj.Content)
	}
	return string(raw)
}

// writeStream sends st as the Responses API's server-sent events.
func writeStream(w http.ResponseWriter, st Step, model string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	seq := 0
	send := func(event string, data map[string]any) {
		data["type"] = event
		data["sequence_number"] = seq
		seq++
		raw, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, raw)
		if flusher != nil {
			flusher.Flush()
		}
	}
	id := "resp_mock_" + randomHex(16)
	base := func(status string, output []any, usage any) map[string]any {
		return map[string]any{"id": id, "object": "response", "model": model, "status": status, "output": output, "usage": usage}
	}
	send("response.created", map[string]any{"response": base("in_progress", []any{}, nil)})
	send("response.in_progress", map[string]any{"response": base("in_progress", []any{}, nil)})
	var output []any
	if st.Text != "" || len(st.Calls) == 0 {
		output = append(output, streamMessage(send, len(output), st.Text))
	}
	for _, c := range st.Calls {
		output = append(output, streamCall(send, len(output), c))
	}
	u := EffectiveUsage(st)
	send("response.completed", map[string]any{"response": base("completed", output, map[string]any{
		"input_tokens":          u.InputTokens,
		"input_tokens_details":  map[string]any{"cached_tokens": u.CachedTokens},
		"output_tokens":         u.OutputTokens,
		"output_tokens_details": map[string]any{"reasoning_tokens": 0},
		"total_tokens":          u.Total(),
	})})
}

// streamMessage sends one assistant message item and returns it.
func streamMessage(send func(string, map[string]any), index int, text string) map[string]any {
	id := "msg_mock_" + randomHex(16)
	item := func(status string, content []any) map[string]any {
		return map[string]any{"id": id, "type": "message", "role": "assistant", "status": status, "content": content}
	}
	part := func(t string) map[string]any {
		return map[string]any{"type": "output_text", "text": t, "annotations": []any{}}
	}
	send("response.output_item.added", map[string]any{"output_index": index, "item": item("in_progress", []any{})})
	send("response.content_part.added", map[string]any{"item_id": id, "output_index": index, "content_index": 0, "part": part("")})
	for _, chunk := range mockserver.Split(text, 2) {
		send("response.output_text.delta", map[string]any{"item_id": id, "output_index": index, "content_index": 0, "delta": chunk})
	}
	send("response.output_text.done", map[string]any{"item_id": id, "output_index": index, "content_index": 0, "text": text})
	send("response.content_part.done", map[string]any{"item_id": id, "output_index": index, "content_index": 0, "part": part(text)})
	done := item("completed", []any{part(text)})
	send("response.output_item.done", map[string]any{"output_index": index, "item": done})
	return done
}

// streamCall sends one function_call item and returns it.
func streamCall(send func(string, map[string]any), index int, c Call) map[string]any {
	callID := c.ID
	if callID == "" {
		callID = "call_mock_" + randomHex(16)
	}
	id := "fc_mock_" + randomHex(16)
	args := c.Arguments
	if args == nil {
		args = map[string]any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		raw = []byte("{}")
	}
	item := func(status, arguments string) map[string]any {
		return map[string]any{"id": id, "type": "function_call", "status": status, "call_id": callID, "name": c.Name, "arguments": arguments}
	}
	send("response.output_item.added", map[string]any{"output_index": index, "item": item("in_progress", "")})
	for _, chunk := range mockserver.Split(string(raw), 2) {
		send("response.function_call_arguments.delta", map[string]any{"item_id": id, "output_index": index, "delta": chunk})
	}
	send("response.function_call_arguments.done", map[string]any{"item_id": id, "output_index": index, "arguments": string(raw)})
	done := item("completed", string(raw))
	send("response.output_item.done", map[string]any{"output_index": index, "item": done})
	return done
}
