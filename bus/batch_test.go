package bus

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestSplitBatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: `[1]`, want: []string{`1`}},
		{in: ` [ {"a":"],}"} , [1,[2]] ,"x\"]"] `, want: []string{`{"a":"],}"}`, `[1,[2]]`, `"x\"]"`}},
		{in: `[]`, want: nil},
		{in: `{"a":1}`, err: "not a JSON array"},
		{in: `[1,]`, want: []string{`1`}, err: "empty event 2"},
		{in: `[,1]`, err: "empty event 1"},
		{in: `[{"a":1]}]`, err: "mismatched"},
		{in: `[{"a":1},{"b":`, want: []string{`{"a":1}`}, err: "unterminated after 1 events"},
		{in: `[1] x`, want: []string{`1`}, err: "after the array"},
		{in: `[1}`, err: "unexpected '}'"},
		{in: "[" + strings.Repeat("[", maxBatchDepth+1), err: "nests deeper"},
	} {
		got, err := splitBatch([]byte(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("splitBatch(%q) error %v, want %q", tc.in, err, tc.err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("splitBatch(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("splitBatch(%q)[%d] = %q, want %q", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

// FuzzSplitBatch: on any input, splitBatch agrees with encoding/json
// reading a []json.RawMessage: a valid array splits into exactly its
// elements, and whatever splitBatch accepts whole, with every element
// valid JSON, encoding/json accepts too, with the same elements.
func FuzzSplitBatch(f *testing.F) {
	for _, s := range []string{`[1]`, `[{"a":"]"},[1,{}],"\\\""]`, `[]`, `[1,]`, `{}`, ` [ 1 , 2 ] `, `["\u005d"]`, `[{"run_id":"r","turn":1,"seq":1,"at":"2026-01-01T00:00:00Z","kind":"assistant_text"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := splitBatch(data)
		var want []json.RawMessage
		jerr := json.Unmarshal(data, &want)
		isArray := isBatch(data)
		if jerr == nil && isArray {
			if err != nil {
				t.Fatalf("splitBatch(%q): %v; encoding/json reads %d elements", data, err, len(want))
			}
			if len(got) != len(want) {
				t.Fatalf("splitBatch(%q): %d elements, encoding/json %d", data, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("splitBatch(%q)[%d] = %q, encoding/json %q", data, i, got[i], want[i])
				}
			}
			return
		}
		if err == nil {
			allValid := true
			for _, e := range got {
				allValid = allValid && json.Valid(e)
			}
			if allValid && jerr != nil {
				t.Fatalf("splitBatch(%q) accepted %q, all valid, but encoding/json refused: %v", data, got, jerr)
			}
		}
		for _, e := range got {
			if len(e) == 0 || !bytes.Contains(data, e) {
				t.Fatalf("element %q is not a part of %q", e, data)
			}
		}
	})
}

// TestDecodeRefusesABatch: the generic decoder refuses a message of
// several agent events (as runlog.Writer stores them) with a clear error.
// (Moved from the writer's TestTurnBatchesStoreAndRead in package runlog,
// which cannot reach the decoder.)
func TestDecodeRefusesABatch(t *testing.T) {
	m := nats.NewMsg("symphony.turn.r1.1")
	m.Header.Set(HeaderType, TurnEvents.spec.typeName)
	m.Header.Set(HeaderSchema, "2")
	m.Header.Set(HeaderEvents, "2")
	m.Data = []byte(`[{"run_id":"r1","turn":1,"seq":1},{"run_id":"r1","turn":1,"seq":2}]`)
	if _, err := decode[TurnEvent](m, TurnEvents.spec, TurnEvents.spec.typeName); err == nil || !strings.Contains(err.Error(), "several") {
		t.Fatalf("decode of a batch: %v", err)
	}
}
