package workflowfile

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestUnknownKeysAreReported: every key the loader does not read is
// named by a warning (the file still loads), keys of another tracker's
// provider are not applicable, and the provider's unknown keys are kept
// for the adapter with credential-looking values masked in the effective
// configuration.
func TestUnknownKeysAreReported(t *testing.T) {
	src := `---
tracker:
  kind: files
  provider:
    path: /i
    project_slug: abc
    board_id: 42
    api_token: s3cret-value
  tools: {linear_graphql: any}
worker: {ssh_hosts: [a]}
observability: {refresh_ms: 5}
agent: {max_turns: 3, max_turn: 4}
server: {host: 127.0.0.1}
pricing: {m: {input: 1, output: 2, extra: 3}}
---
`
	r := mustParse(t, src, nil)
	want := []string{
		"agent.max_turn: not a key Symphony reads; ignored",
		"observability: not applicable (the reference's terminal dashboard",
		"pricing.m.extra: not a key Symphony reads; ignored",
		"worker: not applicable (the reference's SSH worker hosts",
		"tracker.provider.api_token: kept for the tracker adapter; the files tracker of this build does not read it",
		"tracker.provider.board_id: kept for the tracker adapter",
		"tracker.provider.project_slug: not applicable to the files tracker; ignored",
		"tracker.tools.linear_graphql: not applicable to the files tracker",
	}
	for _, w := range want {
		if !slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "server.host") || strings.HasPrefix(w, "agent.max_turns") || strings.HasPrefix(w, "tracker.provider.path") {
			t.Errorf("a key that is read was reported: %q", w)
		}
	}
	extra := r.Config.Tracker.Provider.Extra
	if extra["board_id"] != uint64(42) || extra["api_token"] != "s3cret-value" || len(extra) != 2 {
		t.Errorf("provider extras %#v, want board_id and api_token kept verbatim", extra)
	}
	if r.Config.Server.Bind != "127.0.0.1" {
		t.Errorf("server.host not honoured: bind %q", r.Config.Server.Bind)
	}
	eff := Effective(r)
	raw, _ := json.Marshal(eff)
	if strings.Contains(string(raw), "s3cret-value") {
		t.Errorf("the effective configuration shows a credential-looking provider key: %s", raw)
	}
	i := slices.IndexFunc(eff, func(s Setting) bool { return s.Key == "tracker.provider.board_id" })
	if i < 0 || eff[i].Value != "42" {
		t.Errorf("tracker.provider.board_id not shown as written: %+v", eff)
	}
}

// TestReferenceWorkflowHasNoUnknownKeys: the reference-shaped workflow
// sets only keys the loader reads (its one warning, the inferred kind, is
// checked by TestReferenceWorkflow).
func TestReferenceWorkflowHasNoUnknownKeys(t *testing.T) {
	r, err := Load("../../testdata/workflows/reference-shape.WORKFLOW.md", testEnv(map[string]string{"LINEAR_API_KEY": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range r.Warnings {
		if strings.Contains(w, "ignored") || strings.Contains(w, "not applicable") || strings.Contains(w, "kept for") {
			t.Errorf("warning %q", w)
		}
	}
}

// TestKnownKeysCoverEffective: every key of the effective configuration
// is in knownKeys, so a key the loader learns to read is never reported
// as ignored because the tree was not updated.
func TestKnownKeysCoverEffective(t *testing.T) {
	for _, src := range []string{
		"---\ntracker: {kind: linear, provider: {project_slug: p}}\n---\n",
		"---\ntracker: {kind: files, provider: {path: /i}}\npricing: {m: {input: 1, output: 2}}\n---\n",
	} {
		r := mustParse(t, src, map[string]string{"LINEAR_API_KEY": "k"})
		for _, s := range Effective(r) {
			if s.Key == "retention_ms" {
				continue // WORKFLOW.md spells it retention (a duration)
			}
			node := any(knownKeys())
			for _, seg := range strings.Split(s.Key, ".") {
				sec, ok := node.(map[string]any)
				if !ok {
					break // a leaf: read whole
				}
				next, ok := sec[seg]
				if !ok {
					next, ok = sec["*"]
				}
				if !ok {
					t.Errorf("%s is in the effective configuration but not in knownKeys", s.Key)
					break
				}
				node = next
			}
		}
	}
}

// TestTrackerLevelKeysOfAnotherAdapter: the adapters' keys may be written
// directly under tracker (the reference's spelling), and the loader
// accepts each adapter's there; one that the configured adapter does not
// read is named, not silently ignored, and a key it reads is not.
func TestTrackerLevelKeysOfAnotherAdapter(t *testing.T) {
	src := `---
tracker:
  kind: linear
  project_slug: abc
  api_key: literal-key
  repo: acme/app
  state_labels: "status:"
---
`
	r := mustParse(t, src, nil)
	for _, w := range []string{
		"tracker.repo: not applicable to the linear tracker; ignored",
		"tracker.state_labels: not applicable to the linear tracker; ignored",
	} {
		if !slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "tracker.project_slug") || strings.HasPrefix(w, "tracker.api_key") {
			t.Errorf("a key the linear tracker reads was reported: %q", w)
		}
	}
	src = "---\ntracker:\n  kind: github\n  repo: acme/app\n  token: literal-key\n  project_slug: abc\n---\n"
	r = mustParse(t, src, nil)
	if !slices.ContainsFunc(r.Warnings, func(s string) bool {
		return strings.HasPrefix(s, "tracker.project_slug: not applicable to the github tracker")
	}) {
		t.Errorf("project_slug under a github tracker not named: %q", r.Warnings)
	}
	if slices.ContainsFunc(r.Warnings, func(s string) bool {
		return strings.HasPrefix(s, "tracker.repo") || strings.HasPrefix(s, "tracker.token")
	}) {
		t.Errorf("a key the github tracker reads was reported: %q", r.Warnings)
	}
}
