// Package ui will serve Symphony's loopback dashboard: templ components,
// htmx live updates over SSE, the JSON API and /metrics. It reads the bus
// only. It holds no code yet; the dashboard arrives with its own issue.
package ui
