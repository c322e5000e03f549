package ui

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/runlog"
)

// Model is what the dashboard knows, folded from the bus (or, in replay,
// from the recorded run being played). Every page and API answer is
// rendered from a View taken under its lock; nothing in it is read from a
// component's memory.
type Model struct {
	mu sync.RWMutex
	// runs are the run summaries (KV symphony_runs), with what the live
	// event stream adds.
	runs    map[string]*RunView
	claims  map[string]bus.Claim
	retries map[string]bus.RetryEntry
	blocked map[string]bus.BlockedEntry
	paused  bus.PauseState
	config  *bus.ConfigSnapshot
	status  *bus.WorkflowStatus
	// issues are the candidates of the latest poll, by identifier.
	issues   map[string]bus.Issue
	unsafe   []string
	lastPoll *bus.CandidateSnapshot
	pollFail *bus.PollFailed
	// agentLimit is the latest rate-limit signal an agent reported.
	agentLimit *bus.TurnEvent
	components map[string]bus.ComponentEvent
	// ready is set once the initial KV state is loaded.
	ready bool
	// replay describes the run being replayed (nil when live).
	replay *ReplayInfo
	// spend is spend control's state (spend.go).
	spend spendState

	// changed is closed (and replaced) on every change: the overview's
	// SSE streams wait on it.
	changed chan struct{}
	version uint64
}

// ReplayInfo describes a replay being played. It is the `replay` object of
// /api/v1/state, so its names are the API's snake_case.
type ReplayInfo struct {
	RunID string  `json:"run_id"`
	Speed float64 `json:"speed"`
	// Events is how many events the run has; Played how many are shown.
	Events int  `json:"events"`
	Played int  `json:"played"`
	Done   bool `json:"done"`
}

// RunView is one run as the dashboard shows it: its summary plus the last
// event seen live.
type RunView struct {
	bus.RunSummary
	LastEvent   string
	LastEventAt time.Time
	LastMessage string
	// LastEventRef is LastEvent in the reference implementation's
	// vocabulary (refevents.go), for the JSON API's last_event.
	LastEventRef string
	// LiveTotals are the run's token totals mid-turn, as its progress
	// reported them (codex); the summary's usage moves only at a turn's end.
	LiveTotals *bus.Usage
	// LiveSessionID is the agent's session as its own events report it
	// (system_init and later). The summary learns the session only from
	// session_started, which the runner records when the first turn ends,
	// so until then this is the only place it is known; it is kept apart
	// from the summary because PutRun replaces that wholesale.
	LiveSessionID string
}

// Session is the run's agent session: the summary's, else the one its
// live events reported.
func (r RunView) Session() string {
	if r.SessionID != "" {
		return r.SessionID
	}
	return r.LiveSessionID
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{
		runs: map[string]*RunView{}, claims: map[string]bus.Claim{}, retries: map[string]bus.RetryEntry{},
		blocked: map[string]bus.BlockedEntry{}, issues: map[string]bus.Issue{}, components: map[string]bus.ComponentEvent{},
		changed: make(chan struct{}), spend: newSpendState(),
	}
}

