package bus

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	// The IANA time zone database, embedded: budget.per_day.time_zone
	// names a zone (Europe/Berlin), and a host without /usr/share/zoneinfo
	// (a distroless image) must resolve it the same as one with it. Go
	// uses the system's database first and this copy only as a fallback;
	// it costs the binary about 450 KB. It sits here, beside
	// DayBudget.Location, so every component that reads the budget can
	// resolve the zone the loader accepted.
	_ "time/tzdata"
)

// Config is the typed configuration read from WORKFLOW.md front matter, with
// every default applied and every path resolved. It is what the workflow
// component puts in KV symphony_config and every component reads.
type Config struct {
	Tracker   TrackerConfig   `json:"tracker"`
	Polling   PollingConfig   `json:"polling"`
	Workspace WorkspaceConfig `json:"workspace"`
	Hooks     HooksConfig     `json:"hooks"`
	Agent     AgentConfig     `json:"agent"`
	Claude    ClaudeConfig    `json:"claude"`
	Codex     CodexConfig     `json:"codex"`
	Server    ServerConfig    `json:"server"`
	// Budget holds the spending caps (WORKFLOW.md budget:); a zero value
	// caps nothing.
	Budget BudgetConfig `json:"budget"`
	// Pricing gives a USD price to the tokens of an agent that does not
	// report its cost (codex), keyed by model name as written (trimmed).
	Pricing map[string]ModelPrice `json:"pricing"`
	// Notify is the operator's notification command.
	Notify NotifyConfig `json:"notify"`
	// RetentionMS, when positive, makes the pruner delete finished runs
	// older than this on a schedule (WORKFLOW.md `retention: 30d`).
	RetentionMS int64 `json:"retention_ms"`
}

// Tracker kinds.
const (
	TrackerLinear = "linear"
	TrackerFiles  = "files"
	TrackerGitHub = "github"
)

// TrackerConfig is the tracker section.
type TrackerConfig struct {
	Kind           string          `json:"kind"`
	Provider       TrackerProvider `json:"provider"`
	RequiredLabels []string        `json:"required_labels"`
	ActiveStates   []string        `json:"active_states"`
	TerminalStates []string        `json:"terminal_states"`
	// Tools are the settings of the tools the tracker runs for agents. A
	// run's tool session pins the adapter built from them when the run
	// starts: a reload applies to later runs.
	Tools TrackerToolSettings `json:"tools,omitzero"`
}

// The policies of the linear_graphql tool, as WORKFLOW.md spells them
// (tracker.tools.linear_graphql); components/tracker/linearscope defines
// what each allows.
const (
	// LinearGraphQLScoped (the default): queries, and an allowed list of
	// mutations only on the run's own issue.
	LinearGraphQLScoped = "scoped"
	// LinearGraphQLAny is the reference's behaviour: any operation.
	LinearGraphQLAny = "any"
	// LinearGraphQLOff refuses every call.
	LinearGraphQLOff = "off"
)

// TrackerToolSettings holds the tool settings; which apply depends on Kind.
type TrackerToolSettings struct {
	// LinearGraphQL is the policy of Linear's linear_graphql tool, one of
	// the LinearGraphQL* constants; empty (the files tracker) when the
	// tool does not exist for the kind.
	LinearGraphQL string `json:"linear_graphql,omitempty"`
	// GitHubAPI is the policy of GitHub's github_api tool, one of the
	// same three values (scoped, any, off; components/tracker says what
	// each allows on GitHub); empty when the kind is not github.
	GitHubAPI string `json:"github_api,omitempty"`
}

