package workflowfile

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/duration"
	"github.com/symphony-oss/symphony/internal/yamlbound"
)

// Defaults (CONTRACT §1 and the reference specification §6.4).
const (
	DefaultLinearEndpoint      = "https://api.linear.app/graphql"
	DefaultLinearAPIKey        = "$LINEAR_API_KEY"
	DefaultPollIntervalMS      = 30000
	DefaultHookTimeoutMS       = 60000
	DefaultMaxConcurrentAgents = 10
	DefaultMaxTurns            = 20
	DefaultMaxRetryBackoffMS   = 300000
	DefaultClaudeCommand       = "claude"
	DefaultTurnTimeoutMS       = 3600000
	DefaultStallTimeoutMS      = 300000
	DefaultCodexCommand        = "codex app-server"
	DefaultCodexReadTimeoutMS  = 5000
	DefaultServerPort          = 4000
	DefaultServerBind          = "127.0.0.1"
	DefaultWorkspaceDirName    = "symphony_workspaces"
)

// DefaultActiveStates and DefaultTerminalStates are the state defaults.
func DefaultActiveStates() []string { return []string{"Todo", "In Progress"} }

// DefaultTerminalStates are the terminal state names by default.
func DefaultTerminalStates() []string {
	return []string{"Closed", "Cancelled", "Canceled", "Duplicate", "Done"}
}

// frontMatterLine is the file line of the first front matter line.
const frontMatterLine = 2

// parseFrontMatter parses the YAML between the fences into a map. An empty
// front matter is an empty map. yamlbound bounds nesting and alias
// expansion, so a hostile front matter costs in proportion to its bytes.
func parseFrontMatter(front []byte) (map[string]any, *ast.File, *Error) {
	if len(strings.TrimSpace(string(front))) == 0 {
		return map[string]any{}, nil, nil
	}
	v, file, docs, err := yamlbound.Decode(front)
	if err != nil {
		return nil, nil, yamlErr(err)
	}
	if docs > 1 {
		return nil, nil, &Error{Class: ClassParse, Line: frontMatterLine, Message: "front matter holds more than one YAML document"}
	}
	switch m := v.(type) {
	case nil:
		return map[string]any{}, file, nil
	case map[string]any:
		return m, file, nil
	}
	return nil, nil, &Error{Class: ClassFrontMatterNotMap, Line: frontMatterLine,
		Message: fmt.Sprintf("front matter must be a map of keys (tracker:, agent:, …), got %s", describe(v))}
}

func yamlErr(err error) *Error {
	e := &Error{Class: ClassParse, Message: err.Error()}
	var ye *yamlbound.Error
	if errors.As(err, &ye) {
		e.Message = ye.Message
		if ye.Line > 0 {
			e.Line = ye.Line + frontMatterLine - 1
			e.Column = ye.Column
		}
	}
	return e
}

// decoder walks the front matter map, applying defaults and collecting the
// first error with its key. Later keys are still decoded so defaults and
// warnings stay complete, but only the first error is reported.
type decoder struct {
	env      Env
	dir      string
	file     *ast.File
	err      *Error
	defaults []string
	inferred []string
	warnings []string
}

func (d *decoder) fail(key, format string, args ...any) {
	d.failPath(strings.Split(key, "."), format, args...)
}

// failPath fails at a key given as its segments, for keys whose names may
// hold a dot (a pricing model, "gpt-5.5"): the error names the key with
// such segments quoted (pricing."gpt-5.5".output) and finds its line.
func (d *decoder) failPath(segs []string, format string, args ...any) {
	if d.err != nil {
		return
	}
	d.err = &Error{Class: ClassConfig, Key: joinKey(segs), Line: d.pathLine(segs), Message: fmt.Sprintf(format, args...)}
}

// joinKey spells a key path, quoting the segments that are not plain.
func joinKey(segs []string) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s
		if !simpleKey.MatchString(s) {
			parts[i] = strconv.Quote(s)
		}
	}
	return strings.Join(parts, ".")
}

func (d *decoder) warn(key, format string, args ...any) {
	d.warnings = append(d.warnings, key+": "+fmt.Sprintf(format, args...))
}

