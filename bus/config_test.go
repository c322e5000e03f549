package bus

import (
	"encoding/json"
	"math"
	"testing"
)

// TestModelPriceCostUSD: codex counts cached tokens inside the input, so
// they are priced once, at the cached price; counts that make no sense
// never give a negative or non-finite cost.
func TestModelPriceCostUSD(t *testing.T) {
	p := ModelPrice{Input: 1.25, CachedInput: 0.125, Output: 10}
	for _, c := range []struct {
		u    Usage
		want float64
	}{
		{Usage{InputTokens: 1_000_000, OutputTokens: 100_000}, 1.25 + 1},
		{Usage{InputTokens: 1_000_000, CacheReadInputTokens: 800_000, OutputTokens: 0}, 0.2*1.25 + 0.8*0.125},
		{Usage{InputTokens: 10, CacheReadInputTokens: 50}, 10 * 0.125 / 1e6},
		{Usage{InputTokens: -5, CacheReadInputTokens: -5, OutputTokens: -5}, 0},
		{Usage{}, 0},
	} {
		if got := p.CostUSD(c.u); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("CostUSD(%+v) = %v, want %v", c.u, got, c.want)
		}
	}
	if got := (ModelPrice{Output: math.MaxFloat64}).CostUSD(Usage{OutputTokens: 1 << 40}); got != math.MaxFloat64 {
		t.Errorf("overflowing cost = %v, want MaxFloat64", got)
	}
}

// TestBudgetJSON: an absent cap is an absent key, so a snapshot reads
// "no cap" without nulls or zeros to interpret.
func TestBudgetJSON(t *testing.T) {
	b := BudgetConfig{PerRun: BudgetCaps{USD: 2.5}, PerIssue: IssueBudget{Runs: 3}, PerDay: DayBudget{TimeZone: "UTC"}}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"per_run":{"usd":2.5},"per_issue":{"runs":3},"per_day":{"time_zone":"UTC"}}`
	if string(raw) != want {
		t.Errorf("json = %s, want %s", raw, want)
	}
	if !b.USDCapped() || !b.PerRun.Capped() || !b.PerIssue.Capped() || b.PerDay.Capped() {
		t.Errorf("capped: usd %v run %v issue %v day %v", b.USDCapped(), b.PerRun.Capped(), b.PerIssue.Capped(), b.PerDay.Capped())
	}
	if (BudgetConfig{PerIssue: IssueBudget{BudgetCaps: BudgetCaps{Tokens: 5}}}).USDCapped() {
		t.Error("a token cap is not a USD cap")
	}
}
