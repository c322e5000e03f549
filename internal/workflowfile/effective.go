package workflowfile

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// TurnSandboxPolicyUnset is how the effective configuration shows an
// absent codex.turn_sandbox_policy: the backend builds the policy per run.
const TurnSandboxPolicyUnset = "null (a workspaceWrite policy rooted at each run's workspace)"

// StateLabelsUnset is how the effective configuration shows a github
// tracker without tracker.provider.state_labels.
const StateLabelsUnset = "none (an issue's state is open or closed)"

// NoCap is how the effective configuration shows an absent budget cap.
const NoCap = "none"

// NotifyUnset is how the effective configuration shows an absent
// notify.command.
const NotifyUnset = "none (no notifications)"

// Setting is one line of the effective configuration.
type Setting struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Default bool   `json:"default"`
	// Inferred marks a value the loader inferred from the rest of the file.
	Inferred bool `json:"inferred,omitempty"`
}

// Effective flattens the configuration into sorted key = value settings,
// secrets masked, each marked when it took its default.
func Effective(r *Result) []Setting {
	raw, err := json.Marshal(r.Config)
	if err != nil {
		return nil
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil
	}
	var out []Setting
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch prefix {
		case "tracker.provider.api_key":
			out = append(out, Setting{Key: prefix, Value: r.Config.Tracker.Provider.APIKey.String()})
			return
		case "codex.approval_policy":
			// Codex's own values, shown whole as the JSON sent to it.
			out = append(out, Setting{Key: prefix, Value: string(r.Config.Codex.ApprovalPolicy)})
			return
		case "codex.turn_sandbox_policy":
			out = append(out, Setting{Key: prefix, Value: string(r.Config.Codex.TurnSandboxPolicy)})
			return
		case "budget":
			out = append(out, budgetSettings(r.Config.Budget)...)
			return
		case "pricing":
			out = append(out, pricingSettings(r.Config.Pricing)...)
			return
		case "tracker.provider.extra":
			// Adapter-owned keys, shown as written under their own names;
			// one whose name suggests a credential is masked.
			for k, val := range r.Config.Tracker.Provider.Extra {
				b, _ := json.Marshal(val)
				if secretLooking(k) {
					b = []byte("******")
				}
				out = append(out, Setting{Key: joinKey([]string{"tracker", "provider", k}), Value: string(b)})
			}
			return
		case "notify.command":
			if r.Config.Notify.Command == "" {
				out = append(out, Setting{Key: prefix, Value: NotifyUnset})
				return
			}
		}
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out = append(out, Setting{Key: prefix, Value: "{}"})
				return
			}
			for k, child := range x {
				walk(prefix+"."+k, child)
			}
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				parts[i] = fmt.Sprint(e)
			}
			out = append(out, Setting{Key: prefix, Value: "[" + strings.Join(parts, ", ") + "]"})
		case string:
			// Multi-line values (hook scripts) are shown quoted on one line.
			if x = strings.TrimRight(x, "\n"); strings.Contains(x, "\n") {
				x = strconv.Quote(x)
			}
			out = append(out, Setting{Key: prefix, Value: x})
		default:
			b, _ := json.Marshal(x)
			out = append(out, Setting{Key: prefix, Value: string(b)})
		}
	}
	for k, v := range tree {
		walk(k, v)
	}
	if t := r.Config.Tracker; t.Kind == bus.TrackerGitHub && !githubNamedStates(t.Provider) {
		out = append(out, Setting{Key: "tracker.provider.state_labels", Value: StateLabelsUnset})
	}
	if r.Config.Codex.TurnSandboxPolicy == nil {
		out = append(out, Setting{Key: "codex.turn_sandbox_policy", Value: TurnSandboxPolicyUnset})
	}
	for i := range out {
		out[i].Default = slices.Contains(r.Defaults, out[i].Key)
		out[i].Inferred = slices.Contains(r.Inferred, out[i].Key)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// budgetSettings lists every budget key, an absent cap as NoCap, so an
// operator sees which ceilings hold and which do not.
func budgetSettings(b bus.BudgetConfig) []Setting {
	usd := func(v float64) string {
		if v <= 0 {
			return NoCap
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	count := func(v int64) string {
		if v <= 0 {
			return NoCap
		}
		return strconv.FormatInt(v, 10)
	}
	return []Setting{
		{Key: "budget.per_run.usd", Value: usd(b.PerRun.USD)},
		{Key: "budget.per_run.tokens", Value: count(b.PerRun.Tokens)},
		{Key: "budget.per_issue.usd", Value: usd(b.PerIssue.USD)},
		{Key: "budget.per_issue.tokens", Value: count(b.PerIssue.Tokens)},
		{Key: "budget.per_issue.runs", Value: count(int64(b.PerIssue.Runs))},
		{Key: "budget.per_issue.turns", Value: count(int64(b.PerIssue.Turns))},
		{Key: "budget.per_day.usd", Value: usd(b.PerDay.USD)},
		{Key: "budget.per_day.tokens", Value: count(b.PerDay.Tokens)},
		{Key: "budget.per_day.time_zone", Value: b.PerDay.TimeZone},
	}
}

// pricingSettings lists each model's three prices under the key its
// errors use (pricing."gpt-5.5".input); an empty table is one line.
func pricingSettings(p map[string]bus.ModelPrice) []Setting {
	if len(p) == 0 {
		return []Setting{{Key: "pricing", Value: "{}"}}
	}
	price := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	var out []Setting
	for model, mp := range p {
		out = append(out,
			Setting{Key: joinKey([]string{"pricing", model, "input"}), Value: price(mp.Input)},
			Setting{Key: joinKey([]string{"pricing", model, "cached_input"}), Value: price(mp.CachedInput)},
			Setting{Key: joinKey([]string{"pricing", model, "output"}), Value: price(mp.Output)})
	}
	return out
}
