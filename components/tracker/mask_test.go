package tracker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

const maskKey = "lin_api_0123456789abcdef"

func TestMaskArgumentsHidesSecrets(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"query":"query { viewer { id } }"}`, `{"query":"query { viewer { id } }"}`},
		{`{"query":"mutation { x(k: \"` + maskKey + `\") }"}`, `{"query":"mutation { x(k: \"******\") }"}`},
		{`{"variables":{"apiKey":"abc","Authorization":{"bearer":"x"},"nested":[{"password":"p"}],"token":null}}`,
			`{"variables":{"Authorization":"******","apiKey":"******","nested":[{"password":"******"}],"token":null}}`},
		{`not json ` + maskKey, `"not json ******"`},
		{`{"a":1} {"b":2}`, `"{\"a\":1} {\"b\":2}"`},
		{``, ``},
	} {
		got := string(maskArguments(json.RawMessage(c.in), []string{maskKey}))
		if got != c.want {
			t.Errorf("mask %s:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	big := `{"query":"` + strings.Repeat("é", bus.ToolRecordMaxBytes) + `"}`
	got := maskArguments(json.RawMessage(big), nil)
	var s string
	if len(got) > bus.ToolRecordMaxBytes || json.Unmarshal(got, &s) != nil || !strings.HasSuffix(s, "(cut)") {
		t.Errorf("a large record: %d bytes, %.80s", len(got), got)
	}
}

// FuzzMaskArguments: whatever the agent sends, the record is JSON within
// its bound and never holds the key.
func FuzzMaskArguments(f *testing.F) {
	for _, s := range []string{`{"query":"q","variables":{"token":"t"}}`, `[` + maskKey + `]`, `"` + maskKey + `"`, `{"a":{"b":[1,2,{"c":"` + maskKey + `"}]}}`, `nul`, `{"x":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > bus.ToolArgumentsMaxBytes {
			return
		}
		got := maskArguments(raw, []string{maskKey})
		if len(got) == 0 {
			return
		}
		if len(got) > bus.ToolRecordMaxBytes || !json.Valid(got) {
			t.Fatalf("record %d bytes, valid %v", len(got), json.Valid(got))
		}
		if strings.Contains(string(got), maskKey) {
			t.Fatalf("the key survives: %s", got)
		}
	})
}

// FuzzScrubJSON: whatever a server answers, the scrubbed answer holds the
// secret neither literally nor once decoded, stays valid JSON when it was,
// and is unchanged when it never held the secret.
func FuzzScrubJSON(f *testing.F) {
	for _, s := range []string{`{"a":"lin_api_0123456789abcdef"}`, `{"a":"lin_api_0123456789abcde\u0066","<":[1,"x"]}`,
		`["\u006cin_api_0123456789abcdef"]`, `{"lin_api_0123456789abcde\u0066":1}`, `not json \u0066`, `{"a":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := scrubJSON(raw, maskKey)
		if strings.Contains(string(out), maskKey) {
			t.Fatalf("literal secret left in %q", out)
		}
		var in, back any
		if json.Unmarshal(raw, &in) != nil {
			return
		}
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("valid JSON %q scrubbed to invalid %q: %v", raw, out, err)
		}
		b, _ := json.Marshal(back)
		if strings.Contains(string(b), maskKey) {
			t.Fatalf("decoded secret left in %q", out)
		}
		if a, _ := json.Marshal(in); !strings.Contains(string(a), maskKey) && string(a) != string(b) {
			t.Fatalf("an answer without the secret changed: %q -> %q", raw, out)
		}
	})
}
