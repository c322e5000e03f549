// Package bus is Symphony's kernel: an embedded NATS server with JetStream, the
// catalogue of every subject and payload type, and typed helpers to publish,
// subscribe, request and persist.
//
// It is the only package that spells a subject. Components import bus and plain
// libraries, never each other; everything they say to one another crosses a
// subject declared here, so the whole conversation of a running Symphony can be
// watched with `go tool nats sub 'symphony.>'` and documented in subjects.md.
//
// Guarantees, in plain words:
//
//   - Payloads are Go types encoded as JSON. Every message carries the headers
//     Symphony-Type (the payload's type name) and Symphony-Schema (its schema
//     version), so a person reading `nats sub` knows what they see and a decoder
//     refuses a message of the wrong type or a newer schema instead of guessing.
//   - Core subjects (Kind "event" with Storage "core") are fire-and-forget: a
//     subscriber that is not listening misses them. Anything that must survive a
//     restart or be replayed goes to a JetStream stream (PublishDurable) and is
//     acknowledged by the server before the call returns; a message id makes a
//     retried publish land once.
//   - A subscription's channel is owned by the context passed to Subscribe:
//     cancel the context and the channel closes. Messages on one subject from
//     one publisher arrive in order.
//   - Request/reply carries errors back as typed RemoteErrors, and a request to
//     a subject nobody serves fails at once with ErrNoResponder rather than
//     waiting for the timeout.
//   - One process owns a data directory at a time (an flock on <data-dir>/lock);
//     a second one fails at once with a DataDirInUseError naming the holder.
//
// The same kernel runs on a NATS deployment Symphony does not run (Dial:
// `symphony run --nats`, usually a three-server cluster with streams and
// buckets in three replicas): the components cannot tell the difference.
// There, several processes may share the state, so the scheduler's
// authority is a lease in KV (Lease, SchedulerLease) taken and renewed by
// compare-and-set, with a fencing token that grows with every holding.
//
// Run history (summaries, timelines, following a run, the agent event
// writer, purge) is not here: package runlog builds it on the kernel's
// general facilities for stored messages (ReadStored, FollowStored, the
// Topic methods that check, split and decode them) and for typed KV.
package bus