var simpleKey = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// pathLine finds the file line of a key path; for a key that is absent,
// the line of the closest section that is present; 0 when it cannot.
func (d *decoder) pathLine(segs []string) int {
	for n := len(segs); n > 0; n-- {
		if line := d.keyLine(segs[:n]); line > 0 {
			return line
		}
	}
	return 0
}

// keyLine finds the line of one key path; a segment that is not plain is
// single-quoted for the YAML path, and one holding a quote or a backslash,
// which go-yaml's path syntax does not spell reliably, gives 0 (the
// caller then falls back to the enclosing section's line).
func (d *decoder) keyLine(segs []string) int {
	if d.file == nil || len(segs) == 0 {
		return 0
	}
	var path strings.Builder
	path.WriteString("$")
	for _, s := range segs {
		switch {
		case simpleKey.MatchString(s):
			path.WriteString("." + s)
		case s == "" || strings.ContainsAny(s, "'\\\n"):
			return 0
		default:
			path.WriteString(".'" + s + "'")
		}
	}
	p, err := yaml.PathString(path.String())
	if err != nil {
		return 0
	}
	n, err := p.FilterFile(d.file)
	if err != nil || n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line + frontMatterLine - 1
}

// section returns the map at key (nil when absent).
func (d *decoder) section(m map[string]any, key, full string) map[string]any {
	v, ok := m[key]
	if !ok || v == nil {
		return nil
	}
	sec, ok := v.(map[string]any)
	if !ok {
		d.fail(full, "must be a map, got %s", describe(v))
		return nil
	}
	return sec
}

func (d *decoder) config(root map[string]any) bus.Config {
	var c bus.Config
	d.warnUnknown(root)
	c.Tracker = d.tracker(d.section(root, "tracker", "tracker"))
	polling := d.section(root, "polling", "polling")
	c.Polling.IntervalMS = d.positive(polling, "interval_ms", "polling.interval_ms", DefaultPollIntervalMS)
	c.Workspace.Root = d.workspaceRoot(d.section(root, "workspace", "workspace"))
	c.Hooks = d.hooks(d.section(root, "hooks", "hooks"))
	c.Agent = d.agent(d.section(root, "agent", "agent"), configures(root, bus.AgentCodex) && !configures(root, bus.AgentClaude))
	c.Claude = d.claude(d.section(root, "claude", "claude"))
	c.Codex = d.codex(d.section(root, "codex", "codex"))
	c.Server = d.server(d.section(root, "server", "server"))
	c.Budget = d.budget(d.section(root, "budget", "budget"))
	if _, ok := root["pricing"]; !ok || root["pricing"] == nil {
		d.defaults = append(d.defaults, "pricing")
	}
	c.Pricing = d.pricing(d.section(root, "pricing", "pricing"))
	c.Notify = d.notify(d.section(root, "notify", "notify"))
	d.warnUnpriced(c)
	if v := d.str(root, "retention", "retention", ""); v != "" {
		r, err := duration.Parse(strings.TrimSpace(v))
		if err != nil || r <= 0 {
			d.fail("retention", "must be a positive duration like 30d or 12h, got %q", v)
		} else {
			c.RetentionMS = r.Milliseconds()
			if bus.StreamMaxAgeFor(r) > bus.DefaultStreamMaxAge {
				d.warn("retention", "%s: the store's backstop (%d days by default) must outlast it by a week; symphony run lengthens it when it starts, and a change made while it runs takes effect at its next start", v, int(bus.DefaultStreamMaxAge.Hours()/24))
			}
		}
	}
	return c
}

