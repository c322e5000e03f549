package agentrunner

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components/agentrunner/proc"
)

var update = flag.Bool("update", false, "rewrite the golden files of the transcript tests")

// summarize renders the events of a stream as stable text, one line per
// event, for golden comparison.
func summarize(data []byte) string {
	var b strings.Builder
	lr := proc.NewLineReader(bytes.NewReader(data), MaxLineBytes)
	for n := 1; ; n++ {
		line, tooLong, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if tooLong {
			fmt.Fprintf(&b, "%d: parse_error line too long\n", n)
			continue
		}
		evs, perr := parseClaudeLine(line)
		if perr != nil {
			fmt.Fprintf(&b, "%d: parse_error %v\n", n, perr)
			continue
		}
		for _, e := range evs {
			fmt.Fprintf(&b, "%d: %s", n, e.Kind)
			if e.SessionID != "" {
				fmt.Fprintf(&b, " session=%s", e.SessionID[:8])
			}
			if e.Tool != nil {
				fmt.Fprintf(&b, " tool=%s/%s error=%v input=%s", e.Tool.ID, e.Tool.Name, e.Tool.IsError, e.Tool.Input)
			}
			if e.Result != nil {
				r := e.Result
				cost := "none"
				if r.CostUSD != nil {
					cost = fmt.Sprint(*r.CostUSD)
				}
				fmt.Fprintf(&b, " is_error=%v subtype=%s api_status=%d turns=%d usage=%+v cost=%s denials=%v stop=%s",
					r.IsError, r.Subtype, r.APIStatus, r.NumTurns, r.Usage, cost, r.PermissionDenials, r.StopReason)
			}
			if e.Text != "" {
				t := e.Text
				if len(t) > 120 {
					t = t[:120] + "…"
				}
				fmt.Fprintf(&b, " text=%q", t)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestTranscripts replays every recorded claude transcript through the
// parser and compares the events with the reviewed golden files.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.jsonl")
	if err != nil || len(files) < 10 {
		t.Fatalf("transcripts: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := summarize(data)
			golden := strings.TrimSuffix(f, ".jsonl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("events differ from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
			if strings.Contains(got, "parse_error") {
				t.Errorf("a real transcript produced parse errors")
			}
		})
	}
}

func TestParseRejectsTheUnexpected(t *testing.T) {
	for in, want := range map[string]string{
		`[1,2]`:                          "not a JSON object",
		`{"type":`:                       "invalid JSON",
		`{"subtype":"init"}`:             `no "type" field`,
		`{"type":"assistant"}`:           "without a message",
		`{"type":"result","result":"x"}`: `without "is_error"`,
		`{"type":7}`:                     "invalid JSON",
		`plain text from a wrapper`:      "not a JSON object",
		// A session id is passed back as --resume's argument: a flag in
		// its place, or anything outside the identifier rule, is refused.
		`{"type":"system","subtype":"init","session_id":"--dangerously-skip-permissions"}`: "session_id \"--dangerously-skip-permissions\" refused",
		`{"type":"system","subtype":"init","session_id":"-x"}`:                             "not start with -",
		`{"type":"system","subtype":"init","session_id":"a b"}`:                            "session_id \"a b\" refused",
		`{"type":"result","is_error":false,"session_id":"../x"}`:                           "refused",
	} {
		if _, err := parseClaudeLine([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if evs, err := parseClaudeLine([]byte(`{"type":"system","subtype":"init","session_id":"9a1c2f3e-0b4d-4e5f-8a6b-7c8d9e0f1a2b"}`)); err != nil || evs[0].SessionID != "9a1c2f3e-0b4d-4e5f-8a6b-7c8d9e0f1a2b" {
		t.Errorf("a UUID session id: %+v %v", evs, err)
	}
	evs, err := parseClaudeLine([]byte(`{"type":"brand_new","x":1}`))
	if err != nil || len(evs) != 1 || evs[0].Kind != bus.TurnOther || string(evs[0].Raw) != `{"type":"brand_new","x":1}` {
		t.Errorf("unknown type: %+v %v", evs, err)
	}
	// Deep and huge inputs are refused or bounded, never a crash.
	if _, err := parseClaudeLine([]byte(strings.Repeat("[", 100000))); err == nil {
		t.Error("100k brackets accepted")
	}
	deep := `{"type":"assistant","message":{"content":[{"type":"tool_use","input":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}]}}`
	if evs, err := parseClaudeLine([]byte(deep)); err == nil && len(evs[0].Tool.Input) > MaxRawBytes {
		t.Error("deep input not bounded")
	}
	huge := `{"type":"assistant","message":{"content":[{"type":"text","text":"` + strings.Repeat("a", 200<<10) + `"}]}}`
	evs, err = parseClaudeLine([]byte(huge))
	if err != nil || len(evs[0].Text) > MaxTextBytes+64 {
		t.Errorf("text not bounded: %d %v", len(evs[0].Text), err)
	}
}

func FuzzClaudeStream(f *testing.F) {
	files, _ := filepath.Glob("testdata/transcripts/*.jsonl")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(strings.Repeat("[", 3000)))
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","input":` + strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat(`}`, 300) + `}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lr := proc.NewLineReader(bytes.NewReader(data), 4096)
		cl := &claudeLines{emit: func(bus.TurnEvent) error { return nil }}
		for {
			line, tooLong, err := lr.Next()
			if err != nil {
				return
			}
			cl.line(line)
			if u := cl.streamed(); u != u.Clamped() || len(cl.model) > MaxNameBytes+64 {
				t.Fatalf("streamed usage %+v or model not bounded", u)
			}
			if tooLong {
				continue
			}
			if len(line) > 4096 {
				t.Fatalf("line of %d bytes over the cap", len(line))
			}
			evs, _ := parseClaudeLine(line)
			for _, e := range evs {
				if len(e.Text) > MaxTextBytes+64 || len(e.Raw) > MaxRawBytes || len(e.SessionID) > MaxNameBytes {
					t.Fatal("event not bounded")
				}
				if e.Tool != nil && (len(e.Tool.ID) > MaxNameBytes+64 || len(e.Tool.Name) > MaxNameBytes+64) {
					t.Fatal("tool name or id not bounded")
				}
				if r := e.Result; r != nil && (len(r.Subtype) > MaxNameBytes+64 || len(r.StopReason) > MaxNameBytes+64 || len(r.PermissionDenials) > maxDenials) {
					t.Fatal("result not bounded")
				}
				if r := e.Result; r != nil && (r.Usage != r.Usage.Clamped() || (r.CostUSD != nil && !(*r.CostUSD >= 0 && *r.CostUSD <= MaxTurnUSD))) {
					t.Fatalf("result figures out of bounds: usage %+v cost %v", r.Usage, r.CostUSD)
				}
			}
		}
	})
}

// FuzzParseClaudeLineDecoders: the fast decoder parseClaudeLine uses gives
// exactly the events encoding/json gives, and fails where it fails.
func FuzzParseClaudeLineDecoders(f *testing.F) {
	files, _ := filepath.Glob("testdata/transcripts/*.jsonl")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			for line := range bytes.SplitSeq(b, []byte("\n")) {
				f.Add(line)
			}
		}
	}
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"text","text":"a\ud800b \u00e9 \xff"}]}}`))
	f.Add([]byte(`{"type":"result","is_error":false,"total_cost_usd":1e-3,"usage":{"input_tokens":1.5}}`))
	f.Add([]byte(`{"type":"user","type":"system","subtype":"init","model":"m"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > 1<<16 {
			return
		}
		fast, ferr := parseClaudeLineWith(line, jsonv1.Unmarshal)
		std, serr := parseClaudeLineWith(line, json.Unmarshal)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("fast decoder err %v, encoding/json err %v, line %q", ferr, serr, line)
		}
		if serr != nil {
			return
		}
		fb, _ := json.Marshal(fast)
		sb, _ := json.Marshal(std)
		if !bytes.Equal(fb, sb) {
			t.Fatalf("fast decoder\n%s\nencoding/json\n%s\nline %q", fb, sb, line)
		}
	})
}