// TrackerProvider holds the adapter keys; which apply depends on Kind.
type TrackerProvider struct {
	// Linear.
	ProjectSlug string `json:"project_slug,omitempty"`
	// APIKey and Endpoint: Linear's key and GraphQL URL, or GitHub's token
	// and REST API root.
	APIKey   Secret `json:"api_key"`
	Endpoint string `json:"endpoint,omitempty"`
	// Assignee is a Linear user id, a GitHub login, or "me"; empty means
	// no filter.
	Assignee string `json:"assignee,omitempty"`
	// GitHub: Repo is "owner/name" as the loader validated it.
	Repo string `json:"repo,omitempty"`
	// StateLabels is GitHub's label prefix ("status:") whose labels give an
	// open issue its state; empty means the states are open and closed.
	StateLabels string `json:"state_labels,omitempty"`
	// Project is a GitHub Projects (v2) board, "owner/number", whose
	// single-select StatusField gives an open issue its state;
	// PriorityField, when set, its priority.
	Project       string `json:"project,omitempty"`
	StatusField   string `json:"status_field,omitempty"`
	PriorityField string `json:"priority_field,omitempty"`
	// Files: the directory of <IDENTIFIER>.md issues (absolute).
	Path string `json:"path,omitempty"`
	// Extra holds the keys of tracker.provider that this build's adapter
	// does not read, verbatim: the provider section belongs to the adapter
	// (the reference specification, §5.3.1), and validate reports each.
	Extra map[string]any `json:"extra,omitempty"`
}

// PollingConfig is the polling section.
type PollingConfig struct {
	IntervalMS int64 `json:"interval_ms"`
}

// Interval is the poll interval as a duration.
func (p PollingConfig) Interval() time.Duration { return ms(p.IntervalMS) }

// WorkspaceConfig is the workspace section.
type WorkspaceConfig struct {
	// Root is absolute and cleaned.
	Root string `json:"root"`
}

// HooksConfig is the hooks section: shell scripts run with bash -lc in the
// workspace.
type HooksConfig struct {
	AfterCreate  string `json:"after_create,omitempty"`
	BeforeRun    string `json:"before_run,omitempty"`
	AfterRun     string `json:"after_run,omitempty"`
	BeforeRemove string `json:"before_remove,omitempty"`
	TimeoutMS    int64  `json:"timeout_ms"`
	// InheritSecrets lets hooks see the tracker secret's environment
	// variable; by default it is removed from their environment.
	InheritSecrets bool `json:"inherit_secrets"`
}

// Timeout is the hook timeout as a duration.
func (h HooksConfig) Timeout() time.Duration { return ms(h.TimeoutMS) }

// Agent kinds.
const (
	AgentClaude = "claude"
	AgentCodex  = "codex"
)

// AgentConfig is the agent section.
type AgentConfig struct {
	Kind                string `json:"kind"`
	MaxConcurrentAgents int    `json:"max_concurrent_agents"`
	MaxTurns            int    `json:"max_turns"`
	MaxRetryBackoffMS   int64  `json:"max_retry_backoff_ms"`
	// MaxRunsPerIssue bounds the runs (first run, continuations and
	// retries) one issue gets while it stays in an active state; reaching
	// it parks the issue for an operator instead of starting run after
	// run. Always positive (the loader's default when absent).
	MaxRunsPerIssue int `json:"max_runs_per_issue"`
	// MaxConcurrentAgentsByState is keyed by normalized (trimmed,
	// lowercased) state name.
	MaxConcurrentAgentsByState map[string]int `json:"max_concurrent_agents_by_state"`
}

// ClaudeConfig is the claude section.
type ClaudeConfig struct {
	Command        string   `json:"command"`
	Model          string   `json:"model,omitempty"`
	PermissionMode string   `json:"permission_mode,omitempty"`
	AllowedTools   []string `json:"allowed_tools"`
	ExtraArgs      []string `json:"extra_args"`
	TurnTimeoutMS  int64    `json:"turn_timeout_ms"`
	StallTimeoutMS int64    `json:"stall_timeout_ms"`
	// StrictMCPConfig passes --strict-mcp-config: the agent gets
	// Symphony's MCP server alone, none of the operator's own.
	StrictMCPConfig bool `json:"strict_mcp_config"`
}

