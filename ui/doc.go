// Package ui is Symphony's dashboard: a component (Server) that serves HTTP
// on loopback — server-rendered templ pages kept live by htmx over
// Server-Sent Events, a JSON API (/api/v1/…) and Prometheus metrics
// (/metrics).
//
// It only reads, with two exceptions that it asks for rather than does: the
// scheduler's controls (pause, resume, refresh, cancel, clear a block,
// reset an issue's lifetime spend) are requests to the scheduler, and an issue page asks the tracker for the current
// state. Everything else comes from the bus through the dashboard's own
// client:
//
//   - live.go folds KV watches (run summaries, claims, retries, blocks,
//     pause, config) and subscriptions (polls, component lifecycle, run
//     events, coalesced agent progress, hook events) into the Model, the
//     one place the dashboard's state lives (model.go).
//   - feed.go gives a run page its events: what the run log holds so far,
//     then each new one, resumable from a cursor (a run followed live and a
//     finished one read the same way).
//   - pages.go and views.templ render the model; sse.go streams the
//     changes; api.go answers the JSON API (the state, one issue, a
//     refresh).
//   - spend.go mirrors spend control's state (the fleet's spend per day,
//     each issue's lifetime spend and runs while active, the recent
//     notifications of the NOTIFY stream) and takes each value as it may
//     be (a garbled amount counts as zero); chart.go draws the 30-day
//     chart as SVG geometry that spend.templ writes out, so it needs no
//     script; spendapi.go and spendmetrics.go give the same numbers to
//     the JSON API and /metrics. notify.go mirrors the notifier's status
//     (KV symphony_notify/status: its counts, the command in flight, the
//     last failure) for the notifications panel and /metrics.
//
// What keeps it safe to leave running (guard.go, limit.go): loopback only
// unless told otherwise, Host and Origin checks against DNS rebinding and
// cross-site requests, bounded request bodies, a cap on concurrent event
// streams and on concurrent reads of stored runs, and a bounded wait for
// each; a slow client is cut off rather than allowed to hold memory.
package ui
