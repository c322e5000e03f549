package tracker

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// A tool call is recorded with the run (transcript, JSONL export, replay,
// dashboard), which operators share more widely than the tracker's key.
// maskArguments keeps what the agent asked while hiding what looks like a
// secret: the adapter's credential wherever it appears, and the value of
// any member whose name says it holds one.

// secretName matches member names whose values are secrets.
var secretName = regexp.MustCompile(`(?i)(token|secret|passw(or)?d|api[_-]?key|authori[sz]ation|cookie|credential|private[_-]?key|session[_-]?key)`)

// masked replaces a secret.
const masked = "******"

// maskArguments is raw as the record keeps it: JSON with secrets masked,
// cut to bus.ToolRecordMaxBytes (then a JSON string of its start). Input
// that is not JSON is recorded as a JSON string, masked.
func maskArguments(raw json.RawMessage, secrets []string) json.RawMessage {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var out []byte
	if err := dec.Decode(&v); err == nil && !dec.More() {
		out, _ = json.Marshal(maskValue(v, secrets))
	}
	if out == nil {
		out, _ = json.Marshal(maskString(string(trimmed), secrets))
	}
	if len(out) <= bus.ToolRecordMaxBytes {
		return out
	}
	// The record is the start of the JSON text, as a JSON string; its
	// escapes can make it longer than the text, so cut until it fits.
	// Every secret is masked before the cut, so none is left in part.
	n := bus.ToolRecordMaxBytes - 64
	for {
		cut := string(out[:n])
		for !utf8.ValidString(cut) {
			cut = cut[:len(cut)-1]
		}
		rec, _ := json.Marshal(cut + " … (cut)")
		if len(rec) <= bus.ToolRecordMaxBytes {
			return rec
		}
		n = n*bus.ToolRecordMaxBytes/len(rec) - 16
	}
}

// maskValue masks a decoded JSON value.
func maskValue(v any, secrets []string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if secretName.MatchString(k) {
				if e != nil {
					x[k] = masked
				}
				continue
			}
			x[k] = maskValue(e, secrets)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskValue(e, secrets)
		}
		return x
	case string:
		return maskString(x, secrets)
	}
	return v
}

// maskString replaces every occurrence of a secret in s.
func maskString(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, masked)
		}
	}
	return s
}

// scrubJSON removes secret from an answer returned to the agent. A
// literal occurrence is replaced in the bytes; JSON may also spell it
// with escapes (\u0067…, whole or in part), so when the answer is JSON
// and holds an escape, it is decoded and each string (keys included)
// scrubbed, and re-encoded only when one held the secret. The work is
// linear in the answer, which is bounded (MaxResponseBytes).
func scrubJSON(raw []byte, secret string) []byte {
	if secret == "" {
		return raw
	}
	raw = bytes.ReplaceAll(raw, []byte(secret), []byte("[redacted]"))
	if !bytes.Contains(raw, []byte(`\`)) {
		return raw
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		return raw
	}
	found := false
	v = scrubValue(v, secret, &found)
	if !found {
		return raw
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every decoded value encodes; if one did not, keep nothing
		// rather than the secret.
		return []byte(`"[redacted: the answer held the credential]"`)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// scrubValue replaces secret in every string of v, keys included, and
// sets found when it did.
func scrubValue(v any, secret string, found *bool) any {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, secret) {
			*found = true
			return strings.ReplaceAll(x, secret, "[redacted]")
		}
		return x
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i], secret, found)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if strings.Contains(k, secret) {
				*found = true
				k = strings.ReplaceAll(k, secret, "[redacted]")
			}
			out[k] = scrubValue(e, secret, found)
		}
		return out
	}
	return v
}
