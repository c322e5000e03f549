package ui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
)

// Spend control in the JSON API (#23). Amounts are USD (float) and tokens
// (integer); a cap that is not set is absent, and so is what it leaves.
//
// GET /api/v1/state has "budget":
//
//	{"today": {"day": "2026-12-08", "time_zone": "Europe/Berlin",
//	           "spent": {"usd": 12.5, "tokens": 4100000, "unpriced": 0, "runs": 7},
//	           "outcomes": {"succeeded": 5, "budget_exceeded": 2},
//	           "caps": {"usd": 100, "tokens": 50000000},
//	           "remaining": {"usd": 87.5, "tokens": 45900000},
//	           "capped": null | {"cap": "budget.per_day.usd", "limit": 100, "spent": 100.2, "at": "…"},
//	           "until": "2026-12-09T00:00:00+01:00"},
//	 "caps": {"per_run": {…}, "per_issue": {…}, "per_day": {…}, "max_runs_per_issue": 10},
//	 "parked": [{"issue_id", "issue_identifier", "state", "run_id", "reason", "at",
//	             "cap", "limit", "day", "spend": <issue spend, below>}]}
//
// GET /api/v1/<identifier> has "spend" (null when nothing was counted and
// no cap is set):
//
//	{"usd", "tokens", "unpriced", "runs", "turns", "updated",
//	 "caps": {"usd", "tokens", "runs", "turns"}, "remaining": {…same keys…},
//	 "runs_while_active", "max_runs_per_issue"}
//
// GET /api/v1/spend?days=30 (1..62, default 30) is the fleet's spend per
// calendar day, oldest first, days without data as zeros:
//
//	{"time_zone", "generated_at", "caps": {"usd", "tokens"},
//	 "days": [{"day", "usd", "unpriced", "tokens", "runs", "outcomes": {status: n},
//	           "capped": "budget.per_day.usd" (absent when not), "recorded": bool}]}
//
// POST /api/v1/spend/<identifier>/reset (empty body or a JSON object, like
// /api/v1/refresh; the same origin rules as every state change) asks the
// scheduler to set the issue's lifetime spend to zero and clear its park:
// 202 {"reset": true, "issue_id", "issue_identifier", "requested_at",
// "message"}; 404 for an issue this instance does not know.

type apiBudget struct {
	Today  apiDay      `json:"today"`
	Caps   apiCaps     `json:"caps"`
	Parked []apiParked `json:"parked"`
}

type apiDay struct {
	Day       string                `json:"day"`
	TimeZone  string                `json:"time_zone"`
	Spent     apiDaySpent           `json:"spent"`
	Outcomes  map[bus.RunStatus]int `json:"outcomes"`
	Caps      bus.BudgetCaps        `json:"caps"`
	Remaining Remaining             `json:"remaining"`
	Capped    *bus.DayCapped        `json:"capped"`
	Until     time.Time             `json:"until"`
}

type apiDaySpent struct {
	USD      float64 `json:"usd"`
	Tokens   int64   `json:"tokens"`
	Unpriced int     `json:"unpriced"`
	Runs     int     `json:"runs"`
}

type apiCaps struct {
	PerRun          bus.BudgetCaps  `json:"per_run"`
	PerIssue        bus.IssueBudget `json:"per_issue"`
	PerDay          bus.BudgetCaps  `json:"per_day"`
	MaxRunsPerIssue int             `json:"max_runs_per_issue"`
}

type apiParked struct {
	IssueID         string         `json:"issue_id"`
	IssueIdentifier string         `json:"issue_identifier"`
	State           string         `json:"state"`
	RunID           string         `json:"run_id,omitempty"`
	Reason          string         `json:"reason"`
	At              time.Time      `json:"at"`
	Cap             string         `json:"cap,omitempty"`
	Limit           float64        `json:"limit,omitempty"`
	Day             string         `json:"day,omitempty"`
	Spend           *apiIssueSpend `json:"spend"`
}

type apiIssueSpend struct {
	USD             float64         `json:"usd"`
	Tokens          int64           `json:"tokens"`
	Unpriced        int             `json:"unpriced"`
	Runs            int             `json:"runs"`
	Turns           int             `json:"turns"`
	Updated         *time.Time      `json:"updated"`
	Caps            bus.IssueBudget `json:"caps"`
	Remaining       Remaining       `json:"remaining"`
	RunsWhileActive int             `json:"runs_while_active"`
	MaxRunsPerIssue int             `json:"max_runs_per_issue"`
}

// budgetOf is the "budget" object of /api/v1/state.
func budgetOf(v View) *apiBudget {
	sv := v.Spend
	out := &apiBudget{
		Today: apiDay{Day: sv.Today.Day, TimeZone: sv.Zone, Outcomes: sv.Today.Outcomes, Caps: sv.DayCaps, Capped: sv.Capped, Until: sv.Until,
			Spent:     apiDaySpent{USD: sv.Today.USD, Tokens: sv.Today.Tokens, Unpriced: sv.Today.Unpriced, Runs: sv.Today.Runs},
			Remaining: Remaining{USD: sv.RemainingUSD, Tokens: sv.RemainingTokens}},
		Caps:   apiCaps{PerRun: sv.RunCaps, PerIssue: sv.IssueCaps, PerDay: sv.DayCaps, MaxRunsPerIssue: sv.MaxRuns},
		Parked: []apiParked{},
	}
	for _, p := range sv.Parked {
		out.Parked = append(out.Parked, apiParked{IssueID: p.IssueID, IssueIdentifier: p.Identifier, State: p.State, RunID: p.RunID,
			Reason: p.Reason, At: p.At, Cap: p.Cap, Limit: p.Limit, Day: p.Day, Spend: issueSpendOf(p.Spend)})
	}
	return out
}