// update applies f under the write lock and wakes the watchers.
func (m *Model) update(f func()) {
	m.mu.Lock()
	f()
	m.version++
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// Changed returns a channel closed at the next change, and the version it
// follows.
func (m *Model) Changed() (<-chan struct{}, uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed, m.version
}

// PutRun stores a run summary, keeping what the live stream added.
func (m *Model) PutRun(s bus.RunSummary) {
	m.update(func() {
		v := m.runs[s.RunID]
		if v == nil {
			v = &RunView{}
			m.runs[s.RunID] = v
		}
		v.RunSummary = s
	})
}

// DeleteRun forgets a run (pruned).
func (m *Model) DeleteRun(id string) {
	m.update(func() { delete(m.runs, id) })
}

// ApplyRunEvent notes a lifecycle event as its run's latest. fold also
// folds it into the run's summary: in replay, where events are the only
// source. Live, the KV summary is authoritative (it is written after the
// event is published, so folding here too could count a turn twice); the
// event is folded only into a run the KV has not shown yet.
func (m *Model) ApplyRunEvent(ev bus.RunEvent, fold bool) {
	m.update(func() {
		v := m.runs[ev.RunID]
		if v == nil {
			v = &RunView{}
			m.runs[ev.RunID] = v
			fold = true
		}
		if fold {
			runlog.Apply(&v.RunSummary, ev)
		}
		v.LastEvent, v.LastEventAt = "run "+string(ev.Event), ev.At
		v.LastEventRef = refRunEvent(ev)
		if ev.Error != "" {
			v.LastMessage = ev.Error
		}
	})
}

// ApplyProgress notes a run's coalesced progress: its latest rate-limit
// signal, then its latest event.
func (m *Model) ApplyProgress(p bus.RunProgress) {
	if p.RateLimit != nil {
		m.ApplyTurnEvent(*p.RateLimit)
	}
	if p.Totals != nil {
		t := *p.Totals
		m.update(func() {
			if v := m.runs[p.RunID]; v != nil {
				v.LiveTotals = &t
			}
		})
	}
	m.ApplyTurnEvent(p.Last)
}

// ApplyTurnEvent notes an agent event as its run's latest.
func (m *Model) ApplyTurnEvent(ev bus.TurnEvent) {
	m.update(func() {
		if ev.IsRateLimit() {
			e := ev
			if prev := m.agentLimit; e.Raw == nil && prev != nil && prev.RunID == e.RunID && prev.Seq == e.Seq {
				e.Raw = prev.Raw // the progress message's brief copy of the same event
			}
			m.agentLimit = &e
		}
		v := m.runs[ev.RunID]
		if v == nil {
			return
		}
		v.LastEvent, v.LastEventAt = string(ev.Kind), ev.At
		v.LastEventRef = refTurnEvent(ev)
		if msg := eventMessage(ev); msg != "" {
			v.LastMessage = msg
		}
		v.Turns = max(v.Turns, ev.Turn)
		if ev.SessionID != "" {
			v.LiveSessionID = ev.SessionID
		}
	})
}

// ApplyHookEvent notes a hook event as its run's latest.
func (m *Model) ApplyHookEvent(ev bus.HookEvent) {
	m.update(func() {
		v := m.runs[ev.RunID]
		if v == nil {
			return
		}
		v.LastEvent, v.LastEventAt = "hook "+ev.Hook+" "+string(ev.Phase), ev.At
		v.LastEventRef = refNotification
		if ev.Error != "" {
			v.LastMessage = ev.Error
		}
	})
}

// eventMessage is a one-line summary of an agent event.
func eventMessage(ev bus.TurnEvent) string {
	switch {
	case ev.Kind == bus.TurnPrompt:
		return ""
	case ev.Tool != nil && ev.Kind == bus.TurnToolUse:
		return oneLine(ev.Tool.Name+" "+string(ev.Tool.Input), 160)
	case ev.TrackerTool != nil && ev.Kind == bus.TurnTrackerTool:
		return trackerToolMessage(ev.TrackerTool)
	default:
		return oneLine(ev.Text, 160)
	}
}

// SetClaim, SetRetry and SetBlocked mirror the scheduler's durable state;
// a nil value deletes.
func (m *Model) SetClaim(id string, c *bus.Claim) { setEntry(m, m.claims, id, c) }

// SetRetry mirrors a retry entry (nil deletes).
func (m *Model) SetRetry(id string, r *bus.RetryEntry) { setEntry(m, m.retries, id, r) }

// SetBlocked mirrors a blocked entry (nil deletes).
func (m *Model) SetBlocked(id string, b *bus.BlockedEntry) { setEntry(m, m.blocked, id, b) }

func setEntry[T any](m *Model, into map[string]T, id string, v *T) {
	m.update(func() {
		if v == nil {
			delete(into, id)
		} else {
			into[id] = *v
		}
	})
}

// SetPaused mirrors the pause state.
func (m *Model) SetPaused(p bus.PauseState) { m.update(func() { m.paused = p }) }

// SetConfig mirrors the config in force.
func (m *Model) SetConfig(c bus.ConfigSnapshot) {
	m.update(func() { m.config = &c; m.spend.setZone(&c) })
}

// SetWorkflowStatus mirrors the outcome of the latest load.
func (m *Model) SetWorkflowStatus(s bus.WorkflowStatus) { m.update(func() { m.status = &s }) }

// SetReady marks the initial state as loaded.
func (m *Model) SetReady() { m.update(func() { m.ready = true }) }

// SetSnapshot records a successful poll.
func (m *Model) SetSnapshot(s bus.CandidateSnapshot) {
	m.update(func() {
		m.lastPoll, m.pollFail = &s, nil
		clear(m.issues)
		m.unsafe = m.unsafe[:0]
		for _, iss := range s.Issues {
			if !safeid.Valid(iss.Identifier) {
				m.unsafe = append(m.unsafe, safeid.Quote(iss.Identifier))
				continue
			}
			m.issues[iss.Identifier] = iss
		}
	})
}

// SetPollFailed records a failed poll.
func (m *Model) SetPollFailed(p bus.PollFailed) { m.update(func() { m.pollFail = &p }) }

// SetComponent records a component's lifecycle change.
func (m *Model) SetComponent(ev bus.ComponentEvent) {
	m.update(func() { m.components[ev.Component] = ev })
}

// SetReplay records the replay's progress.
func (m *Model) SetReplay(r ReplayInfo) { m.update(func() { m.replay = &r }) }

// View is a consistent copy of the model, taken at one moment, that pages
// and API answers are rendered from.
type View struct {
	Now      time.Time
	Ready    bool
	Running  []RunView
	Recent   []RunView // finished, newest first
	Retries  []bus.RetryEntry
	Blocked  []bus.BlockedEntry
	Paused   bus.PauseState
	Config   *bus.ConfigSnapshot
	Workflow *bus.WorkflowStatus
	LastPoll *bus.CandidateSnapshot
	PollFail *bus.PollFailed
	// AgentLimit is the latest rate-limit event an agent reported.
	AgentLimit *bus.TurnEvent
	Components []bus.ComponentEvent
	Unsafe     []string
	Replay     *ReplayInfo
	Totals     Totals
	// Spend is spend control: today against the daily caps, the last
	// days, parked issues with their spend, recent notifications.
	Spend SpendView
}

// Totals are the aggregates of the overview.
type Totals struct {
	Running, Retrying, Blocked  int
	SucceededToday, FailedToday int
	Runs                        int
	ByStatus                    map[string]int
	Usage                       bus.Usage
	// AllTokens sums every run's tokens counted once whatever the agent
	// (bus.Usage.BudgetTokens: claude's cache reads and writes included,
	// codex's cached tokens not counted twice).
	AllTokens int64
	// CostUSD sums the runs that reported a cost; CostRuns counts them.
	CostUSD  float64
	CostRuns int
	// PricedUSD sums the runs that reported no cost but were priced from
	// the pricing table (codex); PricedRuns counts them.
	PricedUSD  float64
	PricedRuns int
	// AgentSeconds is the agent runtime summed over runs (running ones up
	// to now).
	AgentSeconds float64
}

// TotalTokens is input plus output tokens.
func (t Totals) TotalTokens() int64 { return t.Usage.InputTokens + t.Usage.OutputTokens }

// Snapshot takes a View at now, with at most recent finished runs.
func (m *Model) Snapshot(now time.Time, recent int) View {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v := View{Now: now, Ready: m.ready, Paused: m.paused, Config: m.config, Workflow: m.status, LastPoll: m.lastPoll,
		PollFail: m.pollFail, AgentLimit: m.agentLimit, Replay: m.replay}
	v.Unsafe = slices.Clone(m.unsafe)
	if m.replay != nil {
		r := *m.replay
		v.Replay = &r
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	t := Totals{ByStatus: map[string]int{}}
	var finished []RunView
	for _, r := range m.runs {
		t.Runs++
		t.ByStatus[string(r.Status)]++
		t.Usage = t.Usage.Add(r.Usage)
		t.AllTokens += r.Usage.BudgetTokens(r.Agent)
		if r.CostUSD != nil {
			t.CostUSD += *r.CostUSD
			t.CostRuns++
		} else if r.BudgetUSD != nil {
			t.PricedUSD += *r.BudgetUSD
			t.PricedRuns++
		}
		end := now
		if r.Ended != nil {
			end = *r.Ended
		}
		if d := end.Sub(r.Started); d > 0 {
			t.AgentSeconds += d.Seconds()
		}
		if r.Status == bus.RunRunning {
			v.Running = append(v.Running, *r)
			continue
		}
		finished = append(finished, *r)
		if r.Ended != nil && !r.Ended.Before(midnight) {
			if r.Status == bus.RunSucceeded {
				t.SucceededToday++
			} else {
				t.FailedToday++
			}
		}
	}
	slices.SortFunc(v.Running, func(a, b RunView) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.RunID, b.RunID))
	})
	slices.SortFunc(finished, func(a, b RunView) int {
		return cmp.Or(endOf(b).Compare(endOf(a)), cmp.Compare(b.RunID, a.RunID))
	})
	if len(finished) > recent {
		finished = finished[:recent]
	}
	v.Recent = finished
	for _, r := range m.retries {
		v.Retries = append(v.Retries, r)
	}
	slices.SortFunc(v.Retries, func(a, b bus.RetryEntry) int {
		return cmp.Or(a.DueAt.Compare(b.DueAt), cmp.Compare(a.Identifier, b.Identifier))
	})
	for _, b := range m.blocked {
		v.Blocked = append(v.Blocked, b)
	}
	slices.SortFunc(v.Blocked, func(a, b bus.BlockedEntry) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Identifier, b.Identifier))
	})
	for _, c := range m.components {
		v.Components = append(v.Components, c)
	}
	slices.SortFunc(v.Components, func(a, b bus.ComponentEvent) int { return cmp.Compare(a.Component, b.Component) })
	t.Running, t.Retrying, t.Blocked = len(v.Running), len(v.Retries), len(v.Blocked)
	v.Totals = t
	v.Spend = m.spendView(now)
	v.Spend.Parked = m.parked(v.Blocked)
	return v
}

