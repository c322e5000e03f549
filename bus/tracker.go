package bus

import "time"

// IssuesByStates asks the tracker for the issues in the given states (the
// scheduler's candidates, or terminal issues for the startup sweep).
type IssuesByStates struct {
	States []string `json:"states"`
	// Outline asks for outlines (Issue.Outline): what dispatch and
	// reconciliation read, without descriptions and blockers.
	Outline bool `json:"outline,omitempty"`
}

// IssuesByIDs asks the tracker for the current state of specific issues.
// The reply holds every issue still present; an issue that no longer exists
// is simply absent. Any failure fails the whole request.
type IssuesByIDs struct {
	IDs []string `json:"ids"`
	// Outline asks for outlines (Issue.Outline).
	Outline bool `json:"outline,omitempty"`
}

// IssueList is the tracker's answer: normalized issues and when they were
// fetched (the scheduler compares it with run end times to ignore stale
// snapshots).
type IssueList struct {
	Issues    []Issue   `json:"issues"`
	FetchedAt time.Time `json:"fetched_at"`
	// Dropped counts malformed records left out of a state listing (each is
	// logged with its reason by the tracker).
	Dropped int `json:"dropped,omitempty"`
}

// CandidateSnapshot is published after every successful poll. Its issues
// are outlines (Issue.Outline); a large one crosses the bus in parts
// (parts.go), put back together for each subscriber.
type CandidateSnapshot struct {
	IssueList
	// States are the active states the poll asked for.
	States []string `json:"states"`
	// ConfigVersion is the workflow config version the poll ran under.
	ConfigVersion int64 `json:"config_version"`
	// DurationMS is how long the fetch took.
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// Tracker error classes (the Code of a RemoteError from a tracker request
// and the Class of a PollFailed).
const (
	TrackerConfigError     = "config_error"
	TrackerMissingSecret   = "missing_secret"
	TrackerRequestError    = "request_error"
	TrackerStatusError     = "status_error"
	TrackerGraphQLError    = "graphql_error"
	TrackerMalformed       = "malformed_payload"
	TrackerPaginationError = "pagination_error"
	TrackerRateLimited     = "rate_limited"
)

// PollFailed is published when a poll could not fetch candidates. Running
// agents are unaffected; dispatch waits for the next good poll.
type PollFailed struct {
	Class   string    `json:"class"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
	// RetryAfterMS is how long the tracker waits before polling again when
	// the provider asked it to slow down; 0 otherwise.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// DurationMS is how long the failed fetch took.
	DurationMS int64 `json:"duration_ms,omitempty"`
}
