package workflowfile

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestBudgetValidationErrors: every bad spend-control value is refused,
// naming the key (a model name with a dot quoted) and its line.
func TestBudgetValidationErrors(t *testing.T) {
	base := "---\ntracker:\n  kind: files\n  provider: {path: /i}\n"
	cases := []struct {
		extra, want string
		line        int
	}{
		{"budget:\n  per_run:\n    usd: 0\n", "budget.per_run.usd: must be a positive amount of US dollars (like 2.5), got 0", 7},
		{"budget:\n  per_run:\n    usd: -1.5\n", "budget.per_run.usd: must be a positive amount of US dollars (like 2.5), got -1.5", 7},
		{"budget:\n  per_issue:\n    usd: .nan\n", "budget.per_issue.usd: must be a positive amount", 7},
		{"budget:\n  per_day:\n    usd: .inf\n", "budget.per_day.usd: must be a positive amount", 7},
		{"budget:\n  per_day:\n    usd: NaN\n", `budget.per_day.usd: must be a positive amount of US dollars (like 2.5), got "NaN"`, 7},
		{"budget:\n  per_run:\n    usd: lots\n", `budget.per_run.usd: must be a positive amount of US dollars (like 2.5), got "lots"`, 7},
		{"budget:\n  per_run:\n    usd: [1]\n", "budget.per_run.usd: must be a positive amount of US dollars (like 2.5), got a list", 7},
		{"budget:\n  per_run:\n    tokens: 0\n", "budget.per_run.tokens: must be a positive integer, got 0", 7},
		{"budget:\n  per_run:\n    tokens: 1.5\n", "budget.per_run.tokens: must be a positive integer, got 1.5", 7},
		{"budget:\n  per_issue:\n    tokens: -7\n", "budget.per_issue.tokens: must be a positive integer, got -7", 7},
		{"budget:\n  per_day:\n    tokens: 1e300\n", "budget.per_day.tokens: must be a positive integer", 7},
		{"budget:\n  per_day:\n    tokens: 9007199254740992\n", "budget.per_day.tokens: must be at most 1125899906842624, got 9007199254740992", 7},
		{"budget:\n  per_issue:\n    runs: 0\n", "budget.per_issue.runs: must be a positive integer, got 0", 7},
		{"budget:\n  per_issue:\n    runs: 4294967296\n", "budget.per_issue.runs: must be at most 2147483647", 7},
		{"budget:\n  per_issue:\n    turns: many\n", `budget.per_issue.turns: must be a positive integer, got "many"`, 7},
		{"budget:\n  per_day:\n    time_zone: Mars/Olympus\n", `budget.per_day.time_zone: unknown time zone "Mars/Olympus" (want an IANA name like UTC or Europe/Berlin)`, 7},
		{"budget:\n  per_day:\n    time_zone: Local\n", `budget.per_day.time_zone: must be an IANA time zone name like UTC or Europe/Berlin, got "Local"`, 7},
		{"budget:\n  per_day:\n    time_zone: ../../etc/passwd\n", `budget.per_day.time_zone: unknown time zone "../../etc/passwd"`, 7},
		{"budget:\n  per_day:\n    time_zone: ''\n", "budget.per_day.time_zone: must be an IANA time zone name", 7},
		{"budget:\n  per_day:\n    time_zone: [UTC]\n", "budget.per_day.time_zone: must be a string, got a list", 7},
		{"budget: 5\n", "budget: must be a map, got 5", 5},
		{"budget:\n  per_run: 5\n", "budget.per_run: must be a map, got 5", 6},
		{"agent:\n  max_runs_per_issue: 0\n", "agent.max_runs_per_issue: must be a positive integer, got 0", 6},
		{"agent:\n  max_runs_per_issue: two\n", `agent.max_runs_per_issue: must be an integer, got "two"`, 6},
		{"pricing: [gpt]\n", "pricing: must be a map, got a list", 5},
		{"pricing:\n  o3: 2\n", "pricing.o3: must be a map of input, cached_input and output (USD per million tokens), got 2", 6},
		{"pricing:\n  gpt-5.5:\n    input: 1\n    output: -10\n", `pricing."gpt-5.5".output: must be a non-negative price in US dollars per million tokens, got -10`, 8},
		{"pricing:\n  gpt-5.5:\n    input: 1\n    output: .inf\n", `pricing."gpt-5.5".output: must be a non-negative price`, 8},
		{"pricing:\n  gpt-5.5:\n    input: free\n    output: 1\n", `pricing."gpt-5.5".input: must be a non-negative price in US dollars per million tokens, got "free"`, 7},
		{"pricing:\n  gpt-5.5:\n    input: 1\n    cached_input: .nan\n    output: 1\n", `pricing."gpt-5.5".cached_input: must be a non-negative price`, 8},
		{"pricing:\n  gpt-5.5:\n    input: 1\n", `pricing."gpt-5.5".output: required (USD per million tokens)`, 7},
		{"pricing:\n  o3:\n    output: 1\n", `pricing.o3.input: required (USD per million tokens)`, 7},
		{"pricing:\n  \"it's.x\":\n    input: 1\n    output: x\n", `pricing."it's.x".output: must be a non-negative price`, 6},
		{"pricing:\n  \" \": {input: 1, output: 1}\n", `pricing." ": a model name must not be empty`, 6},
		{"pricing:\n  o3: {input: 1, output: 1}\n  \" o3\": {input: 1, output: 1}\n", `pricing.o3: model "o3" is priced twice`, 6},
		{"pricing:\n  " + strings.Repeat("m", MaxModelNameLen+1) + ": {input: 1, output: 1}\n", "a model name is at most 128 bytes, got 129", 6},
		{"notify: {command: x, timeout_ms: 0}\n", "notify.timeout_ms: must be a positive integer, got 0", 5},
		{"notify:\n  command: [a]\n", "notify.command: must be a string, got a list", 6},
		{"notify: true\n", "notify: must be a map, got true", 5},
	}
	for _, c := range cases {
		_, err := parse(t, base+c.extra+"---\n", nil)
		var we *Error
		if !errors.As(err, &we) || we.Class != ClassConfig || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.extra, err, c.want)
			continue
		}
		if we.Line != c.line {
			t.Errorf("%q: line %d, want %d", c.extra, we.Line, c.line)
		}
	}
}

