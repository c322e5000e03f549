package bus

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// The agent event is the one payload written and read once per line an
// agent prints, tens of thousands of times a second under load. Going
// through reflection and re-validating its raw parts made encoding one of
// the pipeline's largest costs; these appenders write the same bytes
// encoding/json would (a test and a fuzz target compare them), without
// either.

// jsonAppender is a payload that writes its own JSON, byte for byte what
// json.Marshal would write.
type jsonAppender interface {
	AppendJSON(dst []byte) ([]byte, error)
}

// marshal is json.Marshal, taking a payload's own appender when it has one.
func marshal(v any) ([]byte, error) {
	if p, ok := v.(*TurnEvent); ok && p == nil {
		return json.Marshal(v)
	}
	if a, ok := v.(jsonAppender); ok {
		return a.AppendJSON(make([]byte, 0, 512))
	}
	return json.Marshal(v)
}

// AppendJSON writes e as json.Marshal does.
func (e TurnEvent) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"run_id":`...)
	dst = AppendJSONString(dst, e.RunID)
	dst = append(dst, `,"turn":`...)
	dst = strconv.AppendInt(dst, int64(e.Turn), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, e.Seq, 10)
	dst = append(dst, `,"at":`...)
	var err error
	if dst, err = AppendJSONTime(dst, e.At); err != nil {
		return nil, err
	}
	dst = append(dst, `,"kind":`...)
	dst = AppendJSONString(dst, string(e.Kind))
	if e.SessionID != "" {
		dst = append(dst, `,"session_id":`...)
		dst = AppendJSONString(dst, e.SessionID)
	}
	if e.Text != "" {
		dst = append(dst, `,"text":`...)
		dst = AppendJSONString(dst, e.Text)
	}
	if e.Tool != nil {
		dst = append(dst, `,"tool":{"id":`...)
		dst = AppendJSONString(dst, e.Tool.ID)
		if e.Tool.Name != "" {
			dst = append(dst, `,"name":`...)
			dst = AppendJSONString(dst, e.Tool.Name)
		}
		if len(e.Tool.Input) > 0 {
			dst = append(dst, `,"input":`...)
			if dst, err = appendRawJSON(dst, e.Tool.Input); err != nil {
				return nil, fmt.Errorf("json: error calling MarshalJSON for type json.RawMessage: %w", err)
			}
		}
		if e.Tool.IsError {
			dst = append(dst, `,"is_error":true`...)
		}
		dst = append(dst, '}')
	}
	if e.Result != nil {
		// Once per turn, with floats: encoding/json's own rules apply.
		r, err := json.Marshal(e.Result)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"result":`...)
		dst = append(dst, r...)
	}
	if e.TrackerTool != nil {
		// Once per tracker tool call, a few a turn: encoding/json's own
		// rules apply.
		r, err := json.Marshal(e.TrackerTool)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"tracker_tool":`...)
		dst = append(dst, r...)
	}
	if len(e.Raw) > 0 {
		dst = append(dst, `,"raw":`...)
		if dst, err = appendRawJSON(dst, e.Raw); err != nil {
			return nil, fmt.Errorf("json: error calling MarshalJSON for type json.RawMessage: %w", err)
		}
	}
	return append(dst, '}'), nil
}

// appendRawJSON writes raw compacted and HTML-escaped, as encoding/json
// does with a json.RawMessage field; raw that is not JSON is an error.
func appendRawJSON(dst []byte, raw json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// AppendJSONTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds), refusing the years and zone offsets it refuses.
func AppendJSONTime(dst []byte, t time.Time) ([]byte, error) {
	_, off := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || off <= -24*3600 || off >= 24*3600 {
		_, err := t.MarshalJSON()
		return nil, fmt.Errorf("json: error calling MarshalJSON for type time.Time: %w", err)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}

const hexDigits = "0123456789abcdef"

// AppendJSONString writes s as a JSON string the way encoding/json does
// by default: <, > and & escaped for HTML, invalid UTF-8 as U+FFFD, and
// U+2028/U+2029 escaped.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
