package ui

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is the dashboard's Prometheus registry. It is per server (no
// global registry): gauges are read from the model at scrape time; poll
// timings and bus event counts are observed as they arrive.
type metrics struct {
	reg          *prometheus.Registry
	pollDuration prometheus.Histogram
	pollErrors   *prometheus.CounterVec
	busEvents    *prometheus.CounterVec
	sseClients   prometheus.Gauge
	sseRefused   prometheus.Counter
}

func newMetrics(m *Model) *metrics {
	x := &metrics{
		reg: prometheus.NewRegistry(),
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "symphony_poll_duration_seconds", Help: "How long a tracker poll took (successful or not).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "symphony_poll_errors_total", Help: "Failed tracker polls, by error class.",
		}, []string{"class"}),
		busEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "symphony_bus_events_total", Help: "Run, turn and hook events seen on the bus, by stream (rate() gives the event rate).",
		}, []string{"stream"}),
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "symphony_dashboard_sse_clients", Help: "Open live-update (SSE) connections to the dashboard.",
		}),
		sseRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "symphony_dashboard_sse_refused_total", Help: "Live-update (SSE) connections refused with 503 because the dashboard already served its limit of streams (--max-streams).",
		}),
	}
	x.reg.MustRegister(x.pollDuration, x.pollErrors, x.busEvents, x.sseClients, x.sseRefused, &modelCollector{m: m}, &spendCollector{m: m}, &notifyCollector{m: m})
	// Every series carries the symphony_ prefix, the runtime's too.
	prometheus.WrapRegistererWithPrefix("symphony_", x.reg).MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return x
}

// descLogErrors counts log writes lost by the process's log outputs.
var descLogErrors = prometheus.NewDesc("symphony_log_write_errors_total",
	"Log writes lost: refused by the output (failed: a closed pipe, a full disk) or dropped because it was not read fast enough (dropped). Logging never stops the service.",
	[]string{"reason"}, nil)

// logWriteErrors exports the counts read by f at scrape time; with f nil
// the series is there and stays 0.
func (x *metrics) logWriteErrors(f func() (failed, dropped uint64)) {
	if f == nil {
		f = func() (uint64, uint64) { return 0, 0 }
	}
	x.reg.MustRegister(collectorFunc{desc: descLogErrors, collect: func(ch chan<- prometheus.Metric) {
		failed, dropped := f()
		ch <- prometheus.MustNewConstMetric(descLogErrors, prometheus.CounterValue, float64(failed), "failed")
		ch <- prometheus.MustNewConstMetric(descLogErrors, prometheus.CounterValue, float64(dropped), "dropped")
	}})
}

// collectorFunc is a collector of one description whose values are read
// at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func (x *metrics) poll(d time.Duration, class string) {
	x.pollDuration.Observe(d.Seconds())
	if class != "" {
		x.pollErrors.WithLabelValues(class).Inc()
	}
}

func (x *metrics) event(stream string) { x.busEvents.WithLabelValues(stream).Inc() }

func (x *metrics) events(stream string, n int64) {
	x.busEvents.WithLabelValues(stream).Add(float64(n))
}

func (x *metrics) handler() http.Handler {
	return promhttp.HandlerFor(x.reg, promhttp.HandlerOpts{})
}

// modelCollector reports the model's state at scrape time.
type modelCollector struct{ m *Model }

var (
	descRuns    = prometheus.NewDesc("symphony_runs", "Runs in the store, by status (running or how they ended).", []string{"status"}, nil)
	descRunning = prometheus.NewDesc("symphony_running_agents", "Agent runs in flight.", nil, nil)
	descRetry   = prometheus.NewDesc("symphony_retry_queue_length", "Issues waiting for a retry or continuation.", nil, nil)
	descBlocked = prometheus.NewDesc("symphony_blocked_issues", "Issues held for an operator.", nil, nil)
	descTokens  = prometheus.NewDesc("symphony_tokens", "Tokens used by the runs in the store, by kind.", []string{"kind"}, nil)
	descCost    = prometheus.NewDesc("symphony_cost_usd", "Cost in USD reported by the agents of the runs in the store.", nil, nil)
	descAgentS  = prometheus.NewDesc("symphony_agent_seconds", "Agent runtime summed over the runs in the store.", nil, nil)
	descPaused  = prometheus.NewDesc("symphony_dispatch_paused", "1 when the operator paused dispatch.", nil, nil)
	descWFValid = prometheus.NewDesc("symphony_workflow_valid", "1 when the latest WORKFLOW.md load succeeded.", nil, nil)
)

func (c *modelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRuns, descRunning, descRetry, descBlocked, descTokens, descCost, descAgentS, descPaused, descWFValid} {
		ch <- d
	}
}

func (c *modelCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.m.Snapshot(time.Now(), 0)
	t := v.Totals
	for status, n := range t.ByStatus {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(n), status)
	}
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(t.Running))
	ch <- prometheus.MustNewConstMetric(descRetry, prometheus.GaugeValue, float64(t.Retrying))
	ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, float64(t.Blocked))
	for kind, n := range map[string]int64{"input": t.Usage.InputTokens, "output": t.Usage.OutputTokens,
		"cache_creation": t.Usage.CacheCreationInputTokens, "cache_read": t.Usage.CacheReadInputTokens} {
		ch <- prometheus.MustNewConstMetric(descTokens, prometheus.GaugeValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(descCost, prometheus.GaugeValue, t.CostUSD)
	ch <- prometheus.MustNewConstMetric(descAgentS, prometheus.GaugeValue, t.AgentSeconds)
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b2f(v.Paused.Paused))
	ch <- prometheus.MustNewConstMetric(descWFValid, prometheus.GaugeValue, b2f(v.Workflow == nil || v.Workflow.Valid))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