// TestPricingBound: a table of more than MaxPricingModels models is
// refused as a whole.
func TestPricingBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("---\ntracker: {kind: files, provider: {path: /i}}\npricing:\n")
	for i := range MaxPricingModels + 1 {
		b.WriteString("  model_" + strconv.Itoa(i) + ": {input: 1, output: 1}\n")
	}
	_, err := parse(t, b.String()+"---\n", nil)
	if err == nil || !strings.Contains(err.Error(), "pricing: prices at most 256 models, got 257") {
		t.Errorf("err = %v", err)
	}
}

// TestBudgetTimeZone: a zone name loads, and its location is the one the
// daily caps roll over in.
func TestBudgetTimeZone(t *testing.T) {
	r := mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\nbudget: {per_day: {usd: 5, time_zone: ' Europe/Berlin '}}\n---\n", nil)
	if r.Config.Budget.PerDay.TimeZone != "Europe/Berlin" || slices.Contains(r.Defaults, "budget.per_day.time_zone") {
		t.Fatalf("time zone %q, defaults %v", r.Config.Budget.PerDay.TimeZone, r.Defaults)
	}
	loc, err := r.Config.Budget.PerDay.Location()
	if err != nil {
		t.Fatal(err)
	}
	// 23:30 UTC on a winter day is already the next day in Berlin.
	if got := time.Date(2026, 1, 15, 23, 30, 0, 0, time.UTC).In(loc).Day(); got != 16 {
		t.Errorf("Berlin day = %d, want 16", got)
	}
	if loc, err := (bus.DayBudget{}).Location(); err != nil || loc != time.UTC {
		t.Errorf("empty zone: %v %v", loc, err)
	}
	if _, err := (bus.DayBudget{TimeZone: "Nowhere/Atall"}).Location(); err == nil || !strings.Contains(err.Error(), "budget.per_day.time_zone") {
		t.Errorf("bad zone: %v", err)
	}
}

