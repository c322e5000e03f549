package workflowfile

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// The codex section's approval and sandbox values are Codex's own (spec
// §5.3.6): Symphony passes them through to thread/start and turn/start.
// The loader checks only what the schema of the targeted app-server
// (codex-cli 0.169.0, `codex app-server generate-json-schema`) makes
// certain — the string enums, the one key of an approval object, the
// "type" of a sandbox policy — so a typo fails at load time, naming the
// key and what is allowed, instead of failing every run at thread/start.
const (
	// DefaultCodexApprovalPolicy is "never": Codex then asks for no
	// approval at all, so a headless run can never sit waiting for one
	// (a refused sandboxed action comes back to the model as a failure it
	// can work around). The reference's default, a {"reject": …} object,
	// is refused by codex 0.169.0 ("unknown variant `reject`"), and its
	// successor {"granular": …} is accepted only from a client that
	// declares the experimentalApi capability; "never" is what the
	// reference's own WORKFLOW.md sets.
	DefaultCodexApprovalPolicy = "never"
	// DefaultCodexThreadSandbox is the reference's default.
	DefaultCodexThreadSandbox = "workspace-write"
	// MaxCodexJSON bounds the JSON built from approval_policy or
	// turn_sandbox_policy: both are a handful of keys, and the value
	// travels in every config snapshot and every thread/turn start.
	MaxCodexJSON = 4096
)

// Codex 0.169.0's values (AskForApproval, SandboxMode, SandboxPolicy).
var (
	codexApprovalStrings = []string{"untrusted", "on-request", "never"}
	codexApprovalObjects = []string{"granular"}
	// The granular object's flags; the first three are required.
	codexGranularFlags = []string{"sandbox_approval", "rules", "mcp_elicitations", "request_permissions", "skill_approval"}
	codexSandboxModes  = []string{"read-only", "workspace-write", "danger-full-access"}
	codexPolicyTypes   = []string{"dangerFullAccess", "readOnly", "externalSandbox", "workspaceWrite"}
)

func (d *decoder) codex(m map[string]any) bus.CodexConfig {
	c := bus.CodexConfig{
		Command:       d.str(m, "command", "codex.command", DefaultCodexCommand),
		TurnTimeoutMS: d.positive(m, "turn_timeout_ms", "codex.turn_timeout_ms", DefaultTurnTimeoutMS),
		ReadTimeoutMS: d.positive(m, "read_timeout_ms", "codex.read_timeout_ms", DefaultCodexReadTimeoutMS),
	}
	c.StallTimeoutMS, _ = d.integer(m, "stall_timeout_ms", "codex.stall_timeout_ms", DefaultStallTimeoutMS)
	if strings.TrimSpace(c.Command) == "" {
		d.fail("codex.command", "must not be empty")
	}
	c.ApprovalPolicy = d.approvalPolicy(m)
	c.ThreadSandbox = d.str(m, "thread_sandbox", "codex.thread_sandbox", DefaultCodexThreadSandbox)
	if !slices.Contains(codexSandboxModes, c.ThreadSandbox) {
		d.fail("codex.thread_sandbox", "unknown sandbox mode %q (want %s)", c.ThreadSandbox, orList(codexSandboxModes))
	}
	c.TurnSandboxPolicy = d.turnSandboxPolicy(m)
	return c
}

// approvalPolicy reads codex.approval_policy: one of Codex's strings, or
// an object with the one key it knows.
func (d *decoder) approvalPolicy(m map[string]any) json.RawMessage {
	const key = "codex.approval_policy"
	def := json.RawMessage(strconv.Quote(DefaultCodexApprovalPolicy))
	v, ok := d.value(m, "approval_policy", key)
	if !ok {
		return def
	}
	switch p := v.(type) {
	case string:
		if !slices.Contains(codexApprovalStrings, p) {
			d.fail(key, "unknown policy %q (want %s, or a map with the one key %s)", p, orList(codexApprovalStrings), orList(codexApprovalObjects))
			return def
		}
	case map[string]any:
		if !d.approvalObject(key, p) {
			return def
		}
	default:
		d.fail(key, "must be a string (%s) or a map with the one key %s, got %s", orList(codexApprovalStrings), orList(codexApprovalObjects), describe(v))
		return def
	}
	raw, err := boundedJSON(v)
	if err != nil {
		d.fail(key, "%v", err)
		return def
	}
	return raw
}

