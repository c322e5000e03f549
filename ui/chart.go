package ui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// The overview's 30-day chart is drawn here, on the server, as SVG that
// spend.templ writes out: no script, nothing fetched, so it shows with
// JavaScript off and under the CSP. Each bar carries a <title> with its
// day and amount, the axes are labelled in text, and a table below gives
// the same numbers, so nothing is told by colour alone.

// Geometry of one chart panel, in SVG user units (the viewBox; the page
// scales it).
const (
	chartLeft   = 64.0 // room for the y-axis label
	chartTop    = 14.0
	chartPlotH  = 110.0
	chartBottom = 22.0 // room for the day labels
	chartSlot   = 18.0 // one day's width
	chartBarW   = 12.0
	chartRight  = 8.0
)

// chartBar is one rectangle: a day's bar, or one outcome's part of it.
type chartBar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

// chartLabel is a text on an axis.
type chartLabel struct {
	X, Y   float64
	Text   string
	Anchor string
}

// chartPanel is one chart: USD, tokens, or run outcomes per day.
type chartPanel struct {
	ID, Title, Desc string
	Width, Height   float64
	Bars            []chartBar
	Labels          []chartLabel
	// Cap is the daily cap's line (nil when no cap is set for the panel).
	Cap *chartLabel
	// Marks flag the days a daily cap was reached (a text mark above the
	// bar, not a colour).
	Marks []chartLabel
	// Legend names the classes of a stacked panel.
	Legend []legendItem
}

type legendItem struct{ Class, Text string }

// Baseline is the y of the plot's bottom edge.
func (p chartPanel) Baseline() float64 { return chartTop + chartPlotH }

// Right is the x of the plot's right edge.
func (p chartPanel) Right() float64 { return p.Width - chartRight }

// ViewBox is the panel's SVG viewBox.
func (p chartPanel) ViewBox() string { return "0 0 " + num(p.Width) + " " + num(p.Height) }

// num writes an SVG coordinate: two decimals at most, no exponent.
func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// round2 keeps two decimals, enough for a pixel and short in the page.
func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// outcomeOrder is the order outcomes stack in, bottom up; any other
// status goes on top as "other".
var outcomeOrder = []bus.RunStatus{bus.RunSucceeded, bus.RunFailed, bus.RunBudgetExceeded, bus.RunBlocked, bus.RunCanceled,
	bus.RunTimedOut, bus.RunStalled, bus.RunInterrupted}

// spendCharts draws the three panels of the series: USD (with the daily
// USD cap), tokens (with the daily token cap) and run outcomes.
func spendCharts(days []DayPoint, caps bus.BudgetCaps) []chartPanel {
	usd := make([]float64, len(days))
	tok := make([]float64, len(days))
	for i, d := range days {
		usd[i], tok[i] = d.USD, float64(d.Tokens)
	}
	return []chartPanel{
		valuePanel("chart-usd", "Spend per day (USD)", days, usd, caps.USD, bus.CapDayUSD, "bar-usd", func(x float64) string { return fmt.Sprintf("$%.2f", x) }),
		valuePanel("chart-tokens", "Tokens per day", days, tok, float64(caps.Tokens), bus.CapDayTokens, "bar-tokens", func(x float64) string { return tokens(int64(x)) }),
		outcomePanel(days),
	}
}

// newPanel is an empty panel sized for n days, with its day labels (the
// first, the middle and the last day: more would not fit).
func newPanel(id, title string, days []DayPoint) chartPanel {
	p := chartPanel{ID: id, Title: title, Width: chartLeft + float64(len(days))*chartSlot + chartRight, Height: chartTop + chartPlotH + chartBottom}
	if len(days) == 0 {
		return p
	}
	for _, i := range slices.Compact([]int{0, len(days) / 2, len(days) - 1}) {
		p.Labels = append(p.Labels, chartLabel{X: round2(barX(i) + chartBarW/2), Y: p.Height - 6, Text: days[i].Day[5:], Anchor: "middle"})
	}
	return p
}

func barX(i int) float64 { return chartLeft + float64(i)*chartSlot + (chartSlot-chartBarW)/2 }

