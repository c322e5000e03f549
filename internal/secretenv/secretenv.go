// Package secretenv decides which of the parent's environment variables
// hold the tracker's credential, so that no process Symphony starts for
// an issue (the agent, a workspace hook, notify.command) inherits it. The
// rule lives here once, for all three:
//
//   - LINEAR_API_KEY, always;
//   - for the github tracker, GITHUB_TOKEN, GH_TOKEN, GH_ENTERPRISE_TOKEN
//     and GITHUB_ENTERPRISE_TOKEN, always (gh, git credential helpers and
//     most GitHub tooling read them, and any of them may hold the token);
//   - the variable tracker.provider.api_key names ($NAME);
//   - every variable whose value is the resolved key itself, however the
//     key was given ($NAME or a literal in WORKFLOW.md), so the same
//     token exported under another name does not slip through.
//
// A literal key never crosses the bus (bus.Secret marshals its source
// only), so it is re-read from the workflow file while the file still
// has the checksum of the config in force, as the tracker does.
package secretenv

import (
	"strings"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// Names lists the variable names always removed for a tracker kind (the
// configured $NAME excluded).
func Names(kind string) []string {
	names := []string{"LINEAR_API_KEY"}
	if kind == bus.TrackerGitHub {
		names = append(names, "GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN")
	}
	return names
}

// Drop returns the predicate that tells whether a parent variable
// (name, value) must be removed for snap's tracker. parent is the
// environment the child would inherit; $NAME keys are resolved from it.
func Drop(snap bus.ConfigSnapshot, parent []string) func(name, value string) bool {
	names := map[string]bool{}
	for _, n := range Names(snap.Config.Tracker.Kind) {
		names[n] = true
	}
	key := snap.Config.Tracker.Provider.APIKey
	if v := key.Env(); v != "" {
		names[v] = true
	}
	secret := Value(snap, parent)
	return func(name, value string) bool {
		return names[name] || (secret != "" && value == secret)
	}
}

// Filter returns parent minus the variables Drop removes.
func Filter(snap bus.ConfigSnapshot, parent []string) []string {
	drop := Drop(snap, parent)
	out := make([]string, 0, len(parent))
	for _, kv := range parent {
		name, value, _ := strings.Cut(kv, "=")
		if !drop(name, value) {
			out = append(out, kv)
		}
	}
	return out
}

// Value resolves the tracker's key as the tracker does: the value when
// the snapshot still holds it, the $NAME variable of parent, or a
// literal re-read from snap.Path while its checksum is unchanged. It is
// "" when none of these gives one (nothing to match by value then).
func Value(snap bus.ConfigSnapshot, parent []string) string {
	key := snap.Config.Tracker.Provider.APIKey
	lookup := func(k string) (string, bool) {
		for i := len(parent) - 1; i >= 0; i-- {
			if name, v, ok := strings.Cut(parent[i], "="); ok && name == k {
				return v, true
			}
		}
		return "", false
	}
	if v := key.Resolve(func(k string) string { v, _ := lookup(k); return v }); v != "" {
		return v
	}
	if key.Env() != "" || !key.IsSet() || snap.Path == "" {
		return ""
	}
	env := workflowfile.OSEnv()
	env.LookupEnv = lookup
	res, err := workflowfile.Load(snap.Path, env)
	if err != nil || res.Checksum != snap.Checksum {
		return ""
	}
	return res.Config.Tracker.Provider.APIKey.Value()
}
