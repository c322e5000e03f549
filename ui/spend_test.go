package ui

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// spendNow is the fixtures' moment: 11:00 in Berlin, so "today" is
// 2026-12-08 there and the day rolls over at midnight CET.
var spendNow = time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)

// spendFixture is a bus holding spend control's state as the scheduler
// would leave it, and a dashboard started on it afterwards (so the
// initial load, not only the live updates, is what is tested), with a
// stand-in scheduler recording the controls it is sent.
type spendFixture struct {
	b   *bus.Bus
	srv *Server
	url string
	// usd are the USD figures of the 30 days ending today, oldest first
	// (0 for a gap or a garbled value).
	usd [chartDays]float64

	mu       sync.Mutex
	controls []bus.Control
}

func newSpendFixture(t *testing.T) *spendFixture {
	t.Helper()
	b, err := bus.Open(t.Context(), bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	f := &spendFixture{b: b}
	f.store(t)
	served, err := bus.Serve(t.Context(), b, bus.SchedulerControl, func(_ context.Context, _ string, c bus.Control) (bus.ControlResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.controls = append(f.controls, c)
		return bus.ControlResult{Message: "spend of the issue reset"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	ready := make(chan struct{}, 1)
	srv, err := New(Options{Bus: b, Port: 0, Now: func() time.Time { return spendNow }, OnListen: func(u string) { urls <- u },
		OnReady: func() { ready <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("dashboard Run: %v", err)
		}
		<-served
	})
	select {
	case f.url = <-urls:
	case err := <-stopped:
		t.Fatalf("dashboard stopped: %v", err)
	case <-time.After(waitBound):
		t.Fatal("dashboard did not listen")
	}
	select {
	case <-ready:
	case err := <-stopped:
		t.Fatalf("dashboard stopped: %v", err)
	case <-time.After(waitBound):
		t.Fatal("dashboard did not load its state")
	}
	return f
}

func (f *spendFixture) put(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// store writes the configuration, 30 days of spend with gaps, a garbled
// day, an undecodable day and a capped today, parked issues with and
// without a cap, an issue's lifetime spend and run count, and two stored
// notifications.
func (f *spendFixture) store(t *testing.T) {
	ctx := t.Context()
	cfg := bus.Config{}
	cfg.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 100, Tokens: 50_000_000}, TimeZone: "Europe/Berlin"}
	cfg.Budget.PerIssue = bus.IssueBudget{BudgetCaps: bus.BudgetCaps{USD: 20}, Runs: 8}
	cfg.Budget.PerRun = bus.BudgetCaps{USD: 2.5}
	cfg.Agent.MaxRunsPerIssue = 10
	_, err := bus.Put(ctx, f.b, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 3, Path: "WORKFLOW.md", LoadedAt: spendNow, Config: cfg})
	f.put(t, err)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	today := spendNow.In(berlin)
	for i := range chartDays {
		day := time.Date(today.Year(), today.Month(), today.Day()-(chartDays-1-i), 12, 0, 0, 0, berlin).Format(bus.DayLayout)
		if i%7 == 3 {
			continue // a day the fleet did nothing: no key
		}
		d := bus.DaySpend{Day: day, TimeZone: "Europe/Berlin", USD: float64(i + 1), Tokens: int64(i+1) * 100_000, Runs: 2,
			Outcomes: map[bus.RunStatus]int{bus.RunSucceeded: 1 + i%3, bus.RunBudgetExceeded: i % 2}}
		switch i {
		case 11: // garbled: amounts that cannot be
			d.USD, d.Tokens, d.Runs, d.Outcomes = -5, -7, -1, map[bus.RunStatus]int{bus.RunFailed: -3}
		case chartDays - 1: // today: over the USD cap
			d.USD, d.Tokens, d.Unpriced = 100.5, 3_000_000, 2
			d.Capped = &bus.DayCapped{Cap: bus.CapDayUSD, Limit: 100, Spent: 100.5, At: spendNow.Add(-time.Hour)}
		}
		f.usd[i] = max(0, d.USD)
		k, err := bus.DaySpends.Key(day)
		f.put(t, err)
		_, err = bus.Put(ctx, f.b, k, d)
		f.put(t, err)
	}
	// A value that is not JSON at all, on a day of the chart (a gap then).
	kv, err := f.b.JetStream().KeyValue(ctx, bus.BucketState)
	f.put(t, err)
	_, err = kv.Put(ctx, "day.2026-11-12", []byte("{garbled"))
	f.put(t, err)
	f.usd[3] = 0 // 2026-11-12 is day index 3 (2026-11-09 + 3), already a gap
	// A day outside the 30 the chart draws, inside the 62 the API gives.
	k, _ := bus.DaySpends.Key("2026-10-20")
	_, err = bus.Put(ctx, f.b, k, bus.DaySpend{Day: "2026-10-20", USD: 7, Tokens: 700, Runs: 1, Outcomes: map[bus.RunStatus]int{bus.RunFailed: 1}})
	f.put(t, err)

	for _, b := range []bus.BlockedEntry{
		{IssueID: "id-PARK-1", Identifier: "PARK-1", State: "In Progress", RunID: "run-p1", At: spendNow.Add(-2 * time.Hour),
			Reason: "budget exceeded: budget.per_issue.usd reached: the issue's runs cost $21.5, the cap is $20", Cap: bus.CapIssueUSD, Limit: 20},
		{IssueID: "id-PARK-2", Identifier: "PARK-2", State: "Todo", At: spendNow.Add(-time.Hour), Reason: "the agent asked for a human"},
		{IssueID: "id-PARK-3", Identifier: "PARK-3", State: "Todo", At: spendNow.Add(-30 * time.Minute), Reason: "budget exceeded: daily tokens",
			Cap: bus.CapDayTokens, Limit: 50_000_000, Day: "2026-12-08"},
	} {
		k, _ := bus.Blocks.Key(b.IssueID)
		_, err := bus.Put(ctx, f.b, k, b)
		f.put(t, err)
	}
	sk, _ := bus.IssueSpends.Key("id-PARK-1")
	_, err = bus.Put(ctx, f.b, sk, bus.IssueSpend{IssueID: "id-PARK-1", Identifier: "PARK-1", USD: 21.5, Unpriced: 1, Tokens: 1_234_567, Runs: 5, Turns: 40, Updated: spendNow.Add(-2 * time.Hour)})
	f.put(t, err)
	rk, _ := bus.RunCounts.Key("id-PARK-1")
	_, err = bus.Put(ctx, f.b, rk, bus.RunCount{IssueID: "id-PARK-1", Identifier: "PARK-1", Runs: 3, LastRunID: "run-p1", Since: spendNow.Add(-5 * time.Hour)})
	f.put(t, err)
	f.notify(t, bus.Notification{ID: "n1", Event: bus.NotifyBudgetExceeded, At: spendNow.Add(-2 * time.Hour), IssueID: "id-PARK-1", Identifier: "PARK-1",
		RunID: "run-p1", Reason: "budget.per_issue.usd reached", Cap: bus.CapIssueUSD, Limit: 20, Spent: 21.5})
	f.notify(t, bus.Notification{ID: "n2", Event: bus.NotifyDailyCap, At: spendNow.Add(-time.Hour), Reason: "the fleet spent $100.50 today", Cap: bus.CapDayUSD, Limit: 100, Spent: 100.5, Day: "2026-12-08"})
	_, err = bus.Put(ctx, f.b, bus.NotifyState, notifyFixture)
	f.put(t, err)
	_, err = bus.Put(ctx, f.b, bus.NotifyDropped, bus.NotifyDrops{Dropped: 4, At: spendNow.Add(-3 * time.Hour)})
	f.put(t, err)
}

func (f *spendFixture) notify(t *testing.T, n bus.Notification) {
	t.Helper()
	_, err := bus.PublishDurable(t.Context(), f.b, bus.Notifications, n, n.ID, string(n.Event))
	f.put(t, err)
}

func (f *spendFixture) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.controls {
		out = append(out, string(c.Action)+":"+c.IssueID)
	}
	return out
}

// svgRect is a rect of the chart with its title.
type svgRect struct {
	Class  string  `xml:"class,attr"`
	X      float64 `xml:"x,attr"`
	Y      float64 `xml:"y,attr"`
	Height float64 `xml:"height,attr"`
	Title  string  `xml:"title"`
}

type svgDoc struct {
	XMLName xml.Name  `xml:"svg"`
	ID      string    `xml:"id,attr"`
	Title   string    `xml:"title"`
	Rects   []svgRect `xml:"rect"`
}

// chartsOf cuts each chart's <svg> out of the page and parses it as XML:
// well-formed, or the test fails.
func chartsOf(t *testing.T, page string) map[string]svgDoc {
	t.Helper()
	out := map[string]svgDoc{}
	for _, m := range regexp.MustCompile(`(?s)<svg id="chart-[a-z]+".*?</svg>`).FindAllString(page, -1) {
		if strings.Contains(strings.ToLower(m), "<script") || strings.Contains(m, "javascript:") || strings.Contains(m, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(m) {
			t.Errorf("a chart holds script:\n%s", m)
		}
		var d svgDoc
		dec := xml.NewDecoder(strings.NewReader(m))
		dec.Strict = true
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, m)
		}
		out[d.ID] = d
	}
	return out
}

