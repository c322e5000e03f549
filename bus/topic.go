package bus

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/symphony-oss/symphony/bus/safeid"
)

// Kind says how a subject is used.
type Kind string

const (
	// KindEvent is a one-way message: published, observed by any number of
	// subscribers.
	KindEvent Kind = "event"
	// KindRequest is a request answered by exactly one responder (a queue group).
	KindRequest Kind = "request"
)

// Spec describes one subject family: its pattern, the payload it carries, who
// produces it, who consumes it and where it is stored. The catalogue of Specs
// (Catalogue) is rendered into subjects.md; a test keeps the two in step.
type Spec struct {
	// Pattern is the subject with named placeholders, e.g.
	// "symphony.run.{run_id}.{event}". Each placeholder is one token.
	Pattern string
	// Kind is event or request.
	Kind Kind
	// Payload is the Go type name of the message body ("bus.RunEvent"); for a
	// request it is "bus.Req → bus.Resp".
	Payload string
	// Schema is the payload's schema version, sent as the Symphony-Schema header.
	Schema int
	// Producer is the component that publishes (or, for requests, asks).
	Producer string
	// Consumers are the components that subscribe (or, for requests, answer).
	Consumers []string
	// Stream names the JetStream stream that persists it, or "" for core NATS.
	Stream string
	// Doc says what the message means, in one sentence.
	Doc string
	// Batches: a stored message may hold several payloads, a JSON array of
	// them (schema 2 of TurnEvents, see batch.go); readers hand each on.
	Batches bool

	// typeName is the bare Go type name sent as Symphony-Type.
	typeName string
	// respType is the bare Go type name of a request's reply.
	respType string
}

// TypeName is the value of the Symphony-Type header for this subject's payload.
func (s Spec) TypeName() string { return s.typeName }

// Storage is a human description of where messages live.
func (s Spec) Storage() string {
	if s.Stream == "" {
		return "core (not stored)"
	}
	return "stream " + s.Stream
}

// placeholders returns the names of the pattern's {placeholders}, in order.
func (s Spec) placeholders() []string {
	var names []string
	for _, tok := range strings.Split(s.Pattern, ".") {
		if strings.HasPrefix(tok, "{") && strings.HasSuffix(tok, "}") {
			names = append(names, tok[1:len(tok)-1])
		}
	}
	return names
}

// ErrBadToken is returned when a value cannot be used as a subject token.
var ErrBadToken = errors.New("bad subject token")

// build fills the pattern's placeholders with tokens. With wildcards set,
// placeholders without a token become "*"; otherwise every placeholder must be
// given.
func (s Spec) build(tokens []string, wildcards bool) (string, error) {
	names := s.placeholders()
	if len(tokens) > len(names) || (!wildcards && len(tokens) != len(names)) {
		return "", fmt.Errorf("%w: subject %s takes %d token(s) %v, got %d", ErrBadToken, s.Pattern, len(names), names, len(tokens))
	}
	parts := strings.Split(s.Pattern, ".")
	i := 0
	for p, tok := range parts {
		if !strings.HasPrefix(tok, "{") {
			continue
		}
		if i < len(tokens) {
			// The identifier rule: no dots (they would add tokens), no
			// wildcards, no whitespace, nothing a shell or a path misreads.
			if !safeid.Valid(tokens[i]) {
				return "", fmt.Errorf("%w: %s = %s in subject %s must match %s", ErrBadToken, names[i], safeid.Quote(tokens[i]), s.Pattern, safeid.Rule)
			}
			parts[p] = tokens[i]
		} else {
			parts[p] = "*"
		}
		i++
	}
	return strings.Join(parts, "."), nil
}

// Topic is a typed event subject family: every message on it carries a T.
type Topic[T any] struct{ spec Spec }

// Spec returns the subject's description.
func (t Topic[T]) Spec() Spec { return t.spec }

// Subject returns the concrete subject for the given placeholder values, which
// must all be given and must each match [A-Za-z0-9_-]+.
func (t Topic[T]) Subject(tokens ...string) (string, error) { return t.spec.build(tokens, false) }

// Filter returns a subscription filter: the given leading placeholder values
// filled in, the rest "*".
func (t Topic[T]) Filter(tokens ...string) (string, error) { return t.spec.build(tokens, true) }

// Request is a typed request/reply subject family: a Req is asked, a Resp or a
// RemoteError comes back.
type Request[Req, Resp any] struct{ spec Spec }

// Spec returns the subject's description.
func (r Request[Req, Resp]) Spec() Spec { return r.spec }

// Subject returns the concrete subject for the given placeholder values.
func (r Request[Req, Resp]) Subject(tokens ...string) (string, error) {
	return r.spec.build(tokens, false)
}

// Filter returns a subscription filter with the remaining placeholders "*".
func (r Request[Req, Resp]) Filter(tokens ...string) (string, error) {
	return r.spec.build(tokens, true)
}

func typeName[T any]() string { return reflect.TypeFor[T]().Name() }

// event declares an event subject family carrying T.
func event[T any](s Spec) Topic[T] {
	s.Kind = KindEvent
	s.typeName = typeName[T]()
	s.Payload = "bus." + s.typeName
	if s.Schema == 0 {
		s.Schema = 1
	}
	return Topic[T]{spec: s}
}

// request declares a request subject family asking Req and answered with Resp.
func request[Req, Resp any](s Spec) Request[Req, Resp] {
	s.Kind = KindRequest
	s.typeName = typeName[Req]()
	s.respType = typeName[Resp]()
	s.Payload = "bus." + s.typeName + " → bus." + s.respType
	if s.Schema == 0 {
		s.Schema = 1
	}
	return Request[Req, Resp]{spec: s}
}
