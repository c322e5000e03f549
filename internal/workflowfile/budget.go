package workflowfile

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/symphony-oss/symphony/bus"
)

// The spend-control keys (issue #23): budget caps, the lifetime bound on
// continuation, the price table and the notification command. The loader
// only reads and checks them; the scheduler and the agent runner enforce
// them.
const (
	// DefaultMaxRunsPerIssue bounds the runs of one issue while it stays
	// active. A healthy issue needs one run, sometimes a continuation or
	// two (each run already allows agent.max_turns turns, 20 by default),
	// and a failing one is retried with a backoff that reaches its
	// 5-minute ceiling by the sixth attempt. Ten runs leave room for both
	// and still end a loop that will not converge after at most 10 ×
	// max_turns turns, about an hour of retries, instead of never.
	DefaultMaxRunsPerIssue = 10
	// DefaultNotifyTimeoutMS is the notify command's timeout, the hooks'.
	DefaultNotifyTimeoutMS = DefaultHookTimeoutMS
	// MaxPricingModels bounds the pricing table: it travels in every
	// config snapshot, and a real fleet prices a handful of models.
	MaxPricingModels = 256
	// MaxModelNameLen bounds a pricing model name (bytes, trimmed).
	MaxModelNameLen = 128
	// maxTimeZoneLen bounds budget.per_day.time_zone: the longest IANA
	// name is about 30 bytes.
	maxTimeZoneLen = 64
)

// budget decodes the budget section. Every cap is optional; an absent one
// is recorded as a default and stays zero (no cap).
func (d *decoder) budget(m map[string]any) bus.BudgetConfig {
	var b bus.BudgetConfig
	run := d.section(m, "per_run", "budget.per_run")
	b.PerRun = d.caps(run, "budget.per_run")
	issue := d.section(m, "per_issue", "budget.per_issue")
	b.PerIssue.BudgetCaps = d.caps(issue, "budget.per_issue")
	b.PerIssue.Runs = int(d.cap(issue, "runs", "budget.per_issue.runs", math.MaxInt32))
	b.PerIssue.Turns = int(d.cap(issue, "turns", "budget.per_issue.turns", math.MaxInt32))
	day := d.section(m, "per_day", "budget.per_day")
	b.PerDay.BudgetCaps = d.caps(day, "budget.per_day")
	b.PerDay.TimeZone = d.timeZone(day, "budget.per_day.time_zone")
	return b
}

func (d *decoder) caps(m map[string]any, prefix string) bus.BudgetCaps {
	return bus.BudgetCaps{
		USD:    d.usd(m, "usd", prefix+".usd"),
		Tokens: d.cap(m, "tokens", prefix+".tokens", maxTokenCap),
	}
}

// maxTokenCap bounds a token cap: far above any real budget (a
// quadrillion tokens), and far enough below MaxInt64 that a spent count
// plus one turn's usage compared against it cannot overflow.
const maxTokenCap = 1 << 50

// cap reads an optional positive integer cap of at most limit (0 when
// absent).
func (d *decoder) cap(m map[string]any, key, full string, limit int64) int64 {
	v, ok := d.value(m, key, full)
	if !ok {
		return 0
	}
	n, isInt := toInt(v)
	if !isInt || n <= 0 {
		d.fail(full, "must be a positive integer, got %s", describe(v))
		return 0
	}
	if n > limit {
		d.fail(full, "must be at most %d, got %d", limit, n)
		return 0
	}
	return n
}

// usd reads an optional positive, finite amount of US dollars (0 when
// absent).
func (d *decoder) usd(m map[string]any, key, full string) float64 {
	v, ok := d.value(m, key, full)
	if !ok {
		return 0
	}
	f, isNum := toFloat(v)
	if !isNum || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		d.fail(full, "must be a positive amount of US dollars (like 2.5), got %s", describe(v))
		return 0
	}
	return f
}

// timeZone reads an IANA zone name, UTC by default. "Local" is refused: it
// would make the day depend on the host's setting, not the file.
func (d *decoder) timeZone(m map[string]any, full string) string {
	raw := d.str(m, "time_zone", full, bus.DefaultBudgetTimeZone)
	tz := strings.TrimSpace(raw)
	if tz == "" || tz == "Local" || len(tz) > maxTimeZoneLen {
		d.fail(full, "must be an IANA time zone name like UTC or Europe/Berlin, got %s", describe(raw))
		return bus.DefaultBudgetTimeZone
	}
	if _, err := time.LoadLocation(tz); err != nil {
		d.fail(full, "unknown time zone %q (want an IANA name like UTC or Europe/Berlin)", tz)
		return bus.DefaultBudgetTimeZone
	}
	return tz
}

// pricing decodes the price table: model name → USD per million tokens.
// Names are kept as written, trimmed; prices must be finite and not
// negative (a free model is 0). cached_input defaults to input, so a
// missing figure can only overprice.
func (d *decoder) pricing(m map[string]any) map[string]bus.ModelPrice {
	out := map[string]bus.ModelPrice{}
	if len(m) > MaxPricingModels {
		d.fail("pricing", "prices at most %d models, got %d", MaxPricingModels, len(m))
		return out
	}
	for _, raw := range sortedKeys(m) {
		name := strings.TrimSpace(raw)
		segs := []string{"pricing", raw}
		switch {
		case name == "":
			d.failPath(segs, "a model name must not be empty")
			continue
		case len(name) > MaxModelNameLen:
			d.failPath(segs, "a model name is at most %d bytes, got %d", MaxModelNameLen, len(name))
			continue
		}
		if _, dup := out[name]; dup {
			d.failPath(segs, "model %q is priced twice", name)
			continue
		}
		fields, isMap := m[raw].(map[string]any)
		if !isMap {
			d.failPath(segs, "must be a map of input, cached_input and output (USD per million tokens), got %s", describe(m[raw]))
			continue
		}
		p := bus.ModelPrice{
			Input:  d.price(fields, segs, "input", true),
			Output: d.price(fields, segs, "output", true),
		}
		p.CachedInput = p.Input
		if _, given := fields["cached_input"]; given {
			p.CachedInput = d.price(fields, segs, "cached_input", true)
		} else {
			d.defaults = append(d.defaults, joinKey([]string{"pricing", name, "cached_input"}))
		}
		out[name] = p
	}
	return out
}