// TestPricingValues: names are trimmed, cached_input defaults to input
// (marked as a default), and a free model (0) is allowed.
func TestPricingValues(t *testing.T) {
	r := mustParse(t, "---\ntracker: {kind: files, provider: {path: /i}}\npricing:\n  ' gpt-5.5 ': {input: 1.25, output: 10}\n  local: {input: 0, cached_input: 0, output: 0}\n---\n", nil)
	want := map[string]bus.ModelPrice{"gpt-5.5": {Input: 1.25, CachedInput: 1.25, Output: 10}, "local": {}}
	if len(r.Config.Pricing) != 2 || r.Config.Pricing["gpt-5.5"] != want["gpt-5.5"] || r.Config.Pricing["local"] != want["local"] {
		t.Errorf("pricing = %v, want %v", r.Config.Pricing, want)
	}
	if !slices.Contains(r.Defaults, `pricing."gpt-5.5".cached_input`) || slices.Contains(r.Defaults, "pricing.local.cached_input") || slices.Contains(r.Defaults, "pricing") {
		t.Errorf("defaults %v", r.Defaults)
	}
	got := map[string]Setting{}
	for _, s := range Effective(r) {
		if strings.HasPrefix(s.Key, "pricing") {
			got[s.Key] = s
		}
	}
	for key, value := range map[string]string{`pricing."gpt-5.5".input`: "1.25", `pricing."gpt-5.5".cached_input`: "1.25", `pricing."gpt-5.5".output`: "10", "pricing.local.input": "0"} {
		if s, ok := got[key]; !ok || s.Value != value || s.Default != (key == `pricing."gpt-5.5".cached_input`) {
			t.Errorf("%s: %+v, want %s", key, s, value)
		}
	}
}

// TestEffectiveShowsSpendKeys: every new key is in the effective
// configuration, an absent cap as "none" marked as a default.
func TestEffectiveShowsSpendKeys(t *testing.T) {
	got := map[string]Setting{}
	for _, s := range Effective(mustParse(t, minimalFiles, nil)) {
		got[s.Key] = s
	}
	want := map[string]string{
		"agent.max_runs_per_issue": "10", "budget.per_run.usd": NoCap, "budget.per_run.tokens": NoCap,
		"budget.per_issue.usd": NoCap, "budget.per_issue.tokens": NoCap, "budget.per_issue.runs": NoCap,
		"budget.per_issue.turns": NoCap, "budget.per_day.usd": NoCap, "budget.per_day.tokens": NoCap,
		"budget.per_day.time_zone": "UTC", "pricing": "{}", "notify.command": NotifyUnset, "notify.timeout_ms": "60000",
	}
	for key, value := range want {
		if s, ok := got[key]; !ok || s.Value != value || !s.Default {
			t.Errorf("%s: %+v, want %q (default)", key, s, value)
		}
	}

	src := "---\ntracker: {kind: files, provider: {path: /i}}\nbudget:\n  per_run: {usd: 0.75}\n  per_issue: {runs: 3}\n  per_day: {tokens: 2000000}\nnotify: {command: \"curl -d @- http://127.0.0.1:1/x\"}\n---\n"
	got = map[string]Setting{}
	for _, s := range Effective(mustParse(t, src, nil)) {
		got[s.Key] = s
	}
	for key, value := range map[string][2]string{
		"budget.per_run.usd":    {"0.75", ""},
		"budget.per_run.tokens": {NoCap, "default"},
		"budget.per_issue.runs": {"3", ""},
		"budget.per_day.tokens": {"2000000", ""},
		"notify.command":        {"curl -d @- http://127.0.0.1:1/x", ""},
	} {
		if s := got[key]; s.Value != value[0] || s.Default != (value[1] == "default") {
			t.Errorf("%s: %+v, want %q %s", key, s, value[0], value[1])
		}
	}
}

