package bus

import "time"

// Issue is the tracker-neutral issue every component works with. Optional
// fields are pointers so "absent" and "empty" stay distinct (the prompt sees
// null for an absent value).
type Issue struct {
	ID          string  `json:"id"`
	Identifier  string  `json:"identifier"`
	Title       string  `json:"title"`
	Description *string `json:"description"`
	// Priority is 1 (urgent) .. 4 (low); nil or 0 means none.
	Priority   *int    `json:"priority"`
	State      string  `json:"state"`
	BranchName *string `json:"branch_name"`
	URL        *string `json:"url"`
	AssigneeID *string `json:"assignee_id"`
	// Labels are trimmed, lowercased and de-duplicated.
	Labels    []string  `json:"labels"`
	BlockedBy []Blocker `json:"blocked_by"`
	// Dispatchable is false when the tracker adapter knows the issue must
	// not be dispatched (assignee filter, open blockers on Todo).
	Dispatchable bool       `json:"dispatchable"`
	CreatedAt    *time.Time `json:"created_at"`
	UpdatedAt    *time.Time `json:"updated_at"`
}

// Blocker is an issue that blocks another.
type Blocker struct {
	ID         *string `json:"id"`
	Identifier *string `json:"identifier"`
	State      *string `json:"state"`
}