func (d *decoder) tracker(m map[string]any) bus.TrackerConfig {
	var t bus.TrackerConfig
	t.Kind = strings.ToLower(d.str(m, "kind", "tracker.kind", ""))
	switch t.Kind {
	case "":
		d.fail("tracker.kind", "required (linear, github or files)")
	case bus.TrackerLinear, bus.TrackerFiles, bus.TrackerGitHub:
	default:
		d.fail("tracker.kind", "unsupported tracker %q (supported: linear, github, files)", t.Kind)
	}
	prov := d.section(m, "provider", "tracker.provider")
	// The reference specification puts the Linear keys directly under
	// tracker; accept that spelling too, provider winning.
	get := func(key string) (map[string]any, string) {
		if _, ok := prov[key]; ok {
			return prov, "tracker.provider." + key
		}
		if _, ok := m[key]; ok && key != "path" {
			return m, "tracker." + key
		}
		return prov, "tracker.provider." + key
	}
	switch t.Kind {
	case bus.TrackerLinear:
		src, key := get("project_slug")
		t.Provider.ProjectSlug = d.indirect(src, "project_slug", key, "")
		if t.Provider.ProjectSlug == "" {
			d.fail(key, "required for the linear tracker (the project's slug, from its URL)")
		}
		src, key = get("api_key")
		t.Provider.APIKey = d.secret(src, "api_key", key, DefaultLinearAPIKey)
		src, key = get("endpoint")
		t.Provider.Endpoint = d.indirect(src, "endpoint", key, DefaultLinearEndpoint)
		if u, err := url.Parse(t.Provider.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			d.fail(key, "must be an http(s) URL, got %q", t.Provider.Endpoint)
		} else if err := CheckTransport(u); err != nil {
			d.fail(key, "%v", err)
		}
	case bus.TrackerGitHub:
		d.github(&t, get)
	case bus.TrackerFiles:
		t.Provider.Path = d.path(prov, "path", "tracker.provider.path", "")
		if t.Provider.Path == "" && d.err == nil {
			d.fail("tracker.provider.path", "required for the files tracker (a directory of <IDENTIFIER>.md issues)")
		}
	}
	// Both trackers filter by assignee: Linear by user id (or "me"), the
	// files tracker by the assignee value written in each issue file.
	if t.Kind == bus.TrackerLinear || t.Kind == bus.TrackerFiles {
		src, key := get("assignee")
		t.Provider.Assignee = d.indirect(src, "assignee", key, "")
	}
	d.blankLabels(m["required_labels"])
	t.RequiredLabels = lower(d.strList(m, "required_labels", "tracker.required_labels", []string{}))
	active, terminal := DefaultActiveStates(), DefaultTerminalStates()
	if t.Kind == bus.TrackerGitHub && !githubNamedStates(t.Provider) {
		active, terminal = []string{GitHubOpen}, []string{GitHubClosed}
	}
	t.ActiveStates = d.strList(m, "active_states", "tracker.active_states", active)
	t.TerminalStates = d.strList(m, "terminal_states", "tracker.terminal_states", terminal)
	if len(t.ActiveStates) == 0 {
		d.fail("tracker.active_states", "must name at least one state")
	}
	if t.Kind == bus.TrackerGitHub {
		d.githubStates(t)
	}
	t.Provider.Extra = d.providerKeys(prov, t.Kind)
	d.trackerLevelKeys(m, t.Kind)
	t.Tools = d.trackerTools(d.section(m, "tools", "tracker.tools"), t.Kind)
	return t
}

// trackerTools decodes tracker.tools. Each tool's policy is checked
// whatever the kind (a misspelt value is an error, not a silent default),
// but kept only for its tracker: linear_graphql for Linear, github_api for
// GitHub; the files tracker has neither (README says so).
func (d *decoder) trackerTools(m map[string]any, kind string) bus.TrackerToolSettings {
	var t bus.TrackerToolSettings
	if p := d.toolPolicy(m, "linear_graphql"); kind == bus.TrackerLinear {
		t.LinearGraphQL = p
	} else if _, set := m["linear_graphql"]; set && kind != "" {
		d.warn("tracker.tools.linear_graphql", "not applicable to the %s tracker (it has no such tool); ignored", kind)
	}
	if kind == bus.TrackerGitHub || m["github_api"] != nil {
		if p := d.toolPolicy(m, "github_api"); kind == bus.TrackerGitHub {
			t.GitHubAPI = p
		} else if kind != "" {
			d.warn("tracker.tools.github_api", "not applicable to the %s tracker (it has no such tool); ignored", kind)
		}
	}
	return t
}

