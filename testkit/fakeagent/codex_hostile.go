package fakeagent

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The hostile scenarios: an app-server that breaks the protocol's
// assumptions on purpose, one way each, so the codex backend's defences
// stay tested (each was a bug a review found with a scripted server).
//
//	stdin_flood      turn/started, then 5000 requests with 1000-byte method
//	                 names in one write, and it never reads its stdin again.
//	tool_flood       five item/tool/call requests (files_set_state) in one
//	                 write; once all five are answered, an agent message
//	                 "tools done" and turn/completed.
//	other_completed  a failed turn/completed of another thread (sub-thread)
//	                 first, then the turn's own message ("turn N own
//	                 message") and turn/completed.
//	other_tokens     the thread's totals (100 input, 10 output), then another
//	                 thread's (99999, 9999), then the message and
//	                 turn/completed.
//	stale_completed  the message ("turn N own message") after 200 ms, then
//	                 turn/completed; after turn 1, 100 ms later, a duplicate
//	                 turn/completed of turn 1 in a write of its own, and a
//	                 300 ms pause before the next request is read.
//	huge_tool_name   an item/tool/call of an unknown tool with a 200 KB name
//	                 and an unknown request in one write, then 3 s without
//	                 reading stdin (longer than the read_timeout_ms of the
//	                 test that uses it); then it reads the two replies and says in
//	                 its message whether each was a whole JSON line: "reply 1:
//	                 valid id 3000, N bytes; reply 2: ..." (INVALID otherwise).
//	totals_backwards absolute totals that go back: 100/10 on turn 1, 50/5 on
//	                 turn 2, 120/12 on turn 3 and later.

// otherThread is the thread id of the hostile scenarios' other thread (a
// sub-agent's, say, on the same connection).
const otherThread = "sub-thread"

// hostileTurn plays a hostile scenario's turn after turn/started; ok is
// false when the scenario is not a hostile one.
func (f *codexFake) hostileTurn(turnID string) (ok bool) {
	switch f.scenario {
	case "stdin_flood":
		var b strings.Builder
		method := "x/" + strings.Repeat("m", 1000)
		for i := range 5000 {
			raw, _ := json.Marshal(map[string]any{"id": i, "method": method, "params": map[string]any{}})
			b.Write(append(raw, '\n'))
		}
		_, _ = f.out.Write([]byte(b.String()))
		for {
			time.Sleep(time.Hour)
		}
	case "tool_flood":
		f.toolFlood(turnID)
	case "other_completed":
		f.completed(otherThread, "sub-turn-1", "failed")
		f.message(turnID, fmt.Sprintf("turn %d own message", f.turns))
		f.completed(f.thread, turnID, "completed")
	case "other_tokens":
		f.totals(f.thread, turnID, 100, 10)
		f.totals(otherThread, "sub-1", 99999, 9999)
		f.message(turnID, fmt.Sprintf("turn %d", f.turns))
		f.completed(f.thread, turnID, "completed")
	case "stale_completed":
		time.Sleep(200 * time.Millisecond)
		f.message(turnID, fmt.Sprintf("turn %d own message", f.turns))
		f.completed(f.thread, turnID, "completed")
		if f.turns == 1 {
			time.Sleep(100 * time.Millisecond)
			f.completed(f.thread, turnID, "completed")
		}
		time.Sleep(300 * time.Millisecond)
	case "huge_tool_name":
		f.hugeToolName(turnID)
	case "totals_backwards":
		totals := [][2]int64{{100, 10}, {50, 5}, {120, 12}}
		t := totals[min(f.turns, len(totals))-1]
		f.totals(f.thread, turnID, t[0], t[1])
		f.message(turnID, fmt.Sprintf("turn %d", f.turns))
		f.completed(f.thread, turnID, "completed")
	default:
		return false
	}
	return true
}

// toolFlood is tool_flood's turn.
func (f *codexFake) toolFlood(turnID string) {
	var b strings.Builder
	for i := range 5 {
		raw, _ := json.Marshal(map[string]any{"id": 2000 + i, "method": "item/tool/call", "params": map[string]any{"threadId": f.thread, "turnId": turnID,
			"callId": fmt.Sprintf("c%d", i), "tool": "files_set_state", "arguments": map[string]string{"state": "Done"}}})
		b.Write(append(raw, '\n'))
	}
	_, _ = f.out.Write([]byte(b.String()))
	for got := 0; got < 5; {
		m, ok := f.read()
		if !ok {
			return
		}
		if m.Method == "" {
			got++
		}
	}
	f.message(turnID, "tools done")
	f.completed(f.thread, turnID, "completed")
}

// hugeToolName is huge_tool_name's turn.
func (f *codexFake) hugeToolName(turnID string) {
	call, _ := json.Marshal(map[string]any{"id": 3000, "method": "item/tool/call", "params": map[string]any{"threadId": f.thread, "turnId": turnID,
		"callId": "c", "tool": strings.Repeat("x", 200_000), "arguments": map[string]any{}}})
	other, _ := json.Marshal(map[string]any{"id": 3001, "method": "some/other", "params": map[string]any{}})
	_, _ = f.out.Write([]byte(string(call) + "\n" + string(other) + "\n"))
	time.Sleep(3 * time.Second)
	var seen []string
	for i := 1; i <= 2; i++ {
		if !f.in.Scan() {
			seen = append(seen, fmt.Sprintf("reply %d: stdin ended", i))
			break
		}
		line := f.in.Bytes()
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(line, &m) != nil {
			seen = append(seen, fmt.Sprintf("reply %d: INVALID, %d bytes", i, len(line)))
			continue
		}
		seen = append(seen, fmt.Sprintf("reply %d: valid id %s, %d bytes", i, m.ID, len(line)))
	}
	f.message(turnID, strings.Join(seen, "; "))
	f.completed(f.thread, turnID, "completed")
}

// message is a completed agent message of the turn.
func (f *codexFake) message(turnID, text string) {
	f.notify("item/completed", map[string]any{"threadId": f.thread, "turnId": turnID, "item": map[string]any{"type": "agentMessage", "id": "m-" + turnID, "text": text}})
}

// completed is turn/completed of thread's turn with status.
func (f *codexFake) completed(thread, turnID, status string) {
	f.notify("turn/completed", map[string]any{"threadId": thread, "turn": map[string]any{"id": turnID, "status": status, "error": nil}})
}

// totals are thread's absolute token totals.
func (f *codexFake) totals(thread, turnID string, in, out int64) {
	tok := func(in, out int64) map[string]int64 {
		return map[string]int64{"totalTokens": in + out, "inputTokens": in, "cachedInputTokens": 0, "cacheWriteInputTokens": 0, "outputTokens": out}
	}
	f.notify("thread/tokenUsage/updated", map[string]any{"threadId": thread, "turnId": turnID, "tokenUsage": map[string]any{"total": tok(in, out), "last": tok(1, 1)}})
}