// CodexConfig is the codex section (spec §5.3.6). The approval and
// sandbox values are Codex's own (AskForApproval, SandboxMode,
// SandboxPolicy of the targeted app-server version): Symphony passes them
// through to thread/start and turn/start as JSON.
type CodexConfig struct {
	Command        string `json:"command"`
	TurnTimeoutMS  int64  `json:"turn_timeout_ms"`
	ReadTimeoutMS  int64  `json:"read_timeout_ms"`
	StallTimeoutMS int64  `json:"stall_timeout_ms"`
	// ApprovalPolicy is thread/start's approvalPolicy: a string
	// ("never", "on-request"…) or an object; nil means the loader's
	// default.
	ApprovalPolicy json.RawMessage `json:"approval_policy,omitempty"`
	// ThreadSandbox is thread/start's sandbox ("workspace-write"…).
	ThreadSandbox string `json:"thread_sandbox,omitempty"`
	// TurnSandboxPolicy is turn/start's sandboxPolicy (an object); nil
	// means a workspace-write policy rooted at the run's workspace.
	TurnSandboxPolicy json.RawMessage `json:"turn_sandbox_policy,omitempty"`
}

// BudgetConfig is the budget section: hard ceilings on what agents spend,
// per run, per issue (over every run of the issue, ever) and per calendar
// day across the fleet.
//
// Every cap is a plain number where zero means "no cap": the loader
// refuses zero, negative and non-finite values, so a zero can only mean
// the key was absent. That keeps the checks a plain `cap > 0 && spent >=
// cap` and the JSON free of nulls (an absent cap is an absent key).
type BudgetConfig struct {
	PerRun   BudgetCaps  `json:"per_run"`
	PerIssue IssueBudget `json:"per_issue"`
	PerDay   DayBudget   `json:"per_day"`
}

// BudgetCaps are the two caps every scope has.
type BudgetCaps struct {
	// USD caps the cost in US dollars: the agent's own figure (claude), or
	// its tokens priced by the pricing table (codex). 0: no cap.
	USD float64 `json:"usd,omitempty"`
	// Tokens caps the tokens the model processed, each counted once: what
	// Usage.BudgetTokens sums — input (cached or not, cache writes
	// included) plus output. For claude that is input_tokens +
	// cache_creation_input_tokens + cache_read_input_tokens +
	// output_tokens of its results; for codex inputTokens (which already
	// include cachedInputTokens) + outputTokens of the thread's totals.
	// Token caps apply to every agent, priced or not. 0: no cap.
	Tokens int64 `json:"tokens,omitempty"`
}

// Capped says whether either cap is set.
func (c BudgetCaps) Capped() bool { return c.USD > 0 || c.Tokens > 0 }

// IssueBudget caps one issue over all its runs, ever: the count survives
// restarts and outlives the pruning of the runs themselves.
type IssueBudget struct {
	BudgetCaps
	// Runs caps the runs the issue may ever have (unlike
	// agent.max_runs_per_issue, which bounds them while it stays active).
	// 0: no cap.
	Runs int `json:"runs,omitempty"`
	// Turns caps the agent turns over all its runs. 0: no cap.
	Turns int `json:"turns,omitempty"`
}

// Capped says whether any cap is set.
func (b IssueBudget) Capped() bool { return b.BudgetCaps.Capped() || b.Runs > 0 || b.Turns > 0 }

// DefaultBudgetTimeZone is the zone of the daily caps' calendar day when
// budget.per_day.time_zone is absent.
const DefaultBudgetTimeZone = "UTC"

// DayBudget caps the whole fleet for one calendar day in TimeZone.
type DayBudget struct {
	BudgetCaps
	// TimeZone is an IANA zone name ("Europe/Berlin"), UTC by default:
	// the day, and so the daily caps, roll over at its midnight.
	TimeZone string `json:"time_zone"`
}

// Location loads TimeZone ("" is UTC). The loader has checked the name
// against the same database (embedded in the binary), so an error here
// means a configuration that did not come from the loader.
func (b DayBudget) Location() (*time.Location, error) {
	if b.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(b.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("budget.per_day.time_zone %q: %w", b.TimeZone, err)
	}
	return loc, nil
}

