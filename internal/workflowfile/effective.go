package workflowfile

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Setting is one line of the effective configuration.
type Setting struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Default bool   `json:"default"`
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
		if prefix == "tracker.provider.api_key" {
			out = append(out, Setting{Key: prefix, Value: r.Config.Tracker.Provider.APIKey.String()})
			return
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
	for i := range out {
		out[i].Default = slices.Contains(r.Defaults, out[i].Key)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