// toolPolicy reads tracker.tools.<name>: scoped (the default), any or off.
func (d *decoder) toolPolicy(m map[string]any, name string) string {
	key := "tracker.tools." + name
	raw := d.str(m, name, key, bus.LinearGraphQLScoped)
	switch p := strings.ToLower(strings.TrimSpace(raw)); p {
	case bus.LinearGraphQLScoped, bus.LinearGraphQLAny, bus.LinearGraphQLOff:
		return p
	default:
		d.fail(key, "unknown policy %q (want %s, %s or %s)", raw, bus.LinearGraphQLScoped, bus.LinearGraphQLAny, bus.LinearGraphQLOff)
	}
	return ""
}

func (d *decoder) workspaceRoot(m map[string]any) string {
	root := d.path(m, "root", "workspace.root", "")
	if root == "" {
		root = filepath.Join(d.env.TempDir, DefaultWorkspaceDirName)
	}
	return root
}

func (d *decoder) hooks(m map[string]any) bus.HooksConfig {
	h := bus.HooksConfig{
		AfterCreate:    d.str(m, "after_create", "hooks.after_create", ""),
		BeforeRun:      d.str(m, "before_run", "hooks.before_run", ""),
		AfterRun:       d.str(m, "after_run", "hooks.after_run", ""),
		BeforeRemove:   d.str(m, "before_remove", "hooks.before_remove", ""),
		InheritSecrets: d.boolean(m, "inherit_secrets", "hooks.inherit_secrets", false),
	}
	if h.InheritSecrets {
		// An explicit opt-out of a rule SECURITY.md states: say so wherever
		// the configuration is checked or loaded.
		d.warn("hooks.inherit_secrets", "true: hooks run with the tracker secret's variable in their environment")
	}
	// A non-positive timeout is an error (the reference specification,
	// §5.3.4: invalid values fail validation), not a silent default: the
	// operator who wrote 0 meant something, and it was not 60 s.
	h.TimeoutMS = d.positive(m, "timeout_ms", "hooks.timeout_ms", DefaultHookTimeoutMS)
	return h
}

// agent decodes the agent section. codexOnly says the workflow configures
// a codex section and no claude section: then an absent agent.kind means
// codex (a reference workflow, written for codex, runs codex unchanged),
// and the warning says the kind was inferred.
func (d *decoder) agent(m map[string]any, codexOnly bool) bus.AgentConfig {
	a := bus.AgentConfig{
		Kind:                strings.ToLower(d.str(m, "kind", "agent.kind", bus.AgentClaude)),
		MaxConcurrentAgents: int(d.positive(m, "max_concurrent_agents", "agent.max_concurrent_agents", DefaultMaxConcurrentAgents)),
		MaxTurns:            int(d.positive(m, "max_turns", "agent.max_turns", DefaultMaxTurns)),
		MaxRetryBackoffMS:   d.positive(m, "max_retry_backoff_ms", "agent.max_retry_backoff_ms", DefaultMaxRetryBackoffMS),
		MaxRunsPerIssue:     int(d.positive(m, "max_runs_per_issue", "agent.max_runs_per_issue", DefaultMaxRunsPerIssue)),
	}
	if a.Kind != bus.AgentClaude && a.Kind != bus.AgentCodex {
		d.fail("agent.kind", "unsupported agent %q (supported: claude, codex)", a.Kind)
	}
	if m["kind"] == nil && codexOnly {
		a.Kind = bus.AgentCodex
		d.defaults = slices.DeleteFunc(d.defaults, func(k string) bool { return k == "agent.kind" })
		d.inferred = append(d.inferred, "agent.kind")
		d.warn("agent.kind", "codex (inferred: the workflow configures codex and not claude)")
	}
	a.MaxConcurrentAgentsByState = map[string]int{}
	by := d.section(m, "max_concurrent_agents_by_state", "agent.max_concurrent_agents_by_state")
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, state := range keys {
		key := "agent.max_concurrent_agents_by_state." + state
		n, ok := toInt(by[state])
		norm := strings.ToLower(strings.TrimSpace(state))
		if !ok || n <= 0 || norm == "" {
			d.warn(key, "ignored: must be a positive integer, got %s", describe(by[state]))
			continue
		}
		a.MaxConcurrentAgentsByState[norm] = int(n)
	}
	return a
}