func endOf(r RunView) time.Time {
	if r.Ended != nil {
		return *r.Ended
	}
	return r.Started
}

// Run returns one run's view.
func (m *Model) Run(id string) (RunView, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.runs[id]
	if !ok {
		return RunView{}, false
	}
	return *r, true
}

// IssueView is what the dashboard knows of one issue.
type IssueView struct {
	Identifier string
	// Issue is the issue as the latest poll saw it (nil when it was not
	// among the candidates).
	Issue *bus.Issue
	// Ref is the issue as its latest run recorded it.
	Ref       bus.IssueRef
	Runs      []RunView // newest first
	Claim     *bus.Claim
	Retry     *bus.RetryEntry
	Blocked   *bus.BlockedEntry
	Workspace string
	// Spend is the issue's lifetime spend against its caps.
	Spend IssueSpendView
}

// Issue returns what is known of an issue by identifier; false when nothing.
func (m *Model) Issue(identifier string) (IssueView, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v := IssueView{Identifier: identifier}
	if iss, ok := m.issues[identifier]; ok {
		v.Issue = &iss
		v.Ref = iss.Ref()
	}
	for _, r := range m.runs {
		if r.Issue.Identifier == identifier {
			v.Runs = append(v.Runs, *r)
		}
	}
	slices.SortFunc(v.Runs, func(a, b RunView) int {
		return cmp.Or(b.Started.Compare(a.Started), cmp.Compare(b.RunID, a.RunID))
	})
	if len(v.Runs) > 0 && v.Issue == nil {
		v.Ref = v.Runs[0].Issue
	}
	id := v.Ref.ID
	for _, r := range v.Runs {
		if r.Workspace != "" {
			v.Workspace = r.Workspace
			break
		}
	}
	if id == "" {
		// Known only to the scheduler's state (a retry or a block).
		for k, r := range m.retries {
			if r.Identifier == identifier {
				id = k
			}
		}
		for k, b := range m.blocked {
			if b.Identifier == identifier {
				id = k
			}
		}
		if id == "" {
			id = m.issueIDBySpend(identifier)
		}
		v.Ref.ID, v.Ref.Identifier = id, identifier
	}
	if c, ok := m.claims[id]; ok {
		v.Claim = &c
	}
	if r, ok := m.retries[id]; ok {
		v.Retry = &r
	}
	if b, ok := m.blocked[id]; ok {
		v.Blocked = &b
	}
	v.Spend = m.issueSpend(id)
	known := v.Issue != nil || len(v.Runs) > 0 || v.Claim != nil || v.Retry != nil || v.Blocked != nil || v.Spend.Known
	return v, known && id != ""
}