func (d *decoder) approvalObject(key string, p map[string]any) bool {
	keys := sortedKeys(p)
	if len(keys) != 1 || !slices.Contains(codexApprovalObjects, keys[0]) {
		hint := ""
		if slices.Contains(keys, "reject") {
			hint = "; codex 0.169.0 refuses the older reject form"
		}
		d.fail(key, "a map must have exactly one key, %s; got %s%s", orList(codexApprovalObjects), quoteList(keys), hint)
		return false
	}
	full := key + "." + keys[0]
	flags, isMap := p[keys[0]].(map[string]any)
	if !isMap {
		d.fail(full, "must be a map of %s flags, got %s", orList(codexGranularFlags), describe(p[keys[0]]))
		return false
	}
	for i, name := range codexGranularFlags {
		f, present := flags[name]
		if !present && i < 3 {
			d.fail(full+"."+name, "required (true or false)")
			return false
		}
		if _, isBool := f.(bool); present && !isBool {
			d.fail(full+"."+name, "must be true or false, got %s", describe(f))
			return false
		}
	}
	return true
}

// turnSandboxPolicy reads codex.turn_sandbox_policy: absent means nil, for
// the backend to build a workspace-write policy rooted at each run's
// workspace; otherwise a map whose "type" Codex knows, passed on whole.
func (d *decoder) turnSandboxPolicy(m map[string]any) json.RawMessage {
	const key = "codex.turn_sandbox_policy"
	v, ok := d.value(m, "turn_sandbox_policy", key)
	if !ok {
		return nil
	}
	p, isMap := v.(map[string]any)
	if !isMap {
		d.fail(key, "must be a map with a type (%s), got %s", orList(codexPolicyTypes), describe(v))
		return nil
	}
	t, isStr := p["type"].(string)
	if !isStr || !slices.Contains(codexPolicyTypes, t) {
		got := "no type"
		if p["type"] != nil {
			got = "type " + describe(p["type"])
		}
		d.fail(key+".type", "unknown sandbox policy type (want %s), got %s", orList(codexPolicyTypes), got)
		return nil
	}
	raw, err := boundedJSON(p)
	if err != nil {
		d.fail(key, "%v", err)
		return nil
	}
	return raw
}

// configures reports whether the front matter has a section key that is a
// map (an empty map counts: the operator wrote the section).
func configures(root map[string]any, key string) bool {
	_, ok := root[key].(map[string]any)
	return ok
}

// boundedJSON encodes a decoded YAML value as compact JSON (map keys
// sorted), giving up as soon as the output passes MaxCodexJSON: a value
// built from aliases can be far larger than its bytes in the file.
func boundedJSON(v any) (json.RawMessage, error) {
	var b []byte
	var enc func(v any) error
	enc = func(v any) error {
		if len(b) > MaxCodexJSON {
			return fmt.Errorf("is longer than %d bytes as JSON", MaxCodexJSON)
		}
		switch x := v.(type) {
		case map[string]any:
			b = append(b, '{')
			for i, k := range sortedKeys(x) {
				if i > 0 {
					b = append(b, ',')
				}
				q, _ := json.Marshal(k)
				b = append(append(b, q...), ':')
				if err := enc(x[k]); err != nil {
					return err
				}
			}
			b = append(b, '}')
		case []any:
			b = append(b, '[')
			for i, e := range x {
				if i > 0 {
					b = append(b, ',')
				}
				if err := enc(e); err != nil {
					return err
				}
			}
			b = append(b, ']')
		default:
			// Scalars: strings, numbers, bools, null. NaN and ±Inf are
			// refused here (JSON has no spelling for them).
			s, err := json.Marshal(x)
			if err != nil {
				return fmt.Errorf("holds %s, which JSON cannot carry", describe(x))
			}
			b = append(b, s...)
		}
		return nil
	}
	if err := enc(v); err != nil {
		return nil, err
	}
	if len(b) > MaxCodexJSON {
		return nil, fmt.Errorf("is longer than %d bytes as JSON", MaxCodexJSON)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("cannot be carried as JSON")
	}
	return b, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// orList spells values for a message: "a, b or c".
func orList(l []string) string {
	q := quoteList(l)
	if i := strings.LastIndex(q, ", "); i >= 0 {
		q = q[:i] + " or " + q[i+2:]
	}
	return q
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