// issueSpendOf is an issue's "spend" object; nil when nothing was counted
// and no cap is set (nothing to say).
func issueSpendOf(s IssueSpendView) *apiIssueSpend {
	if !s.Known && !s.Caps.Capped() && s.RunsActive == 0 {
		return nil
	}
	out := &apiIssueSpend{USD: s.Spent.USD, Tokens: s.Spent.Tokens, Unpriced: s.Spent.Unpriced, Runs: s.Spent.Runs, Turns: s.Spent.Turns,
		Caps: s.Caps, Remaining: s.Remaining(), RunsWhileActive: s.RunsActive, MaxRunsPerIssue: s.MaxRuns}
	if !s.Spent.Updated.IsZero() {
		t := s.Spent.Updated
		out.Updated = &t
	}
	return out
}

// defaultSeriesDays is /api/v1/spend's length without ?days=.
const defaultSeriesDays = chartDays

// parseDays reads ?days=: an integer 1..maxSeriesDays, default
// defaultSeriesDays when empty. The error names what was wrong.
func parseDays(q string) (int, error) {
	if q == "" {
		return defaultSeriesDays, nil
	}
	if len(q) > 8 {
		return 0, fmt.Errorf("days must be an integer from 1 to %d (got %d characters)", maxSeriesDays, len(q))
	}
	n, err := strconv.Atoi(strings.TrimSpace(q))
	if err != nil || n < 1 || n > maxSeriesDays {
		return 0, fmt.Errorf("days must be an integer from 1 to %d (got %s)", maxSeriesDays, strconv.Quote(q))
	}
	return n, nil
}

type apiSeries struct {
	TimeZone    string         `json:"time_zone"`
	GeneratedAt time.Time      `json:"generated_at"`
	Caps        bus.BudgetCaps `json:"caps"`
	Days        []DayPoint     `json:"days"`
}

func (s *Server) apiSpend(w http.ResponseWriter, r *http.Request) {
	n, err := parseDays(r.URL.Query().Get("days"))
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	now := s.opts.Now()
	zone, days := s.model.DaySeries(now, n)
	v := s.model.Snapshot(now, 0)
	writeJSON(w, http.StatusOK, apiSeries{TimeZone: zone, GeneratedAt: now.UTC(), Caps: v.Spend.DayCaps, Days: days})
}

type apiReset struct {
	Reset           bool      `json:"reset"`
	IssueID         string    `json:"issue_id"`
	IssueIdentifier string    `json:"issue_identifier"`
	RequestedAt     time.Time `json:"requested_at"`
	Message         string    `json:"message"`
}

// resetSpendIssue finds the issue a reset is for; false when this
// instance knows no such issue (or no id for it).
func (s *Server) resetSpendIssue(ident string) (IssueView, bool) {
	if !safeid.Valid(ident) {
		return IssueView{}, false
	}
	iv, ok := s.model.Issue(ident)
	return iv, ok && iv.Ref.ID != ""
}

func (s *Server) apiResetSpend(w http.ResponseWriter, r *http.Request) {
	if err := checkControlBody(w, r); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", "the body must be empty or a JSON object: "+clip(err.Error(), 200))
		return
	}
	ident := r.PathValue("identifier")
	iv, ok := s.resetSpendIssue(ident)
	if !ok {
		writeError(w, r, http.StatusNotFound, "issue_not_found", "no issue "+strconvQuote(clip(ident, 80))+" is known to this instance")
		return
	}
	at := s.opts.Now().UTC()
	res, err := s.control(r.Context(), bus.Control{Action: bus.ControlResetSpend, IssueID: iv.Ref.ID, Reason: "POST /api/v1/spend/" + ident + "/reset"})
	if err != nil {
		s.controlError(w, r, err)
		return
	}
	s.log.Info("operator reset an issue's lifetime spend", "issue_id", iv.Ref.ID, "issue_identifier", ident, "via", "api", "scheduler", res.Message)
	writeJSON(w, http.StatusAccepted, apiReset{Reset: true, IssueID: iv.Ref.ID, IssueIdentifier: ident, RequestedAt: at, Message: res.Message})
}

func (s *Server) postResetSpend(w http.ResponseWriter, r *http.Request) {
	ident := r.PathValue("identifier")
	iv, ok := s.resetSpendIssue(ident)
	if !ok {
		s.render(w, r, http.StatusNotFound, messagePage(s.view(0), "Issue not found", "No issue "+clip(ident, 80)+" is known to this instance."))
		return
	}
	res, err := s.control(r.Context(), bus.Control{Action: bus.ControlResetSpend, IssueID: iv.Ref.ID, Reason: "reset from the dashboard"})
	if err != nil {
		s.controlFailed(w, r, err)
		return
	}
	s.log.Info("operator reset an issue's lifetime spend", "issue_id", iv.Ref.ID, "issue_identifier", ident, "via", "dashboard", "scheduler", res.Message)
	http.Redirect(w, r, issueURL(ident)+"?done=spent", http.StatusSeeOther)
}
