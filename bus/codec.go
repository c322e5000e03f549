package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/nats-io/nats.go"
)

// Header names carried by every Symphony message.
const (
	HeaderType   = "Symphony-Type"
	HeaderSchema = "Symphony-Schema"
	// HeaderErrorCode and HeaderError carry a request's failure back to the
	// asker instead of a payload.
	HeaderErrorCode = "Symphony-Error-Code"
	HeaderError     = "Symphony-Error"
)

// ErrDecode is wrapped by every error about a message that could not be
// turned back into its payload type.
var ErrDecode = errors.New("cannot decode message")

// encode builds a NATS message for subject carrying v as JSON with the type
// and schema headers of spec.
func encode(subject string, spec Spec, typeName string, v any) (*nats.Msg, error) {
	data, err := marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s for %s: %w", typeName, subject, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(HeaderType, typeName)
	m.Header.Set(HeaderSchema, strconv.Itoa(spec.Schema))
	return m, nil
}

// decode checks the headers of m against the expected type and schema and
// unmarshals its body into a T. The body is read by the encoding/json v1
// semantics as implemented on the json v2 engine (the one Go ships as
// encoding/json behind GOEXPERIMENT=jsonv2): same results, about three
// times faster with one allocation where v1 makes eight, which is most of
// replaying a long run.
func decode[T any](m *nats.Msg, spec Spec, typeName string) (T, error) {
	var v T
	err := decodeInto(m, spec, typeName, &v)
	return v, err
}

// decodeInto is decode into a value the caller holds (a reader of many
// events decodes straight into one slice of them).
func decodeInto[T any](m *nats.Msg, spec Spec, typeName string, v *T) error {
	if err := checkHeaders(m, spec, typeName); err != nil {
		return err
	}
	if spec.Batches && isBatch(m.Data) {
		return fmt.Errorf("%w on %s: the message holds several %s payloads (read it with a reader that splits them)", ErrDecode, m.Subject, typeName)
	}
	return unmarshalPayload(m.Subject, typeName, m.Data, v)
}

// checkHeaders refuses a message of another type or a newer schema.
func checkHeaders(m *nats.Msg, spec Spec, typeName string) error {
	if got := m.Header.Get(HeaderType); got != typeName {
		return fmt.Errorf("%w on %s: %s header is %q, want %q", ErrDecode, m.Subject, HeaderType, got, typeName)
	}
	schema, err := strconv.Atoi(m.Header.Get(HeaderSchema))
	if err != nil || schema < 1 {
		return fmt.Errorf("%w on %s: %s header %q is not a positive integer", ErrDecode, m.Subject, HeaderSchema, m.Header.Get(HeaderSchema))
	}
	if schema > spec.Schema {
		return fmt.Errorf("%w on %s: schema %d of %s is newer than this build understands (%d)", ErrDecode, m.Subject, schema, typeName, spec.Schema)
	}
	return nil
}

// decodeAt checks m as decode does but reads only the payload's "at" time,
// and checks the payload is JSON (see payloadAt).
func decodeAt(m *nats.Msg, spec Spec, typeName string) (time.Time, error) {
	if err := checkHeaders(m, spec, typeName); err != nil {
		return time.Time{}, err
	}
	return payloadAt(m.Subject, typeName, m.Data)
}

// payloadAt reads a payload's "at" time and checks the payload is JSON.
// Payloads written by this build start with run_id, turn, seq and at (see
// TurnEvent.AppendJSON); that prefix is read directly, anything else
// through encoding/json.
func payloadAt(subject, typeName string, data []byte) (time.Time, error) {
	if at, ok := leadingAt(data); ok && json.Valid(data) {
		return at, nil
	}
	var v struct {
		At time.Time `json:"at"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return time.Time{}, fmt.Errorf("%w on %s: %s body: %v", ErrDecode, subject, typeName, err)
	}
	return v.At, nil
}

// unmarshalPayload decodes one payload of a message whose headers were
// checked (a message of a batched topic may hold several).
func unmarshalPayload(subject, typeName string, data []byte, v any) error {
	if err := jsonv1.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w on %s: %s body: %v", ErrDecode, subject, typeName, err)
	}
	return nil
}

// leadingAt reads the time of a payload that starts exactly
// {"run_id":"…","turn":N,"seq":N,"at":"…", the way this build writes agent
// events; ok is false for anything else.
func leadingAt(data []byte) (time.Time, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"run_id":"`))
	if !ok {
		return time.Time{}, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return time.Time{}, false
	}
	rest = rest[end+1:]
	for _, key := range []string{`,"turn":`, `,"seq":`} {
		if rest, ok = bytes.CutPrefix(rest, []byte(key)); !ok {
			return time.Time{}, false
		}
		i := 0
		if i < len(rest) && rest[i] == '-' {
			i++
		}
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || rest[i-1] == '-' {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"at":"`)); !ok {
		return time.Time{}, false
	}
	end = bytes.IndexByte(rest, '"')
	if end < 0 {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, string(rest[:end]))
	if err != nil {
		return time.Time{}, false
	}
	return at, true
}

// The methods below decode a stored message read with ReadStored or
// FollowStored, for readers that walk a stream's messages themselves
// (run history, in package runlog). They check and split a message in
// steps, so a reader decides per step what a fault costs: a message of
// another type is skipped whole, a damaged event of a batch only itself.

// CheckHeaders refuses a message of another type than the topic's, or of
// a newer schema than this build reads (an error wrapping ErrDecode).
func (t Topic[T]) CheckHeaders(m *nats.Msg) error { return checkHeaders(m, t.spec, t.spec.typeName) }

// EachPayload calls fn with every payload a stored message body holds: the
// body itself, or, for a topic whose messages may hold several
// (Spec.Batches) and a body that is a JSON array, each element with its
// index in the array (no copies). A malformed array yields the elements
// before the fault and an error saying where it is.
func (t Topic[T]) EachPayload(data []byte, fn func(payload []byte, index int)) error {
	return eachPayload(t.spec, data, fn)
}

// DecodePayload decodes one payload of a message on subject into v (a
// reader of many events decodes straight into a slice of them).
func (t Topic[T]) DecodePayload(subject string, payload []byte, v *T) error {
	return unmarshalPayload(subject, t.spec.typeName, payload, v)
}

// PayloadAt reads only a payload's "at" time, and checks the payload is
// JSON: a reader that passes the stored bytes on undecoded needs no more.
func (t Topic[T]) PayloadAt(subject string, payload []byte) (time.Time, error) {
	return payloadAt(subject, t.spec.typeName, payload)
}

// Encode builds the message that carries v on subject, with the topic's
// type and schema headers, as Publish sends it.
func (t Topic[T]) Encode(subject string, v T) (*nats.Msg, error) {
	return encode(subject, t.spec, t.spec.typeName, v)
}
