package ui

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Spend control in /metrics (#23): today's spend and what each daily cap
// leaves, the parked issues by the cap that parked them, and the lifetime
// spend of the issues running or parked now. The per-issue series are
// bounded (maxIssueSeries, the most recently updated first): an issue
// leaves them when it is neither running nor parked, so the label set
// follows the work in hand, not every issue ever seen.

// maxIssueSeries bounds the issues the per-issue spend series name.
const maxIssueSeries = 100

var (
	descDayUSD       = prometheus.NewDesc("symphony_spend_today_usd", "USD spent by the whole fleet today (the calendar day of budget.per_day.time_zone), priced turns only.", nil, nil)
	descDayTokens    = prometheus.NewDesc("symphony_spend_today_tokens", "Tokens used by the whole fleet today (input, cached and output, each once).", nil, nil)
	descDayUnpriced  = prometheus.NewDesc("symphony_spend_today_unpriced_turns", "Turns today that had no USD figure (codex without a pricing entry): not in symphony_spend_today_usd.", nil, nil)
	descDayRemaining = prometheus.NewDesc("symphony_budget_remaining_today", "What a daily cap leaves today (USD or tokens, by cap); absent when the cap is not set.", []string{"cap"}, nil)
	descDayLimit     = prometheus.NewDesc("symphony_budget_cap_today", "The daily cap in force (USD or tokens, by cap); absent when not set.", []string{"cap"}, nil)
	descDayCapped    = prometheus.NewDesc("symphony_budget_daily_capped", "1 when a daily cap was reached today: nothing new starts until the day rolls over.", nil, nil)
	descParked       = prometheus.NewDesc("symphony_parked_issues", "Issues held for an operator, by the cap that parked them (cap=\"none\": a run that asked for a human or an operator's cancel).", []string{"cap"}, nil)
	descIssueUSD     = prometheus.NewDesc("symphony_issue_spend_usd", "Lifetime USD spend of an issue running or parked now (budget.per_issue).", []string{"issue_identifier"}, nil)
	descIssueTokens  = prometheus.NewDesc("symphony_issue_spend_tokens", "Lifetime tokens of an issue running or parked now (budget.per_issue).", []string{"issue_identifier"}, nil)
	descIssueRuns    = prometheus.NewDesc("symphony_issue_spend_runs", "Lifetime runs of an issue running or parked now (budget.per_issue).", []string{"issue_identifier"}, nil)
	descIssueTurns   = prometheus.NewDesc("symphony_issue_spend_turns", "Lifetime turns of an issue running or parked now (budget.per_issue).", []string{"issue_identifier"}, nil)
)

// spendCollector reports spend control from the model at scrape time.
type spendCollector struct{ m *Model }

func (c *spendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDayUSD, descDayTokens, descDayUnpriced, descDayRemaining, descDayLimit, descDayCapped, descParked,
		descIssueUSD, descIssueTokens, descIssueRuns, descIssueTurns} {
		ch <- d
	}
}

func (c *spendCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.m.Snapshot(time.Now(), 0)
	sv := v.Spend
	gauge := func(d *prometheus.Desc, x float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, labels...)
	}
	gauge(descDayUSD, sv.Today.USD)
	gauge(descDayTokens, float64(sv.Today.Tokens))
	gauge(descDayUnpriced, float64(sv.Today.Unpriced))
	gauge(descDayCapped, b2f(sv.Capped != nil))
	if sv.RemainingUSD != nil {
		gauge(descDayLimit, sv.DayCaps.USD, "budget.per_day.usd")
		gauge(descDayRemaining, *sv.RemainingUSD, "budget.per_day.usd")
	}
	if sv.RemainingTokens != nil {
		gauge(descDayLimit, float64(sv.DayCaps.Tokens), "budget.per_day.tokens")
		gauge(descDayRemaining, float64(*sv.RemainingTokens), "budget.per_day.tokens")
	}
	byCap := map[string]int{}
	for _, p := range sv.Parked {
		k := "none"
		if p.Cap != "" {
			k = clip(p.Cap, 60)
		}
		byCap[k]++
	}
	for k, n := range byCap {
		gauge(descParked, float64(n), k)
	}
	// A label value once: two series alike would fail the whole scrape.
	seen := map[string]bool{}
	for _, sp := range c.m.heldSpends(maxIssueSeries) {
		id := sp.Identifier
		if id == "" {
			id = sp.IssueID
		}
		if id = clip(id, 80); seen[id] {
			continue
		}
		seen[id] = true
		gauge(descIssueUSD, finite(sp.USD), id)
		gauge(descIssueTokens, float64(max(0, sp.Tokens)), id)
		gauge(descIssueRuns, float64(max(0, sp.Runs)), id)
		gauge(descIssueTurns, float64(max(0, sp.Turns)), id)
	}
}