func (d *decoder) claude(m map[string]any) bus.ClaudeConfig {
	c := bus.ClaudeConfig{
		Command:        d.str(m, "command", "claude.command", DefaultClaudeCommand),
		Model:          d.str(m, "model", "claude.model", ""),
		PermissionMode: d.str(m, "permission_mode", "claude.permission_mode", ""),
		AllowedTools:   d.strList(m, "allowed_tools", "claude.allowed_tools", []string{}),
		ExtraArgs:      d.strList(m, "extra_args", "claude.extra_args", []string{}),
		TurnTimeoutMS:  d.positive(m, "turn_timeout_ms", "claude.turn_timeout_ms", DefaultTurnTimeoutMS),
	}
	c.StallTimeoutMS, _ = d.integer(m, "stall_timeout_ms", "claude.stall_timeout_ms", DefaultStallTimeoutMS)
	c.StrictMCPConfig = d.boolean(m, "strict_mcp_config", "claude.strict_mcp_config", false)
	// CLAUDE_CLI overrides the binary (e.g. a pinned install).
	if v, ok := d.env.LookupEnv("CLAUDE_CLI"); ok && strings.TrimSpace(v) != "" {
		c.Command = strings.TrimSpace(v)
		d.defaults = slices.DeleteFunc(d.defaults, func(k string) bool { return k == "claude.command" })
		d.warnings = append(d.warnings, "claude.command: overridden by $CLAUDE_CLI ("+c.Command+")")
	}
	if strings.TrimSpace(c.Command) == "" {
		d.fail("claude.command", "must not be empty")
	}
	return c
}

func (d *decoder) server(m map[string]any) bus.ServerConfig {
	// server.host is the reference implementation's name for the bind
	// address; server.bind wins when both are set.
	bindKey := "server.bind"
	if _, hasBind := m["bind"]; !hasBind && m["host"] != nil {
		bindKey = "server.host"
	}
	s := bus.ServerConfig{Bind: d.str(m, bindKey[len("server."):], bindKey, DefaultServerBind)}
	port, ok := d.integer(m, "port", "server.port", DefaultServerPort)
	if ok && (port < 0 || port > 65535) {
		d.fail("server.port", "must be 0..65535, got %d", port)
	}
	s.Port = int(port)
	if s.Bind != "localhost" && net.ParseIP(s.Bind) == nil {
		d.fail(bindKey, "must be an IP address or localhost, got %q", s.Bind)
	}
	return s
}

// value returns m[key], recording a default when absent or null.
func (d *decoder) value(m map[string]any, key, full string) (any, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		d.defaults = append(d.defaults, full)
		return nil, false
	}
	return v, true
}

func (d *decoder) str(m map[string]any, key, full, def string) string {
	v, ok := d.value(m, key, full)
	if !ok {
		return def
	}
	switch s := v.(type) {
	case string:
		return s
	case uint64, int64, float64, bool:
		return fmt.Sprint(s)
	}
	d.fail(full, "must be a string, got %s", describe(v))
	return def
}

func (d *decoder) boolean(m map[string]any, key, full string, def bool) bool {
	v, ok := d.value(m, key, full)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		d.fail(full, "must be true or false, got %s", describe(v))
		return def
	}
	return b
}

// integer accepts an integer or a string holding one. ok is false when the
// default was used.
func (d *decoder) integer(m map[string]any, key, full string, def int64) (int64, bool) {
	v, ok := d.value(m, key, full)
	if !ok {
		return def, false
	}
	n, isInt := toInt(v)
	if !isInt {
		d.fail(full, "must be an integer, got %s", describe(v))
		return def, false
	}
	return n, true
}

func (d *decoder) positive(m map[string]any, key, full string, def int64) int64 {
	n, ok := d.integer(m, key, full, def)
	if ok && n <= 0 {
		d.fail(full, "must be a positive integer, got %d", n)
		return def
	}
	return n
}