// TestEveryAgentEventIsBounded: whatever an agent puts in a line (up to
// MaxLineBytes), the event it becomes stays small: names and ids are cut,
// an oversized session id is refused.
func TestEveryAgentEventIsBounded(t *testing.T) {
	huge := strings.Repeat("x", 3<<20)
	denials := strings.Repeat(`{"tool_name":"`+huge[:2000]+`"},`, 300)
	for _, line := range []string{
		`{"type":"system","subtype":"` + huge + `"}`,
		`{"type":"` + huge + `"}`,
		`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"` + huge + `","name":"` + huge + `","input":{}}]}}`,
		`{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"` + huge + `","content":"x"}]}}`,
		`{"type":"assistant","message":{"content":[{"type":"` + huge + `"}]}}`,
		`{"type":"result","is_error":false,"subtype":"` + huge + `","stop_reason":"` + huge + `","permission_denials":[` + denials + `{}]}`,
	} {
		evs, err := parseClaudeLine([]byte(line))
		if err != nil {
			t.Fatalf("%.60s…: %v", line, err)
		}
		for _, e := range evs {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxTextBytes+MaxRawBytes+8*MaxNameBytes+maxDenials*(MaxNameBytes+64) {
				t.Errorf("%.60s…: an event of %d bytes", line, len(b))
			}
		}
	}
	if _, err := parseClaudeLine([]byte(`{"type":"system","subtype":"init","session_id":"` + huge + `"}`)); err == nil || !strings.Contains(err.Error(), "session_id") {
		t.Errorf("an oversized session id: %v", err)
	}
}