func TestSpendOnTheOverview(t *testing.T) {
	f := newSpendFixture(t)
	resp, page := get(t, f.url+"/")
	wantStatus(t, resp, page, 200)
	for _, want := range []string{
		`id="daily-cap-banner"`, "Daily cap reached", "budget.per_day.usd: $100.50 spent, the cap is $100.00",
		"nothing new starts until 2026-12-09 00:00 Europe/Berlin (in 13h00m)",
		"Spend today <span class=\"count\">2026-12-08 (Europe/Berlin)",
		"$100.50</span> spent today", "of $100.00 · <span class=\"num\">$0.00</span> left", "2 turns had no price",
		"3.00M</span> tokens today", "of 50.00M · <span class=\"num\">47.00M</span> left",
		"Caps per run</dt><dd>$2.50</dd>", "$20.00 · 8 runs (over all its runs, ever)", "at most 10 per issue",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// Parked issues: the cap and its limit when a cap parked them, the
	// actions the operator has.
	row := func(id string) string {
		m := regexp.MustCompile(`(?s)<tr id="parked-` + id + `">.*?</tr>`).FindString(page)
		if m == "" {
			t.Fatalf("no parked row for %s", id)
		}
		return m
	}
	if r := row("PARK-1"); !strings.Contains(r, "budget.per_issue.usd</span> limit $20.00") || !strings.Contains(r, "$21.50 · 1.23M tokens · 5 runs") ||
		!strings.Contains(r, `action="/issues/PARK-1/clear-blocked"`) || !strings.Contains(r, `action="/issues/PARK-1/reset-spend"`) {
		t.Errorf("PARK-1 (parked by its lifetime USD cap):\n%s", r)
	}
	if r := row("PARK-2"); strings.Contains(r, "limit") || !strings.Contains(r, "asked for a human") || strings.Contains(r, "reset-spend") || !strings.Contains(r, "clear-blocked") {
		t.Errorf("PARK-2 (blocked without a cap):\n%s", r)
	}
	if r := row("PARK-3"); !strings.Contains(r, "budget.per_day.tokens</span> limit 50.00M") || !strings.Contains(r, "released when 2026-12-08 ends") {
		t.Errorf("PARK-3 (parked by the daily token cap):\n%s", r)
	}
	// The notifications stored before the dashboard started.
	notes := regexp.MustCompile(`(?s)<table class="runs" id="notifications">.*?</table>`).FindString(page)
	if !strings.Contains(notes, "budget exceeded") || !strings.Contains(notes, "daily cap reached") || strings.Index(notes, "daily cap reached") > strings.Index(notes, "budget exceeded") ||
		!strings.Contains(notes, `href="/issues/PARK-1"`) || !strings.Contains(notes, "budget.per_issue.usd: $21.50 of $20.00") {
		t.Errorf("recent notifications (newest first):\n%s", notes)
	}

	charts := chartsOf(t, page)
	usd, ok := charts["chart-usd"]
	if !ok || len(charts) != 3 || usd.Title != "Spend per day (USD)" {
		t.Fatalf("charts: %v", charts)
	}
	if len(usd.Rects) != chartDays {
		t.Fatalf("USD chart has %d bars, want %d", len(usd.Rects), chartDays)
	}
	// Heights proportional to the amounts, on a scale to the largest
	// (today's $100.50, over the $100 cap); a gap or a garbled day is 0.
	for i, r := range usd.Rects {
		want := f.usd[i] / 100.5 * chartPlotH
		if math.Abs(r.Height-want) > 0.01 {
			t.Errorf("bar %d (%s): height %v, want %v", i, r.Title, r.Height, want)
		}
		if math.Abs(r.Y+r.Height-(chartTop+chartPlotH)) > 0.011 {
			t.Errorf("bar %d does not stand on the baseline: y %v height %v", i, r.Y, r.Height)
		}
	}
	if r := usd.Rects[2]; r.Height == 0 || math.Abs(usd.Rects[5].Height/r.Height-6.0/3.0) > 0.01 {
		t.Errorf("bars 2 and 5 ($3, $6) are not in proportion: %v %v", r.Height, usd.Rects[5].Height)
	}
	for i, want := range map[int]string{0: "2026-11-09: $1.00", 3: "2026-11-12: $0.00 (nothing recorded)", 11: "2026-11-20: $0.00",
		29: "2026-12-08: $100.50, 2 turns without a price, daily cap reached (budget.per_day.usd)"} {
		if got := usd.Rects[i].Title; got != want {
			t.Errorf("bar %d title %q, want %q", i, got, want)
		}
	}
	if !strings.Contains(page, `class="cap-line"`) || !strings.Contains(page, ">daily cap $100.00</text>") || !strings.Contains(page, `class="cap-mark"`) {
		t.Error("the chart draws no cap line or cap mark")
	}
	outcomes := charts["chart-outcomes"]
	var titles []string
	for _, r := range outcomes.Rects {
		if strings.HasPrefix(r.Title, "2026-11-10:") {
			titles = append(titles, r.Title+"/"+r.Class)
		}
	}
	if strings.Join(titles, " ") != "2026-11-10: 2 succeeded/o-succeeded 2026-11-10: 1 budget exceeded/o-budget_exceeded" {
		t.Errorf("outcomes of 2026-11-10: %v", titles)
	}
	table := regexp.MustCompile(`(?s)<table class="runs" id="spend-table">.*?</table>`).FindString(page)
	if n := strings.Count(table, "<tr>") - 1; n != chartDays || !strings.Contains(table, "<td>2026-12-08</td><td>$100.50") || !strings.Contains(table, "reached (budget.per_day.usd)") {
		t.Errorf("the chart's table has %d rows:\n%s", n, clip(table, 2000))
	}

	// A notification published now reaches the overview.
	f.notify(t, bus.Notification{ID: "n3", Event: bus.NotifyWorkflowRejected, At: spendNow, Reason: "WORKFLOW.md: budget.per_day.usd must be positive"})
	deadline := time.Now().Add(waitBound)
	for !strings.Contains(page, "workflow rejected") {
		if time.Now().After(deadline) {
			t.Fatal("a live notification never showed")
		}
		time.Sleep(20 * time.Millisecond)
		_, page = get(t, f.url+"/")
	}
}

func TestSpendOnTheIssuePage(t *testing.T) {
	f := newSpendFixture(t)
	resp, page := get(t, f.url+"/issues/PARK-1")
	wantStatus(t, resp, page, 200)
	for _, want := range []string{
		"5 runs · 40 turns · 1.23M tokens · $21.50", "1 runs without a price",
		"caps: $20.00 · 8 runs · left: $0.00 · 3 runs", `id="reset-spend"`,
		"3\n\t\t\tof 10 (agent.max_runs_per_issue) · 7 left", "parked by budget.per_issue.usd (limit $20.00)",
	} {
		if !strings.Contains(page, want) && !strings.Contains(strings.Join(strings.Fields(page), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("issue page lacks %q", want)
		}
	}
	_, page = get(t, f.url+"/issues/PARK-2")
	if !strings.Contains(page, "nothing counted yet") || strings.Contains(page, `id="reset-spend"`) {
		t.Errorf("an issue without spend:\n%s", clip(page, 3000))
	}
}

func TestSpendInTheAPI(t *testing.T) {
	f := newSpendFixture(t)
	var st struct {
		Budget struct {
			Today struct {
				Day   string `json:"day"`
				Zone  string `json:"time_zone"`
				Spent struct {
					USD      float64
					Tokens   int64
					Unpriced int
				}
				Caps      map[string]float64
				Remaining map[string]float64
				Capped    *bus.DayCapped
				Until     time.Time
			}
			Caps struct {
				PerIssue        map[string]float64 `json:"per_issue"`
				MaxRunsPerIssue int                `json:"max_runs_per_issue"`
			}
			Parked []struct {
				IssueIdentifier string `json:"issue_identifier"`
				Cap             string
				Limit           float64
				Day             string
				Spend           *struct {
					USD       float64
					Remaining map[string]float64
				}
			}
		}
	}
	resp, body := get(t, f.url+"/api/v1/state")
	wantStatus(t, resp, body, 200)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	bt := st.Budget.Today
	if bt.Day != "2026-12-08" || bt.Zone != "Europe/Berlin" || bt.Spent.USD != 100.5 || bt.Spent.Tokens != 3_000_000 || bt.Spent.Unpriced != 2 ||
		bt.Caps["usd"] != 100 || bt.Remaining["usd"] != 0 || bt.Remaining["tokens"] != 47_000_000 || bt.Capped == nil || bt.Capped.Cap != bus.CapDayUSD ||
		!bt.Until.Equal(time.Date(2026, 12, 8, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("budget.today = %+v\n%s", bt, body)
	}
	if st.Budget.Caps.PerIssue["usd"] != 20 || st.Budget.Caps.PerIssue["runs"] != 8 || st.Budget.Caps.MaxRunsPerIssue != 10 {
		t.Errorf("budget.caps = %+v", st.Budget.Caps)
	}
	p := st.Budget.Parked
	if len(p) != 3 || p[0].IssueIdentifier != "PARK-1" || p[0].Cap != bus.CapIssueUSD || p[0].Limit != 20 || p[0].Spend == nil || p[0].Spend.USD != 21.5 ||
		p[0].Spend.Remaining["runs"] != 3 || p[1].Cap != "" || p[1].Spend == nil || p[1].Spend.USD != 0 || p[1].Spend.Remaining["usd"] != 20 || p[2].Day != "2026-12-08" {
		t.Errorf("budget.parked = %+v", p)
	}
	for _, field := range []string{`"budget"`, `"remaining"`, `"capped"`, `"until"`, `"parked"`, `"max_runs_per_issue"`} {
		if !strings.Contains(body, field) {
			t.Errorf("state lacks %s", field)
		}
	}

	var iss struct {
		Spend *struct {
			USD             float64
			Tokens          int64
			Runs, Turns     int
			Unpriced        int
			Caps            map[string]float64
			Remaining       map[string]float64
			RunsWhileActive int `json:"runs_while_active"`
			MaxRunsPerIssue int `json:"max_runs_per_issue"`
		}
	}
	resp, body = get(t, f.url+"/api/v1/PARK-1")
	wantStatus(t, resp, body, 200)
	if err := json.Unmarshal([]byte(body), &iss); err != nil {
		t.Fatal(err)
	}
	if s := iss.Spend; s == nil || s.USD != 21.5 || s.Tokens != 1_234_567 || s.Runs != 5 || s.Turns != 40 || s.Unpriced != 1 || s.Caps["usd"] != 20 ||
		s.Remaining["usd"] != 0 || s.Remaining["runs"] != 3 || s.RunsWhileActive != 3 || s.MaxRunsPerIssue != 10 {
		t.Errorf("issue spend = %+v\n%s", iss.Spend, body)
	}

	type series struct {
		TimeZone string `json:"time_zone"`
		Caps     map[string]float64
		Days     []DayPoint
	}
	var s30 series
	resp, body = get(t, f.url+"/api/v1/spend")
	wantStatus(t, resp, body, 200)
	if err := json.Unmarshal([]byte(body), &s30); err != nil {
		t.Fatal(err)
	}
	if len(s30.Days) != 30 || s30.Days[0].Day != "2026-11-09" || s30.Days[29].Day != "2026-12-08" || s30.TimeZone != "Europe/Berlin" || s30.Caps["usd"] != 100 {
		t.Fatalf("series: %d days, %+v", len(s30.Days), s30)
	}
	for i, d := range s30.Days {
		if d.USD != f.usd[i] {
			t.Errorf("day %s: usd %v, want %v", d.Day, d.USD, f.usd[i])
		}
	}
	if d := s30.Days[3]; d.Known || d.Runs != 0 || d.Outcomes == nil {
		t.Errorf("a day without data: %+v", d)
	}
	if d := s30.Days[11]; !d.Known || d.USD != 0 || d.Tokens != 0 || d.Runs != 0 || len(d.Outcomes) != 0 {
		t.Errorf("a garbled day counts as zero: %+v", d)
	}
	if d := s30.Days[29]; d.Capped != bus.CapDayUSD || d.Outcomes[bus.RunBudgetExceeded] != 1 {
		t.Errorf("today: %+v", d)
	}
	var s62 series
	_, body = get(t, f.url+"/api/v1/spend?days=62")
	if err := json.Unmarshal([]byte(body), &s62); err != nil || len(s62.Days) != 62 || s62.Days[12].Day != "2026-10-20" || s62.Days[12].USD != 7 {
		t.Errorf("62 days: %v %d\n%s", err, len(s62.Days), clip(body, 600))
	}
	for _, q := range []string{"0", "63", "abc", "-1", "1e3", "999999999999"} {
		resp, body := get(t, f.url+"/api/v1/spend?days="+q)
		wantStatus(t, resp, body, 400)
		wantAPIError(t, body, "bad_request")
	}
	resp, body = do(t, http.MethodPost, f.url+"/api/v1/spend", "")
	wantStatus(t, resp, body, 405)
}

func TestResetSpend(t *testing.T) {
	f := newSpendFixture(t)
	resp, body := do(t, http.MethodPost, f.url+"/issues/PARK-1/reset-spend", "")
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/issues/PARK-1?done=spent" {
		t.Fatalf("redirect to %q", loc)
	}
	_, page := get(t, f.url+"/issues/PARK-1?done=spent")
	if !strings.Contains(page, "Lifetime spend reset") {
		t.Error("no notice after the reset")
	}
	resp, body = do(t, http.MethodPost, f.url+"/api/v1/spend/PARK-1/reset", `{}`)
	wantStatus(t, resp, body, http.StatusAccepted)
	var r apiReset
	if err := json.Unmarshal([]byte(body), &r); err != nil || !r.Reset || r.IssueID != "id-PARK-1" || r.IssueIdentifier != "PARK-1" || r.Message != "spend of the issue reset" {
		t.Errorf("reset answer: %v %+v", err, r)
	}
	// Refused: a foreign origin (CSRF), an unknown issue, a body that is
	// not an object, a GET.
	resp, body = do(t, http.MethodPost, f.url+"/issues/PARK-1/reset-spend", "", "Origin", "http://evil.example")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = do(t, http.MethodPost, f.url+"/api/v1/spend/PARK-1/reset", "", "Sec-Fetch-Site", "cross-site")
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = do(t, http.MethodPost, f.url+"/api/v1/spend/NOPE-9/reset", "")
	wantStatus(t, resp, body, http.StatusNotFound)
	wantAPIError(t, body, "issue_not_found")
	resp, body = do(t, http.MethodPost, f.url+"/issues/NOPE-9/reset-spend", "")
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = do(t, http.MethodPost, f.url+"/api/v1/spend/PARK-1/reset", "[1]")
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = get(t, f.url+"/api/v1/spend/PARK-1/reset")
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	if got := strings.Join(f.sent(), " "); got != "reset_spend:id-PARK-1 reset_spend:id-PARK-1" {
		t.Errorf("controls sent: %s", got)
	}
}

func TestSpendMetrics(t *testing.T) {
	f := newSpendFixture(t)
	resp, body := get(t, f.url+"/metrics")
	wantStatus(t, resp, body, 200)
	for _, want := range []string{
		"symphony_spend_today_usd 100.5", "symphony_spend_today_tokens 3e+06", "symphony_spend_today_unpriced_turns 2",
		`symphony_budget_remaining_today{cap="budget.per_day.usd"} 0`, `symphony_budget_remaining_today{cap="budget.per_day.tokens"} 4.7e+07`,
		`symphony_budget_cap_today{cap="budget.per_day.usd"} 100`, "symphony_budget_daily_capped 1",
		`symphony_parked_issues{cap="budget.per_issue.usd"} 1`, `symphony_parked_issues{cap="none"} 1`, `symphony_parked_issues{cap="budget.per_day.tokens"} 1`,
		`symphony_issue_spend_usd{issue_identifier="PARK-1"} 21.5`, `symphony_issue_spend_tokens{issue_identifier="PARK-1"} 1.234567e+06`,
		`symphony_issue_spend_runs{issue_identifier="PARK-1"} 5`, `symphony_issue_spend_turns{issue_identifier="PARK-1"} 40`,
		"# HELP symphony_budget_remaining_today",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestChartWithoutData: no configuration and no spend at all still draws
// 30 zero bars (no division by zero, no cap line) and says so in titles.
func TestChartWithoutData(t *testing.T) {
	m := NewModel()
	v := m.Snapshot(spendNow, 0)
	if v.Spend.Zone != "UTC" || v.Spend.Today.Day != "2026-12-08" || len(v.Spend.Days) != chartDays || v.Spend.RemainingUSD != nil {
		t.Fatalf("spend view without config: %+v", v.Spend)
	}
	for _, p := range spendCharts(v.Spend.Days, v.Spend.DayCaps) {
		if p.Cap != nil || len(p.Bars) != chartDays {
			t.Errorf("%s: cap %v, %d bars", p.ID, p.Cap, len(p.Bars))
		}
		for _, b := range p.Bars {
			if b.H != 0 || math.IsNaN(b.Y) {
				t.Errorf("%s: a bar of an empty day: %+v", p.ID, b)
			}
		}
	}
	var buf strings.Builder
	if err := spendChart(v.Spend).Render(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	charts := chartsOf(t, buf.String())
	if len(charts) != 3 || !strings.Contains(charts["chart-usd"].Rects[0].Title, "nothing recorded") {
		t.Errorf("charts of nothing: %+v", charts)
	}
}

// TestNotificationsBounded: the model keeps the newest maxNotes, each id
// once, and the overview lists shownNotes of them, newest first.
func TestNotificationsBounded(t *testing.T) {
	m := NewModel()
	for i := range 3 * maxNotes {
		m.AddNotification(bus.Notification{ID: "n" + strconv.Itoa(i%(2*maxNotes)), Event: bus.NotifyRunBlocked, At: spendNow.Add(time.Duration(i%(2*maxNotes)) * time.Minute)})
	}
	v := m.Snapshot(spendNow, 0)
	if len(m.spend.notes) != maxNotes || len(v.Spend.Notes) != shownNotes || v.Spend.Notes[0].ID != fmt.Sprint("n", 2*maxNotes-1) {
		t.Fatalf("kept %d, shown %d, newest %q", len(m.spend.notes), len(v.Spend.Notes), v.Spend.Notes[0].ID)
	}
	seen := map[string]bool{}
	for _, n := range m.spend.notes {
		if seen[n.ID] {
			t.Fatalf("%s kept twice", n.ID)
		}
		seen[n.ID] = true
	}
}

// FuzzParseDays: ?days= of /api/v1/spend is outside input. Whatever it
// is, the answer is a count within 1..maxSeriesDays or an error that
// names the parameter; an empty value is the default.
func FuzzParseDays(f *testing.F) {
	for _, s := range []string{"", "1", "30", "62", "63", "0", "-1", " 7", "1e3", "0x1f", "99999999999999999999", "３"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		n, err := parseDays(q)
		switch {
		case err != nil:
			if n != 0 || !strings.Contains(err.Error(), "days must be an integer from 1 to 62") {
				t.Fatalf("parseDays(%q) = %d, %v", q, n, err)
			}
		case q == "":
			if n != defaultSeriesDays {
				t.Fatalf("default = %d", n)
			}
		case n < 1 || n > maxSeriesDays:
			t.Fatalf("parseDays(%q) = %d, out of bounds", q, n)
		}
	})
}

// TestPricedCostShown: a codex run has no cost of its own; the runs
// table, the run page's header and its run_finished line show the figure
// the budget priced, marked as priced, and the API carries it apart.
func TestPricedCostShown(t *testing.T) {
	priced, own := 0.0123, 0.5
	end := spendNow
	codex := RunView{RunSummary: bus.RunSummary{RunID: "run-x", Issue: bus.IssueRef{ID: "id-X-1", Identifier: "X-1"}, Status: bus.RunBudgetExceeded,
		Started: spendNow.Add(-time.Minute), Ended: &end, BudgetUSD: &priced}}
	claude := RunView{RunSummary: bus.RunSummary{RunID: "run-y", Issue: bus.IssueRef{ID: "id-Y-1", Identifier: "Y-1"}, Status: bus.RunSucceeded,
		Started: spendNow.Add(-time.Minute), Ended: &end, CostUSD: &own, BudgetUSD: &own}}
	v := NewModel().Snapshot(spendNow, 0)
	var buf strings.Builder
	for _, c := range []interface {
		Render(context.Context, io.Writer) error
	}{runsTable(v, []RunView{codex, claude}), runHeader(v, codex),
		runEventBody(&bus.RunEvent{RunID: "run-x", Event: bus.RunFinished, Status: bus.RunBudgetExceeded, BudgetUSD: &priced})} {
		if err := c.Render(t.Context(), &buf); err != nil {
			t.Fatal(err)
		}
	}
	html := buf.String()
	if n := strings.Count(html, "$0.0123 (priced)"); n != 3 || !strings.Contains(html, `title="priced from the pricing table: the agent reported no cost"`) {
		t.Errorf("priced cost shown %d times, want 3:\n%s", n, html)
	}
	if strings.Contains(html, "$0.5000 (priced)") || !strings.Contains(html, "$0.5000") {
		t.Error("an agent's own cost is marked as priced")
	}
	if r := toRunning(codex, nil); r.CostUSD != nil || r.BudgetUSD == nil || *r.BudgetUSD != priced {
		t.Errorf("API running entry: %+v", r)
	}
	m := NewModel()
	m.PutRun(codex.RunSummary)
	m.PutRun(claude.RunSummary)
	buf.Reset()
	if err := countsSection(m.Snapshot(spendNow, 0)).Render(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "$0.50</span> cost (1 runs reported)") || !strings.Contains(buf.String(), "+ $0.01 priced (1 runs)") {
		t.Errorf("overview totals:\n%s", buf.String())
	}
}

// TestUnknownZoneFallsBackToUTC: a zone the loader would have refused
// (a config not from the loader) is said on the page, and days are taken
// in UTC rather than not shown.
func TestUnknownZoneFallsBackToUTC(t *testing.T) {
	m := NewModel()
	cfg := bus.Config{}
	cfg.Budget.PerDay = bus.DayBudget{BudgetCaps: bus.BudgetCaps{USD: 5}, TimeZone: "Mars/Olympus_Mons"}
	m.SetConfig(bus.ConfigSnapshot{Config: cfg})
	m.SetDaySpend("2026-12-08", &bus.DaySpend{Day: "2026-12-08", USD: 2})
	v := m.Snapshot(spendNow, 0)
	if v.Spend.Zone != "UTC" || !strings.Contains(v.Spend.ZoneErr, "Mars/Olympus_Mons") || v.Spend.Today.USD != 2 || *v.Spend.RemainingUSD != 3 {
		t.Fatalf("spend view: %+v", v.Spend)
	}
	var buf strings.Builder
	if err := spendSection(v).Render(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "could not be loaded") || !strings.Contains(buf.String(), "$3.00</span> left") {
		t.Errorf("spend section:\n%s", clip(buf.String(), 2000))
	}
}

// TestEstimatedCostShown: a claude run one of whose turns was stopped
// before it reported is charged an estimate; the runs table, the run
// page's header and its turn line show the figure the budget counted,
// marked estimated, not the agent's own (smaller) figure.
func TestEstimatedCostShown(t *testing.T) {
	own, counted := 0.25, 2.25
	end := spendNow
	run := RunView{RunSummary: bus.RunSummary{RunID: "run-e", Issue: bus.IssueRef{ID: "id-E-1", Identifier: "E-1"}, Status: bus.RunTimedOut,
		Started: spendNow.Add(-time.Minute), Ended: &end, CostUSD: &own, BudgetUSD: &counted, BudgetEstimated: true}}
	v := NewModel().Snapshot(spendNow, 0)
	var buf strings.Builder
	for _, c := range []interface {
		Render(context.Context, io.Writer) error
	}{runsTable(v, []RunView{run}), runHeader(v, run),
		runEventBody(&bus.RunEvent{RunID: "run-e", Event: bus.RunTurnFinished, Turn: 2, Usage: &bus.Usage{InputTokens: 10}, BudgetUSD: &counted, BudgetEstimated: true})} {
		if err := c.Render(t.Context(), &buf); err != nil {
			t.Fatal(err)
		}
	}
	html := buf.String()
	if n := strings.Count(html, "$2.2500 (estimated)"); n != 3 {
		t.Errorf("estimated cost shown %d times, want 3:\n%s", n, html)
	}
	if strings.Contains(html, "$0.2500") {
		t.Error("the agent's own figure is shown for a run charged an estimate")
	}
}