// strList accepts a list of strings or one comma-separated string; entries
// are trimmed and empty ones dropped.
func (d *decoder) strList(m map[string]any, key, full string, def []string) []string {
	v, ok := d.value(m, key, full)
	if !ok {
		return def
	}
	var raw []string
	switch l := v.(type) {
	case string:
		raw = strings.Split(l, ",")
	case []any:
		for i, e := range l {
			s, isStr := e.(string)
			if !isStr {
				d.fail(full, "entry %d must be a string, got %s", i+1, describe(e))
				return def
			}
			raw = append(raw, s)
		}
	default:
		d.fail(full, "must be a list of strings or a comma-separated string, got %s", describe(v))
		return def
	}
	out := []string{}
	for _, s := range raw {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var envRef = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)$`)

// indirect reads a string that may be exactly $NAME, in which case the
// environment variable's value is used (empty when unset).
func (d *decoder) indirect(m map[string]any, key, full, def string) string {
	s := d.str(m, key, full, def)
	if ref := envRef.FindStringSubmatch(s); ref != nil {
		v, _ := d.env.LookupEnv(ref[1])
		return strings.TrimSpace(v)
	}
	return s
}

// secret reads a credential: a literal, or exactly $NAME. An unset or empty
// variable is a validation error that names the key and the variable —
// never a value.
func (d *decoder) secret(m map[string]any, key, full, def string) bus.Secret {
	s := d.str(m, key, full, def)
	if ref := envRef.FindStringSubmatch(s); ref != nil {
		v, _ := d.env.LookupEnv(ref[1])
		v = strings.TrimSpace(v)
		if v == "" {
			d.fail(full, "$%s is not set or empty (export it before starting symphony)", ref[1])
		}
		return bus.NewSecret(ref[1], v)
	}
	if strings.TrimSpace(s) == "" {
		d.fail(full, "must not be empty")
	}
	return bus.NewSecret("", strings.TrimSpace(s))
}

// path reads a filesystem path: exactly $NAME indirection, then ~ and $VAR
// expansion, then resolution against the WORKFLOW.md directory. A variable
// referenced but unset is an error (it would silently change the path).
func (d *decoder) path(m map[string]any, key, full, def string) string {
	s := d.str(m, key, full, def)
	if s == "" {
		return ""
	}
	var missing []string
	expanded := os.Expand(s, func(name string) string {
		v, ok := d.env.LookupEnv(name)
		if !ok || v == "" {
			missing = append(missing, "$"+name)
		}
		return v
	})
	if len(missing) > 0 {
		d.fail(full, "%s not set or empty (in %q)", strings.Join(missing, ", "), s)
		return ""
	}
	if expanded == "~" || strings.HasPrefix(expanded, "~/") {
		if d.env.Home == "" {
			d.fail(full, "cannot expand ~: no home directory")
			return ""
		}
		expanded = filepath.Join(d.env.Home, strings.TrimPrefix(expanded, "~"))
	}
	if !filepath.IsAbs(expanded) {
		expanded = filepath.Join(d.dir, expanded)
	}
	return filepath.Clean(expanded)
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, false
		}
		return int64(n), true
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		return i, err == nil
	}
	return 0, false
}

func lower(l []string) []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		s = strings.ToLower(s)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// blankLabels fails on a blank entry of tracker.required_labels (a list
// entry, or a gap between commas). The specification says a blank label
// matches no issue: kept, it would stop every dispatch; dropped, it would
// quietly widen the filter the operator wrote. Either way the file does
// not mean what it says, so it is an error naming the entry. An empty
// string as the whole value is no labels, like [].
func (d *decoder) blankLabels(v any) {
	const key = "tracker.required_labels"
	switch l := v.(type) {
	case string:
		if strings.TrimSpace(l) == "" {
			return
		}
		for i, s := range strings.Split(l, ",") {
			if strings.TrimSpace(s) == "" {
				d.fail(key, "entry %d is blank (a blank label would match no issue); remove it", i+1)
				return
			}
		}
	case []any:
		for i, e := range l {
			if s, ok := e.(string); ok && strings.TrimSpace(s) == "" {
				d.fail(key, "entry %d is blank (a blank label would match no issue); remove it", i+1)
				return
			}
		}
	}
}

// describe names a YAML value for an error message, briefly.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return strconv.Quote(x)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return yamlbound.Describe(v)
}
