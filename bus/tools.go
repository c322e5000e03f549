package bus

import "encoding/json"

// Tools the tracker offers a run's agent (issue #21): each adapter declares
// them and runs them host-side with its own credential, so the agent gets
// results and never the key. These are the payloads of
// symphony.tracker.tools and symphony.tracker.tool.

// Bounds of a tool call. Arguments come from the agent (outside input); a
// result crosses the bus in one message.
const (
	// ToolArgumentsMaxBytes bounds a call's arguments (JSON).
	ToolArgumentsMaxBytes = 64 << 10
	// ToolOutputMaxBytes bounds a result's output; a larger answer is a
	// failure result that says so (the call did run).
	ToolOutputMaxBytes = 1 << 20
)

// Failure classes of a tool result (ToolResult.Class), besides the tracker
// classes (TrackerRequestError, TrackerRateLimited, TrackerGraphQLError…).
const (
	// ToolBadArguments: the arguments do not fit the tool's input schema
	// (unknown or missing field, wrong type, over a bound).
	ToolBadArguments = "bad_arguments"
	// ToolUnknown: the tracker offers no tool of that name.
	ToolUnknown = "unknown_tool"
	// ToolRefused: a rule refused the call (ToolResult.Rule names it).
	ToolRefused = "refused"
	// ToolOutputTooLarge: the answer is over ToolOutputMaxBytes.
	ToolOutputTooLarge = "output_too_large"
)

// ListTools opens the tool session of a run (or finds it open) and asks
// which tools it offers.
type ListTools struct {
	RunID string   `json:"run_id"`
	Issue IssueRef `json:"issue"`
}

// ToolSpecs is the tracker's answer: the tools of the adapter in force.
type ToolSpecs struct {
	// Tracker is the adapter's kind ("linear", "files").
	Tracker string `json:"tracker"`
	// ConfigVersion is the workflow config the adapter was built from.
	ConfigVersion int64      `json:"config_version"`
	Tools         []ToolSpec `json:"tools"`
}

// ToolSpec describes one tool the way MCP lists it.
type ToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// InputSchema is the JSON Schema of the arguments (an object).
	InputSchema json.RawMessage `json:"input_schema"`
	// Mutates says the tool can change the tracker (a mutation, a state
	// change, a comment), not only read it.
	Mutates bool `json:"mutates"`
}

// CallTool asks the tracker to run one tool for a run. Issue is the run's
// own issue: the only one the tool may act on. It is set by Symphony, never
// by the agent (the agent supplies Tool and Arguments).
type CallTool struct {
	RunID string   `json:"run_id"`
	Issue IssueRef `json:"issue"`
	Tool  string   `json:"tool"`
	// Arguments are the agent's input, a JSON object (at most
	// ToolArgumentsMaxBytes; absent or null reads as {}).
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// ToolResult is the outcome of a call. A failure is a result, never a
// request error: the agent reads why and its session goes on.
type ToolResult struct {
	OK bool `json:"ok"`
	// Output is the tool's answer as JSON (for linear_graphql the GraphQL
	// response, kept when it carries errors, for debugging).
	Output json.RawMessage `json:"output,omitempty"`
	// Error says what went wrong when OK is false; Class classes it
	// (a Tool* or Tracker* class).
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`
	// Rule names the rule that refused the call (Class ToolRefused, or
	// TrackerRateLimited when one of Symphony's own bounds on the
	// provider's quota held it back: github_api's quota_reserve and
	// run_write_rate).
	Rule       string `json:"rule,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// RateLimit is the provider's rate-limit signal on this call, when it
	// sent one.
	RateLimit *ToolRateLimit `json:"rate_limit,omitempty"`
	// Arguments are the call's arguments as the run's record keeps them:
	// values that look like secrets masked, cut to ToolRecordMaxBytes.
	// The MCP server does not pass them back to the agent.
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// ToolRecordMaxBytes bounds what a run's record keeps of a tool call's
// arguments and output.
const ToolRecordMaxBytes = 8 << 10

// ReleaseTools ends the tool session of a run.
type ReleaseTools struct {
	RunID string `json:"run_id"`
}

// ToolsReleased says whether the run had a session.
type ToolsReleased struct {
	Found bool `json:"found"`
}

// ListRunTools is the MCP server's request for its run's tools (the run is
// the subject's {run_id}).
type ListRunTools struct{}

// RunTool is the MCP server's request to run one of its run's tools: the
// agent's choice of tool and its arguments, nothing else (the runner adds
// the run's issue).
type RunTool struct {
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// ToolRateLimit is a provider's rate-limit signal on a tool call. The agent
// and the poller share one quota: a limited call makes the tracker wait,
// polls included.
type ToolRateLimit struct {
	// Headers are the rate-limit headers as the provider sent them
	// (X-RateLimit-*, X-Complexity, Retry-After).
	Headers map[string]string `json:"headers,omitempty"`
	// Limited: the provider refused the call for its rate limit.
	Limited bool `json:"limited,omitempty"`
	// RetryAfterMS is how long the tracker now waits before asking again.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}
