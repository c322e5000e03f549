package bus

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// Secret is a credential from WORKFLOW.md: either a literal or a $NAME
// reference to an environment variable. Its value cannot leave the process
// by accident: every way of printing, logging or marshalling it shows a mask,
// and JSON keeps only where it came from (the variable name), never the
// value. Only Value reveals it, and only the tracker calls that.
type Secret struct {
	env   string
	value string
	// set records, after a bus round trip (which drops the value), that
	// the secret had a value where it was loaded.
	set bool
}

// NewSecret returns a secret read from the environment variable env (empty
// for a literal from the file) with the given value.
func NewSecret(env, value string) Secret { return Secret{env: env, value: value} }

// Value reveals the secret. Call it only where the credential is used.
func (s Secret) Value() string { return s.value }

// Env is the environment variable the secret came from, "" for a literal.
func (s Secret) Env() string { return s.env }

// IsSet reports whether the secret has a non-empty value. An empty
// environment variable counts as missing.
func (s Secret) IsSet() bool { return s.value != "" || s.set }

// Resolve returns the value, re-reading the environment variable through
// getenv when the secret came from one (the value is not carried across the
// bus). A literal that crossed the bus cannot be resolved and returns "".
func (s Secret) Resolve(getenv func(string) string) string {
	if s.value != "" {
		return s.value
	}
	if s.env != "" {
		return getenv(s.env)
	}
	return ""
}

// String masks the value.
func (s Secret) String() string {
	switch {
	case !s.IsSet() && s.env != "":
		return "(unset: $" + s.env + ")"
	case !s.IsSet():
		return "(unset)"
	case s.env != "":
		return "****** (from $" + s.env + ")"
	}
	return "****** (literal)"
}

// GoString masks the value for %#v.
func (s Secret) GoString() string { return "bus.Secret{" + s.String() + "}" }

// Format masks the value for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue masks the value in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// secretJSON is what a Secret marshals to: where it comes from, never what
// it is.
type secretJSON struct {
	Env     string `json:"env,omitempty"`
	Literal bool   `json:"literal,omitempty"`
	Set     bool   `json:"set"`
}

// MarshalJSON writes the source of the secret, not its value.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(secretJSON{Env: s.env, Literal: s.env == "" && s.IsSet(), Set: s.IsSet()})
}

// UnmarshalJSON reads the source back; the value stays empty (see Resolve).
func (s *Secret) UnmarshalJSON(b []byte) error {
	var j secretJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Secret{env: j.Env, set: j.Set}
	return nil
}

// MarshalText masks the value for encoders that use text (YAML, TOML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
