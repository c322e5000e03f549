package agentrunner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
)

// codexReplay is what the decoder makes of a server's output.
type codexReplay struct {
	kinds     map[bus.TurnEventKind]int
	texts     []string
	tools     []string
	responses int
	requests  int
	parseErrs int
	stream    *codexStream
}

func replayCodex(t testing.TB, data []byte, max int) codexReplay {
	t.Helper()
	r := codexReplay{kinds: map[bus.TurnEventKind]int{}, stream: newCodexStream()}
	lr := proc.NewLineReader(bytes.NewReader(data), max)
	for {
		line, tooLong, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return r
		}
		if err != nil {
			t.Fatal(err)
		}
		if tooLong {
			r.parseErrs++
			continue
		}
		m, err := parseRPCLine(line)
		switch {
		case err != nil:
			r.parseErrs++
			continue
		case m == nil:
			continue
		case m.isResponse():
			r.responses++
			continue
		case m.isRequest():
			r.requests++
			continue
		}
		evs, err := r.stream.notification(m.Method, m.Params, line)
		if err != nil {
			r.parseErrs++
		}
		for _, e := range evs {
			r.kinds[e.Kind]++
			switch e.Kind {
			case bus.TurnText:
				r.texts = append(r.texts, e.Text)
			case bus.TurnToolUse:
				r.tools = append(r.tools, e.Tool.Name+" "+string(e.Tool.Input))
			}
		}
	}
}

// TestCodexTranscripts: the real server's output (codex-cli 0.169.0,
// recorded offline) decodes without a parse error into the events the
// runner records, with the thread's absolute totals and the turn's end.
func TestCodexTranscripts(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "codex", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	w := replayCodex(t, read("codex-app-server-write.jsonl"), MaxLineBytes)
	if w.parseErrs != 0 || w.responses != 4 || w.requests != 0 {
		t.Errorf("write: %d parse errors, %d responses, %d requests", w.parseErrs, w.responses, w.requests)
	}
	if strings.Join(w.texts, "|") != "Done: I created hello.txt.|Done: I created hello.txt." {
		t.Errorf("write: texts %q (deltas must be coalesced into the completed message)", w.texts)
	}
	if len(w.tools) != 2 || !strings.HasPrefix(w.tools[0], `command {"command":"/bin/bash -lc`) || w.kinds[bus.TurnToolResult] != 2 {
		t.Errorf("write: tools %q, results %d", w.tools, w.kinds[bus.TurnToolResult])
	}
	// The totals are the last absolute ones (400 in, 80 out), never the
	// sum of `last` (4 × 100 in would be the same here, but 120 total
	// tokens a request would not).
	if tot := w.stream.totals; tot == nil || tot.InputTokens != 400 || tot.OutputTokens != 80 {
		t.Errorf("write: totals %+v", tot)
	}
	if w.stream.end == nil || w.stream.end.status != "completed" || w.kinds[bus.TurnRateLimit] != 4 {
		t.Errorf("write: end %+v, rate limits %d", w.stream.end, w.kinds[bus.TurnRateLimit])
	}
	e := replayCodex(t, read("codex-app-server-error-500.jsonl"), MaxLineBytes)
	if e.parseErrs != 0 || e.stream.end == nil || e.stream.end.status != "failed" ||
		!strings.Contains(e.stream.end.err, "high demand") || !strings.Contains(e.stream.end.err, "internalServerError") {
		t.Errorf("error-500: parse errors %d, end %+v", e.parseErrs, e.stream.end)
	}
	r := replayCodex(t, read("codex-app-server-resume.jsonl"), MaxLineBytes)
	if r.parseErrs != 0 || r.stream.end == nil || r.stream.end.status != "completed" {
		t.Errorf("resume: parse errors %d, end %+v", r.parseErrs, r.stream.end)
	}
}

// TestCodexDeltas: a message's completed text wins over its deltas; the
// deltas of an item that never completed go out when the turn ends;
// reasoning is thinking.
func TestCodexDeltas(t *testing.T) {
	in := strings.Join([]string{
		`{"method":"item/agentMessage/delta","params":{"itemId":"a","delta":"Hel"}}`,
		`{"method":"item/agentMessage/delta","params":{"itemId":"a","delta":"lo"}}`,
		`{"method":"item/completed","params":{"item":{"type":"agentMessage","id":"a","text":"Hello!"}}}`,
		`{"method":"item/reasoning/summaryTextDelta","params":{"itemId":"r","delta":"thinking"}}`,
		`{"method":"item/agentMessage/delta","params":{"itemId":"b","delta":"cut "}}`,
		`{"method":"item/agentMessage/delta","params":{"itemId":"b","delta":"short"}}`,
		`{"method":"item/completed","params":{"item":{"type":"fileChange","id":"f","status":"completed","changes":[{"path":"a.txt","kind":{"type":"add"},"diff":"+x"}]}}}`,
		`{"method":"turn/completed","params":{"turn":{"id":"t","status":"interrupted"}}}`,
	}, "\n")
	r := replayCodex(t, []byte(in), MaxLineBytes)
	if strings.Join(r.texts, "|") != "Hello!|cut short" || r.kinds[bus.TurnThinking] != 1 || r.kinds[bus.TurnToolResult] != 1 {
		t.Errorf("texts %q, kinds %v", r.texts, r.kinds)
	}
	if r.stream.end.status != "interrupted" || len(r.stream.deltas) != 0 {
		t.Errorf("end %+v, open items %d", r.stream.end, len(r.stream.deltas))
	}
}

