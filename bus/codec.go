package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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
	data, err := json.Marshal(v)
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
// unmarshals its body into a T.
func decode[T any](m *nats.Msg, spec Spec, typeName string) (T, error) {
	var v T
	if got := m.Header.Get(HeaderType); got != typeName {
		return v, fmt.Errorf("%w on %s: %s header is %q, want %q", ErrDecode, m.Subject, HeaderType, got, typeName)
	}
	schema, err := strconv.Atoi(m.Header.Get(HeaderSchema))
	if err != nil || schema < 1 {
		return v, fmt.Errorf("%w on %s: %s header %q is not a positive integer", ErrDecode, m.Subject, HeaderSchema, m.Header.Get(HeaderSchema))
	}
	if schema > spec.Schema {
		return v, fmt.Errorf("%w on %s: schema %d of %s is newer than this build understands (%d)", ErrDecode, m.Subject, schema, typeName, spec.Schema)
	}
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return v, fmt.Errorf("%w on %s: %s body: %v", ErrDecode, m.Subject, typeName, err)
	}
	return v, nil
}
