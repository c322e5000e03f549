package workflowfile

import (
	"slices"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// leaf marks a key whose value the loader reads whole (a string, a list,
// or a map passed on as written, such as codex.turn_sandbox_policy): what
// is inside is not checked key by key here.
type leaf struct{}

// knownKeys is every key the loader reads, as a tree: a nested map is a
// section whose keys are checked in turn; "*" stands for any name (a
// pricing model). Keep it in step with decode.go, codex.go and budget.go;
// TestKnownKeysCoverEffective holds the two together. A function, not a
// variable: no package-level state that could be changed.
func knownKeys() map[string]any {
	return map[string]any{
		"tracker": map[string]any{
			"kind": leaf{}, "required_labels": leaf{}, "active_states": leaf{}, "terminal_states": leaf{},
			// The Linear keys the reference specification puts under tracker.
			"project_slug": leaf{}, "api_key": leaf{}, "endpoint": leaf{}, "assignee": leaf{},
			// The GitHub keys, read there too (the reference's spelling).
			"repo": leaf{}, "token": leaf{}, "api_url": leaf{}, "state_labels": leaf{}, "project": leaf{},
			"status_field": leaf{}, "priority_field": leaf{},
			"provider": leaf{}, // checked by providerKeys: its unknown keys are kept
			"tools":    map[string]any{"linear_graphql": leaf{}, "github_api": leaf{}},
		},
		"polling":   map[string]any{"interval_ms": leaf{}},
		"workspace": map[string]any{"root": leaf{}},
		"hooks": map[string]any{"after_create": leaf{}, "before_run": leaf{}, "after_run": leaf{}, "before_remove": leaf{},
			"timeout_ms": leaf{}, "inherit_secrets": leaf{}},
		"agent": map[string]any{"kind": leaf{}, "max_concurrent_agents": leaf{}, "max_turns": leaf{}, "max_retry_backoff_ms": leaf{},
			"max_runs_per_issue": leaf{}, "max_concurrent_agents_by_state": leaf{}},
		"claude": map[string]any{"command": leaf{}, "model": leaf{}, "permission_mode": leaf{}, "allowed_tools": leaf{}, "extra_args": leaf{},
			"strict_mcp_config": leaf{}, "turn_timeout_ms": leaf{}, "stall_timeout_ms": leaf{}},
		"codex": map[string]any{"command": leaf{}, "approval_policy": leaf{}, "thread_sandbox": leaf{}, "turn_sandbox_policy": leaf{},
			"turn_timeout_ms": leaf{}, "read_timeout_ms": leaf{}, "stall_timeout_ms": leaf{}},
		"server": map[string]any{"port": leaf{}, "bind": leaf{}, "host": leaf{}},
		"budget": map[string]any{
			"per_run":   map[string]any{"usd": leaf{}, "tokens": leaf{}},
			"per_issue": map[string]any{"usd": leaf{}, "tokens": leaf{}, "runs": leaf{}, "turns": leaf{}},
			"per_day":   map[string]any{"usd": leaf{}, "tokens": leaf{}, "time_zone": leaf{}},
		},
		"pricing":   map[string]any{"*": map[string]any{"input": leaf{}, "cached_input": leaf{}, "output": leaf{}}},
		"notify":    map[string]any{"command": leaf{}, "timeout_ms": leaf{}},
		"retention": leaf{},
	}
}

// referenceOnly says why a key the reference implementation reads does
// nothing here, so validate names the reason instead of a bare "unknown".
func referenceOnly(key string) (why string, ok bool) {
	why, ok = map[string]string{
		"worker":        "the reference's SSH worker hosts; Symphony runs every agent on this host",
		"observability": "the reference's terminal dashboard; Symphony's dashboard is the web page (server.port)",
	}[key]
	return why, ok
}

// warnUnknown warns about every key of the front matter that the loader
// does not read, so nothing in the file is silently ignored (the file
// still loads: the reference specification asks that unknown keys be
// ignored, for forward compatibility). Keys are visited in sorted order so
// the warnings are stable.
func (d *decoder) warnUnknown(root map[string]any) {
	d.walkUnknown(nil, root, knownKeys())
}

func (d *decoder) walkUnknown(prefix []string, m map[string]any, known map[string]any) {
	for _, k := range sortedKeys(m) {
		path := append(slices.Clone(prefix), k)
		spec, ok := known[k]
		if !ok {
			spec, ok = known["*"]
		}
		if !ok {
			if why, ref := referenceOnly(joinKey(path)); ref {
				d.warn(joinKey(path), "not applicable (%s); ignored", why)
				continue
			}
			d.warn(joinKey(path), "not a key Symphony reads; ignored")
			continue
		}
		sub, isSection := spec.(map[string]any)
		child, isMap := m[k].(map[string]any)
		if isSection && isMap {
			d.walkUnknown(path, child, sub)
		}
	}
}

// providerKeys reads tracker.provider for the keys that kind's adapter
// does not use. The ones another adapter of this build reads are reported
// as not applicable; the rest are kept verbatim in Provider.Extra for the
// adapter (the reference specification, §5.3.1: core Symphony preserves
// unknown provider keys) and reported as unused by this build's adapter.
func (d *decoder) providerKeys(prov map[string]any, kind string) map[string]any {
	uses := map[string][]string{
		bus.TrackerLinear: {"project_slug", "api_key", "endpoint", "assignee"},
		bus.TrackerFiles:  {"path", "assignee"},
		bus.TrackerGitHub: {"repo", "api_key", "token", "endpoint", "api_url", "assignee", "state_labels", "project", "status_field", "priority_field"},
	}
	var extra map[string]any
	for _, k := range sortedKeys(prov) {
		if slices.Contains(uses[kind], k) || kind == "" {
			continue
		}
		key := joinKey([]string{"tracker", "provider", k})
		if slices.ContainsFunc([]string{bus.TrackerLinear, bus.TrackerFiles, bus.TrackerGitHub}, func(other string) bool { return slices.Contains(uses[other], k) }) {
			d.warn(key, "not applicable to the %s tracker; ignored", kind)
			continue
		}
		if extra == nil {
			extra = map[string]any{}
		}
		extra[k] = prov[k]
		d.warn(key, "kept for the tracker adapter; the %s tracker of this build does not read it", kind)
	}
	return extra
}

// trackerLevelKeys names the adapter keys written directly under tracker
// (the reference's spelling) that kind's adapter does not read: knownKeys
// accepts every adapter's there, so without this a GitHub key under a
// Linear tracker would be silently ignored.
func (d *decoder) trackerLevelKeys(m map[string]any, kind string) {
	reads := map[string][]string{
		bus.TrackerLinear: {"project_slug", "api_key", "endpoint", "assignee"},
		bus.TrackerFiles:  {"assignee"},
		bus.TrackerGitHub: {"repo", "api_key", "token", "endpoint", "api_url", "assignee", "state_labels", "project", "status_field", "priority_field"},
	}
	if _, known := reads[kind]; !known {
		return
	}
	all := slices.Concat(reads[bus.TrackerLinear], reads[bus.TrackerGitHub])
	for _, k := range sortedKeys(m) {
		if slices.Contains(all, k) && !slices.Contains(reads[kind], k) {
			d.warn(joinKey([]string{"tracker", k}), "not applicable to the %s tracker; ignored", kind)
		}
	}
}

// secretLooking says whether an adapter-owned key's name suggests a
// credential, whose value the effective configuration then masks.
func secretLooking(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"key", "token", "secret", "password", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