// TestParseRPCLine: what is not a JSON-RPC message is an error saying why.
func TestParseRPCLine(t *testing.T) {
	for line, want := range map[string]string{
		`not json`:                  "not a JSON object",
		`{"method":`:                "invalid JSON",
		`{"params":{}}`:             `neither "method" nor "id"`,
		`{"id":true,"result":{}}`:   "neither a number nor a string",
		`{"id":null,"method":"x"}`:  "",
		`{"id":"7","method":"ask"}`: "",
		`{"id":3,"result":{"a":1}}`: "",
		`{"method":"item/started"}`: "",
		`{"id":` + strings.Repeat("1", MaxNameBytes+1) + `,"result":1}`: "id of",
	} {
		_, err := parseRPCLine([]byte(line))
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%.40q: err %v, want %q", line, err, want)
		}
	}
	s := newCodexStream()
	if _, err := s.notification("thread/tokenUsage/updated", []byte(`{"tokenUsage":{"last":{"inputTokens":5}}}`), nil); err == nil || s.totals != nil {
		t.Errorf("token usage without a total: err %v, totals %+v (last must never count)", err, s.totals)
	}
	// A total rides on its event, for the dashboard's live tokens.
	evs, err := s.notification("thread/tokenUsage/updated", []byte(`{"tokenUsage":{"total":{"inputTokens":50,"cachedInputTokens":40,"outputTokens":7}}}`), nil)
	if err != nil || len(evs) != 1 || evs[0].Totals == nil || *evs[0].Totals != (bus.Usage{InputTokens: 50, CacheReadInputTokens: 40, OutputTokens: 7}) {
		t.Errorf("token totals event: %+v, %v", evs, err)
	}
}

// FuzzCodexStream: whatever the server writes, the decoder neither panics
// nor keeps more than its bounds: every event is bounded, and the items
// held open are at most maxOpenItems of at most MaxTextBytes each.
func FuzzCodexStream(f *testing.F) {
	files, _ := filepath.Glob("testdata/codex/*.jsonl")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"method":"item/agentMessage/delta","params":{"itemId":"` + strings.Repeat("x", 2000) + `","delta":"` + strings.Repeat("y", 3000) + `"}}`))
	f.Add([]byte(`{"method":"item/completed","params":{"item":{"type":"commandExecution","id":"1","exitCode":3,"aggregatedOutput":"` + strings.Repeat("o", 3000) + `"}}}`))
	f.Add([]byte(`{"id":1,"method":"item/tool/call","params":{"tool":"x","arguments":` + strings.Repeat("[", 500) + `}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 4096
		lr := proc.NewLineReader(bytes.NewReader(data), max)
		s := newCodexStream()
		for {
			line, tooLong, err := lr.Next()
			if err != nil {
				return
			}
			if tooLong {
				continue
			}
			m, err := parseRPCLine(line)
			if err != nil || m == nil {
				continue
			}
			if len(m.ID) > MaxNameBytes || len(m.Method) > MaxNameBytes {
				t.Fatal("id or method not bounded")
			}
			if m.isResponse() || m.isRequest() {
				_ = userQuestion(m)
				continue
			}
			evs, _ := s.notification(m.Method, m.Params, line)
			for _, e := range evs {
				if len(e.Text) > MaxTextBytes+64 || len(e.Raw) > MaxRawBytes || len(e.SessionID) > MaxNameBytes {
					t.Fatal("event not bounded")
				}
				if e.Tool != nil && (len(e.Tool.ID) > MaxNameBytes+64 || len(e.Tool.Name) > MaxNameBytes+64 || len(e.Tool.Input) > MaxRawBytes) {
					t.Fatal("tool not bounded")
				}
			}
			if s.totals != nil && *s.totals != s.totals.Clamped() {
				t.Fatalf("negative totals kept: %+v", *s.totals)
			}
			if len(s.deltas) > maxOpenItems || len(s.order) != len(s.deltas) {
				t.Fatalf("%d open items (order %d)", len(s.deltas), len(s.order))
			}
			for _, it := range s.deltas {
				if it.text.Len() > MaxTextBytes+64 {
					t.Fatal("open item not bounded")
				}
			}
		}
	})
}

// TestCodexTotalsThatGoDownAreIgnored: codex's totals are absolute, so a
// report lower than an earlier one is ignored (and recorded as a parse
// error): the mid-turn check still sees the cap crossed, and the turn's
// usage is what the highest totals grew by, never a negative delta.
func TestCodexTotalsThatGoDownAreIgnored(t *testing.T) {
	cfg := bus.Config{Budget: bus.BudgetConfig{PerRun: bus.BudgetCaps{Tokens: 500000}}}
	s := &codexSession{spec: sessionSpec{cfg: cfg}, stream: newCodexStream()}
	report := func(input int64) error {
		_, err := s.stream.notification("thread/tokenUsage/updated", fmt.Appendf(nil, `{"tokenUsage":{"total":{"inputTokens":%d}}}`, input), nil)
		return err
	}
	if err := report(400000); err != nil {
		t.Fatal(err)
	}
	if d := s.usageDelta(); d.InputTokens != 400000 {
		t.Fatalf("first delta %+v", d)
	}
	if err := report(10); err == nil || !strings.Contains(err.Error(), "went down") {
		t.Errorf("a decrease must be reported: %v", err)
	}
	if d := s.usageDelta(); d.InputTokens != 0 {
		t.Errorf("delta after a decrease %+v, want 0", d)
	}
	if err := report(500010); err != nil {
		t.Fatal(err)
	}
	if _, over := s.overBudget(); !over {
		t.Error("500010 tokens must be over the 500000 cap")
	}
	if err := report(20); err == nil {
		t.Error("a second decrease must be reported")
	}
	if _, over := s.overBudget(); !over {
		t.Error("a lower report must not bring the totals back under the cap")
	}
	if d := s.usageDelta(); d.InputTokens != 100010 {
		t.Errorf("delta %+v, want 100010 (the highest totals minus the previous turn's)", d)
	}
}