// TestUnpricedUSDCapWarns: a USD cap with codex and no price for its
// model is a warning (token caps still apply); claude, which reports its
// cost, and codex with a price for the model it is told to run, are not.
func TestUnpricedUSDCapWarns(t *testing.T) {
	const base = "---\ntracker: {kind: files, provider: {path: /i}}\n"
	cases := []struct {
		name, extra, want string
	}{
		{"claude", "budget: {per_run: {usd: 1}}\n", ""},
		{"codex token cap only", "agent: {kind: codex}\nbudget: {per_run: {tokens: 1000}}\n", ""},
		{"codex no pricing", "agent: {kind: codex}\nbudget: {per_day: {usd: 50}}\n", "USD caps do not apply to codex runs: codex reports no cost and the pricing table is empty (token caps still apply)"},
		{"codex model unknown", "agent: {kind: codex}\nbudget: {per_issue: {usd: 5}}\npricing: {gpt-5.5: {input: 1, output: 1}}\n", "USD caps apply to a codex run only if the model it reports at thread/start has a pricing entry"},
		{"codex model unpriced", "codex: {command: \"codex app-server -c model=o3\"}\nbudget: {per_run: {usd: 1}}\npricing: {gpt-5.5: {input: 1, output: 1}}\n", `codex.command sets model "o3" and the pricing table has no entry for it`},
		{"codex model priced", "codex: {command: \"codex app-server --config model='gpt-5.5'\"}\nbudget: {per_run: {usd: 1}}\npricing: {gpt-5.5: {input: 1, output: 1}}\n", ""},
	}
	for _, c := range cases {
		r := mustParse(t, base+c.extra+"---\n", nil)
		var budget []string
		for _, w := range r.Warnings {
			if strings.HasPrefix(w, "budget: ") {
				budget = append(budget, w)
			}
		}
		switch {
		case c.want == "" && len(budget) > 0:
			t.Errorf("%s: unexpected warnings %q", c.name, budget)
		case c.want != "" && (len(budget) != 1 || !strings.Contains(budget[0], c.want)):
			t.Errorf("%s: warnings %q, want %q", c.name, budget, c.want)
		}
	}
}

func TestCodexModel(t *testing.T) {
	for cmd, want := range map[string]string{
		"codex app-server":                                       "",
		"codex app-server -c model=o3":                           "o3",
		`codex app-server -c model="gpt-5.5"`:                    "gpt-5.5",
		`codex app-server --config 'model="gpt-5.5"'`:            "gpt-5.5",
		`codex app-server --config=model=gpt-5-codex`:            "gpt-5-codex",
		`codex app-server -cmodel=o4-mini`:                       "o4-mini",
		`codex -c model=a app-server -c model=b`:                 "b",
		`codex app-server -c model_provider=mock`:                "",
		`codex app-server -c 'model = "x y"'`:                    "x y",
		`env A=1 codex app-server -c "model=\"q\""`:              "q",
		`codex app-server -c 'model="unterminated`:               "",
		`codex app-server -c`:                                    "",
		`codex app-server -c model_reasoning_effort=high`:        "",
		"codex app-server \\\n  -c model=gpt-5.5 --listen stdio": "gpt-5.5",
	} {
		if got := CodexModel(cmd); got != want {
			t.Errorf("CodexModel(%q) = %q, want %q", cmd, got, want)
		}
	}
}

func TestCodexHome(t *testing.T) {
	for cmd, want := range map[string]string{
		"codex app-server":                              "",
		"CODEX_HOME=/srv/codex codex app-server":        "/srv/codex",
		"env A=1 CODEX_HOME='/a b' codex app-server":    "/a b",
		"codex app-server CODEX_HOME=/x":                "",
		"RUST_LOG=info CODEX_HOME=~/c codex app-server": "~/c",
		"CODEX_HOME='/unterminated codex":               "",
	} {
		if got := CodexHome(cmd); got != want {
			t.Errorf("CodexHome(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// FuzzCodexModel: any command line splits without panic, and the model
// and home it yields are never longer than the line (nothing invented).
func FuzzCodexModel(f *testing.F) {
	for _, s := range []string{"codex app-server -c model=o3", `CODEX_HOME="/a b" codex --config 'model="x"'`, `-c "model=\"`, "\\", "'", `"\\"`, "-cmodel= ' '"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		model, home := CodexModel(cmd), CodexHome(cmd)
		if len(model) > len(cmd) || len(home) > len(cmd) {
			t.Fatalf("CodexModel %q, CodexHome %q longer than %q", model, home, cmd)
		}
	})
}