// price reads one non-negative, finite price.
func (d *decoder) price(m map[string]any, segs []string, key string, required bool) float64 {
	path := append(slices.Clip(segs), key)
	v, ok := m[key]
	if !ok || v == nil {
		if required {
			d.failPath(path, "required (USD per million tokens)")
		}
		return 0
	}
	f, isNum := toFloat(v)
	if !isNum || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		d.failPath(path, "must be a non-negative price in US dollars per million tokens, got %s", describe(v))
		return 0
	}
	return f
}

func (d *decoder) notify(m map[string]any) bus.NotifyConfig {
	n := bus.NotifyConfig{
		Command:   strings.TrimSpace(d.str(m, "command", "notify.command", "")),
		TimeoutMS: d.positive(m, "timeout_ms", "notify.timeout_ms", DefaultNotifyTimeoutMS),
	}
	if n.Command != "" {
		d.warn("notify.command", "read and shown, but NOT run by this build yet: no notification is sent")
	}
	return n
}

// warnUnpriced warns when a USD cap is set but the configured agent's runs
// may not be priced (see UnpricedUSDWarning).
func (d *decoder) warnUnpriced(c bus.Config) {
	if w := UnpricedUSDWarning(c, CodexModel(c.Codex.Command), "codex.command"); w != "" {
		d.warnings = append(d.warnings, w)
	}
}

// UnpricedUSDWarning is the warning for a USD cap the configured agent's
// runs may escape, or "" when there is none. Claude reports its own cost;
// codex does not, so a codex run has a USD figure only when the pricing
// table holds its model. model is the model codex is set to run ("" when
// unknown) and source says where that was read (codex.command, or the
// path of codex's config.toml). Token caps apply whatever the agent; the
// warning says so.
func UnpricedUSDWarning(c bus.Config, model, source string) string {
	if !c.Budget.USDCapped() || c.Agent.Kind != bus.AgentCodex {
		return ""
	}
	switch {
	case len(c.Pricing) == 0:
		return "budget: USD caps do not apply to codex runs: codex reports no cost and the pricing table is empty (token caps still apply)"
	case model == "":
		return "budget: USD caps apply to a codex run only if the model it reports at thread/start has a pricing entry; codex.command does not set one (--config model=…), so it comes from codex's own config (token caps always apply)"
	case !hasPrice(c.Pricing, model):
		return fmt.Sprintf("budget: USD caps do not apply to codex runs: %s sets model %q and the pricing table has no entry for it (token caps still apply)", source, model)
	}
	return ""
}

func hasPrice(p map[string]bus.ModelPrice, model string) bool {
	_, ok := p[model]
	return ok
}

// CodexModel returns the model a codex command line sets with codex's
// config override (-c model=… or --config model=…, the last one winning),
// or "" when it sets none: the model then comes from codex's own
// config.toml, and Symphony learns it only from thread/start's answer.
// The command is split like a shell would, without expansion; a line too
// complex for that yields "".
func CodexModel(command string) string {
	words, ok := shellWords(command)
	if !ok {
		return ""
	}
	model := ""
	for i, w := range words {
		var kv string
		switch {
		case (w == "-c" || w == "--config") && i+1 < len(words):
			kv = words[i+1]
		case strings.HasPrefix(w, "--config="):
			kv = strings.TrimPrefix(w, "--config=")
		case strings.HasPrefix(w, "-c") && len(w) > 2 && w[2] != '-':
			kv = w[2:]
		default:
			continue
		}
		k, v, found := strings.Cut(kv, "=")
		if !found || strings.TrimSpace(k) != "model" {
			continue
		}
		// codex parses the value as TOML, falling back to a bare string.
		// Not UTF-8 is no model name (and unquoting would replace the bad
		// bytes, inventing text).
		v = strings.TrimSpace(v)
		if !utf8.ValidString(v) {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = u
		} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		model = strings.TrimSpace(v)
	}
	return model
}

// shellWords splits a command line into words the way bash would for
// plain words, single and double quotes and backslash escapes; anything
// it cannot split for certain (an unterminated quote) reports !ok.
func shellWords(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] == '\n' { // a line continuation
				continue
			}
			cur.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) && strings.IndexByte(`"\$`+"`", s[j+1]) >= 0 {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, false
			}
			i = j
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

// toFloat accepts a YAML number or a string holding one.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case uint64:
		return float64(n), true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil
	}
	return 0, false
}

// CodexHome returns the CODEX_HOME a codex command line sets for codex
// itself (CODEX_HOME=/x codex app-server, or through env), or "" when it
// sets none: codex then reads $CODEX_HOME, else ~/.codex.
func CodexHome(command string) string {
	words, ok := shellWords(command)
	if !ok {
		return ""
	}
	for _, w := range words {
		name, value, isAssign := strings.Cut(w, "=")
		switch {
		case w == "env":
			continue
		case !isAssign || !envName.MatchString(name):
			return ""
		case name == "CODEX_HOME":
			return value
		}
	}
	return ""
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