// valuePanel draws one bar per day, its height proportional to the value
// on a scale from 0 to the largest value or the cap, whichever is more. A
// day on which capKey (this panel's daily cap) was reached is marked
// "cap" above its bar.
func valuePanel(id, title string, days []DayPoint, vals []float64, limit float64, capKey, class string, text func(float64) string) chartPanel {
	p := newPanel(id, title, days)
	top := max(slices.Max(append([]float64{0}, vals...)), limit)
	scale := top
	if scale <= 0 {
		scale = 1 // nothing spent yet: every bar is 0 high
	}
	for i, d := range days {
		h := round2(vals[i] / scale * chartPlotH)
		what := text(vals[i])
		if !d.Known {
			what += " (nothing recorded)"
		}
		if d.Unpriced > 0 && class == "bar-usd" {
			what += fmt.Sprintf(", %d turns without a price", d.Unpriced)
		}
		if d.Capped != "" {
			what += ", daily cap reached (" + d.Capped + ")"
		}
		if d.Capped == capKey {
			p.Marks = append(p.Marks, chartLabel{X: round2(barX(i) + chartBarW/2), Y: round2(p.Baseline() - h - 3), Text: "cap", Anchor: "middle"})
		}
		p.Bars = append(p.Bars, chartBar{X: round2(barX(i)), Y: round2(p.Baseline() - h), W: chartBarW, H: h, Class: class, Title: d.Day + ": " + what})
	}
	p.Labels = append(p.Labels, chartLabel{X: chartLeft - 4, Y: chartTop + 4, Text: text(top), Anchor: "end"},
		chartLabel{X: chartLeft - 4, Y: p.Baseline(), Text: text(0), Anchor: "end"})
	if limit > 0 {
		p.Cap = &chartLabel{X: chartLeft, Y: round2(p.Baseline() - limit/scale*chartPlotH), Text: "daily cap " + text(limit), Anchor: "start"}
	}
	p.Desc = title + " over the last " + strconv.Itoa(len(days)) + " days, from " + days[0].Day + " to " + days[len(days)-1].Day +
		"; the largest is " + text(slices.Max(append([]float64{0}, vals...))) + "."
	return p
}

// outcomePanel stacks each day's runs by how they ended.
func outcomePanel(days []DayPoint) chartPanel {
	p := newPanel("chart-outcomes", "Runs per day by outcome", days)
	top := 0
	for _, d := range days {
		top = max(top, outcomeTotal(d))
	}
	scale := float64(max(top, 1))
	seen := map[string]bool{}
	for i, d := range days {
		y := p.Baseline()
		for _, part := range outcomeParts(d) {
			h := round2(float64(part.n) / scale * chartPlotH)
			y = round2(y - h)
			p.Bars = append(p.Bars, chartBar{X: round2(barX(i)), Y: y, W: chartBarW, H: h, Class: "o-" + part.name,
				Title: d.Day + ": " + strconv.Itoa(part.n) + " " + strings.ReplaceAll(part.name, "_", " ")})
			seen[part.name] = true
		}
		if outcomeTotal(d) == 0 {
			// An empty day still has a bar to hover: 0 high, titled.
			p.Bars = append(p.Bars, chartBar{X: round2(barX(i)), Y: p.Baseline(), W: chartBarW, H: 0, Class: "o-none", Title: d.Day + ": no run ended"})
		}
	}
	for _, st := range append(outcomeNames(), "other") {
		if seen[st] {
			p.Legend = append(p.Legend, legendItem{Class: "o-" + st, Text: strings.ReplaceAll(st, "_", " ")})
		}
	}
	p.Labels = append(p.Labels, chartLabel{X: chartLeft - 4, Y: chartTop + 4, Text: strconv.Itoa(top) + " runs", Anchor: "end"},
		chartLabel{X: chartLeft - 4, Y: p.Baseline(), Text: "0", Anchor: "end"})
	p.Desc = "Runs that ended each day over the last " + strconv.Itoa(len(days)) + " days, stacked by outcome; the most in one day is " + strconv.Itoa(top) + "."
	return p
}

type outcomePart struct {
	name string
	n    int
}

// outcomeParts is a day's outcomes in stacking order; statuses outside
// outcomeOrder are summed as "other".
func outcomeParts(d DayPoint) []outcomePart {
	var out []outcomePart
	other := 0
	for st, n := range d.Outcomes {
		if !slices.Contains(outcomeOrder, st) {
			other += n
		}
	}
	for _, st := range outcomeOrder {
		if n := d.Outcomes[st]; n > 0 {
			out = append(out, outcomePart{string(st), n})
		}
	}
	if other > 0 {
		out = append(out, outcomePart{"other", other})
	}
	return out
}

func outcomeTotal(d DayPoint) int {
	n := 0
	for _, x := range d.Outcomes {
		n += max(0, x)
	}
	return n
}

func outcomeNames() []string {
	out := make([]string, len(outcomeOrder))
	for i, st := range outcomeOrder {
		out[i] = string(st)
	}
	return out
}

// outcomesText is a day's outcomes in words, for the table.
func outcomesText(d DayPoint) string {
	parts := outcomeParts(d)
	if len(parts) == 0 {
		return "—"
	}
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = strconv.Itoa(p.n) + " " + strings.ReplaceAll(p.name, "_", " ")
	}
	return strings.Join(s, ", ")
}
