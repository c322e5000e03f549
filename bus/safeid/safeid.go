// Package safeid is the one check every place that turns outside input (an
// issue identifier) into a path, a process argument or a subject token must
// pass: ^[A-Za-z0-9_-]+$. Nothing is sanitized: an identifier either passes
// as it is or is refused with an error that shows it.
package safeid

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// Rule is the allow-list, for messages and documentation.
const Rule = `^[A-Za-z0-9_-]+$`

var re = regexp.MustCompile(Rule)

// UnsafeIdentifierError reports an identifier that fails the rule.
type UnsafeIdentifierError struct {
	// Value is the identifier as received (possibly long or binary).
	Value string
}

func (e *UnsafeIdentifierError) Error() string {
	return fmt.Sprintf("unsafe identifier %s: must match %s (refused, not sanitized)", Quote(e.Value), Rule)
}

// Code classes the error on the bus.
func (e *UnsafeIdentifierError) Code() string { return Code }

// Code is the wire error code of an UnsafeIdentifierError (bus declares
// it as CodeUnsafeIdentifier; safeid sits below bus and cannot import it).
const Code = "unsafe_identifier"

// Check returns nil when id matches the rule, an *UnsafeIdentifierError
// otherwise.
func Check(id string) error {
	if re.MatchString(id) {
		return nil
	}
	return &UnsafeIdentifierError{Value: id}
}

// Valid reports whether id matches the rule.
func Valid(id string) bool { return re.MatchString(id) }

// Quote renders a value for a message: quoted, control characters and
// invalid UTF-8 escaped, cut to 64 bytes.
func Quote(s string) string {
	const max = 64
	cut := false
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], true
	}
	q := strconv.Quote(s)
	if cut {
		q += "…"
	}
	return q
}