// USDCapped says whether any scope has a USD cap: then an agent whose
// runs cannot be priced escapes those caps (validate warns).
func (b BudgetConfig) USDCapped() bool {
	return b.PerRun.USD > 0 || b.PerIssue.USD > 0 || b.PerDay.USD > 0
}

// ModelPrice is one model's price in US dollars per million tokens.
type ModelPrice struct {
	Input float64 `json:"input"`
	// CachedInput prices input tokens read from the provider's cache; the
	// loader sets it to Input when absent, so a missing figure never makes
	// a run look cheaper than it was.
	CachedInput float64 `json:"cached_input"`
	Output      float64 `json:"output"`
}

// CostUSD prices a usage counted the way codex (and OpenAI) counts it:
// InputTokens include the cached ones, CacheReadInputTokens says how many
// of them were cached. A cache-read count above the input count is taken
// as all-cached, never as a negative cost.
func (p ModelPrice) CostUSD(u Usage) float64 {
	cached := min(max(u.CacheReadInputTokens, 0), max(u.InputTokens, 0))
	fresh := max(u.InputTokens, 0) - cached
	cost := (float64(fresh)*p.Input + float64(cached)*p.CachedInput + float64(max(u.OutputTokens, 0))*p.Output) / 1e6
	if math.IsNaN(cost) || math.IsInf(cost, 0) {
		return math.MaxFloat64
	}
	return cost
}

// NotifyConfig is the notify section: a command the operator owns, run
// like a hook (bash -lc) with the event in its environment and as JSON on
// its standard input. Symphony itself opens no connection for it.
type NotifyConfig struct {
	// Command is the shell command; empty means no notifications.
	Command   string `json:"command"`
	TimeoutMS int64  `json:"timeout_ms"`
}

// Timeout is the notify command's timeout as a duration.
func (n NotifyConfig) Timeout() time.Duration { return ms(n.TimeoutMS) }

// ServerConfig is the dashboard's address.
type ServerConfig struct {
	Port int    `json:"port"`
	Bind string `json:"bind"`
}

// ConfigSnapshot is the value of KV symphony_config/current: the last good
// configuration and prompt template, with where they came from.
type ConfigSnapshot struct {
	// Version counts good loads since the bucket was created; it only grows.
	Version int64 `json:"version"`
	// Checksum is the hex SHA-256 of the WORKFLOW.md bytes.
	Checksum string    `json:"checksum"`
	Path     string    `json:"path"`
	LoadedAt time.Time `json:"loaded_at"`
	Config   Config    `json:"config"`
	// PromptTemplate is the Liquid body, trimmed ("" means the default prompt).
	PromptTemplate string `json:"prompt_template"`
	// Warnings are non-fatal problems found while loading (ignored entries).
	Warnings []string `json:"warnings,omitempty"`
}

// WorkflowError describes why a WORKFLOW.md could not be loaded.
type WorkflowError struct {
	// Class is one of missing_workflow_file, workflow_parse_error,
	// workflow_front_matter_not_a_map, template_parse_error,
	// template_render_error, config_validation_error.
	Class   string `json:"class"`
	Message string `json:"message"`
	Path    string `json:"path"`
	// Key is the front matter key at fault ("agent.max_turns"), if any.
	Key string `json:"key,omitempty"`
	// Line and Column locate the problem in the file (1-based; 0 unknown).
	Line   int       `json:"line,omitempty"`
	Column int       `json:"column,omitempty"`
	At     time.Time `json:"at"`
}

// WorkflowStatus is the value of KV symphony_config/status: the outcome of
// the latest load attempt, so a dashboard that starts late still shows a
// broken edit.
type WorkflowStatus struct {
	Valid bool `json:"valid"`
	// Version is the version of the config in use (the last good one).
	Version  int64          `json:"version"`
	Checksum string         `json:"checksum"`
	At       time.Time      `json:"at"`
	Error    *WorkflowError `json:"error,omitempty"`
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
