// Package scheduler will be the single scheduling authority (CONTRACT §3):
// claims, the running set, the retry queue, dispatch order, concurrency,
// reconciliation and stall detection, durable in KV symphony_state. This
// first part holds the rules as pure, tested functions (policy.go); the
// component that applies them arrives with the rest of its issue.
package scheduler
