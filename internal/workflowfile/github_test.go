package workflowfile

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

const ghToken = "ghp_s3cr3tTokenValueNeverPrinted00000"

func githubFront(provider string, extra string) string {
	return "---\ntracker:\n  kind: github\n  provider:\n" + provider + extra + "---\nWork on {{ issue.identifier }}.\n"
}

func TestGitHubDefaults(t *testing.T) {
	r := mustParse(t, githubFront("    repo: acme/socket.io\n", ""), map[string]string{"GITHUB_TOKEN": ghToken})
	tc := r.Config.Tracker
	if tc.Kind != bus.TrackerGitHub || tc.Provider.Repo != "acme/socket.io" || tc.Provider.Endpoint != DefaultGitHubEndpoint ||
		tc.Provider.APIKey.Env() != "GITHUB_TOKEN" || tc.Provider.APIKey.Value() != ghToken || tc.Provider.StateLabels != "" {
		t.Fatalf("tracker = %+v", tc)
	}
	if !slices.Equal(tc.ActiveStates, []string{"open"}) || !slices.Equal(tc.TerminalStates, []string{"closed"}) {
		t.Fatalf("states without state_labels = %v / %v, want [open] / [closed]", tc.ActiveStates, tc.TerminalStates)
	}
	eff := map[string]Setting{}
	for _, s := range Effective(r) {
		eff[s.Key] = s
	}
	for key, want := range map[string]string{
		"tracker.kind":                  "github",
		"tracker.provider.repo":         "acme/socket.io",
		"tracker.provider.endpoint":     DefaultGitHubEndpoint,
		"tracker.provider.api_key":      "****** (from $GITHUB_TOKEN)",
		"tracker.provider.state_labels": StateLabelsUnset,
		"tracker.active_states":         "[open]",
		"tracker.terminal_states":       "[closed]",
	} {
		if eff[key].Value != want {
			t.Errorf("effective %s = %q, want %q", key, eff[key].Value, want)
		}
	}
	if !eff["tracker.provider.endpoint"].Default || !eff["tracker.provider.state_labels"].Default || eff["tracker.provider.repo"].Default {
		t.Errorf("default marks wrong: %+v", eff)
	}
	for _, s := range Effective(r) {
		if strings.Contains(s.Value, ghToken) {
			t.Fatalf("token in the effective configuration: %s", s.Key)
		}
	}

	// With state labels, the usual workflow states are the defaults.
	r = mustParse(t, githubFront("    repo: acme/app\n    state_labels: \"status:\"\n    assignee: me\n    endpoint: http://127.0.0.1:8080/api/v3/\n    api_key: $GH\n", ""), map[string]string{"GH": ghToken})
	tc = r.Config.Tracker
	if tc.Provider.StateLabels != "status:" || tc.Provider.Assignee != "me" || tc.Provider.Endpoint != "http://127.0.0.1:8080/api/v3" || tc.Provider.APIKey.Env() != "GH" {
		t.Fatalf("tracker = %+v", tc)
	}
	if !slices.Equal(tc.ActiveStates, DefaultActiveStates()) || !slices.Equal(tc.TerminalStates, DefaultTerminalStates()) {
		t.Fatalf("states with state_labels = %v / %v", tc.ActiveStates, tc.TerminalStates)
	}

	// The reference's key names are read too.
	r = mustParse(t, githubFront("    repo: acme/app\n    token: $GH\n    api_url: https://ghe.example/api/v3\n", ""), map[string]string{"GH": ghToken})
	if tc := r.Config.Tracker; tc.Provider.APIKey.Env() != "GH" || tc.Provider.Endpoint != "https://ghe.example/api/v3" {
		t.Fatalf("reference spelling: %+v", tc)
	}
}

func TestGitHubValidation(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": ghToken}
	for _, tc := range []struct {
		name, provider, extra, key, msg string
	}{
		{"no repo", "    assignee: me\n", "", "tracker.provider.repo", "required"},
		{"no slash", "    repo: app\n", "", "tracker.provider.repo", "owner/name"},
		{"url", "    repo: https://github.com/acme/app\n", "", "tracker.provider.repo", "not a URL"},
		{"two slashes", "    repo: acme/app/x\n", "", "tracker.provider.repo", "one slash"},
		{"bad owner", "    repo: -acme/app\n", "", "tracker.provider.repo", "owner"},
		{"dot name", "    repo: acme/..\n", "", "tracker.provider.repo", "repository name"},
		{"dot git", "    repo: acme/app.git\n", "", "tracker.provider.repo", ".git"},
		{"spaces", "    repo: acme/my app\n", "", "tracker.provider.repo", "repository name"},
		{"token unset", "    repo: acme/app\n", "", "tracker.provider.api_key", "$GITHUB_TOKEN is not set"},
		{"both spellings", "    repo: acme/app\n    api_key: $GITHUB_TOKEN\n    token: $GITHUB_TOKEN\n", "", "tracker.provider.token", "not both"},
		{"bad endpoint", "    repo: acme/app\n    endpoint: ftp://x\n", "", "tracker.provider.endpoint", "http(s) URL"},
		{"endpoint query", "    repo: acme/app\n    endpoint: https://x/api?a=b\n", "", "tracker.provider.endpoint", "without query"},
		{"bad assignee", "    repo: acme/app\n    assignee: a b\n", "", "tracker.provider.assignee", "login"},
		{"state label comma", "    repo: acme/app\n    state_labels: \"a,b\"\n", "", "tracker.provider.state_labels", "prefix"},
		{"project", "    repo: acme/app\n    project: acme/x\n", "", "tracker.provider.project", "owner/number"},
		{"project zero", "    repo: acme/app\n    project: acme/0\n", "", "tracker.provider.project", "owner/number"},
		{"project and labels", "    repo: acme/app\n    project: acme/3\n    state_labels: \"s:\"\n", "", "tracker.provider.project", "not both"},
		{"status field alone", "    repo: acme/app\n    status_field: Status\n", "", "tracker.provider.status_field", "only with"},
		{"empty status field", "    repo: acme/app\n    project: acme/3\n    status_field: \"\"\n", "", "tracker.provider.status_field", "name of a field"},
		{"label states without labels", "    repo: acme/app\n", "  active_states: [Todo]\n", "tracker.active_states", "only the states open and closed"},
		{"closed not terminal", "    repo: acme/app\n", "  terminal_states: [open]\n", "tracker.terminal_states", ""},
		{"closed active", "    repo: acme/app\n    state_labels: \"status:\"\n", "  active_states: [Todo, closed]\n", "tracker.active_states", "closed cannot be active"},
		{"closed missing", "    repo: acme/app\n    state_labels: \"status:\"\n", "  terminal_states: [Done]\n", "tracker.terminal_states", "must include closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := env
			if tc.name == "token unset" {
				e = nil
			}
			_, err := parse(t, githubFront(tc.provider, tc.extra), e)
			var we *Error
			if !errors.As(err, &we) || we.Class != ClassConfig || we.Key != tc.key || !strings.Contains(we.Message, tc.msg) {
				t.Fatalf("err = %v, want %s on %s containing %q", err, ClassConfig, tc.key, tc.msg)
			}
			if strings.Contains(err.Error(), ghToken) {
				t.Fatal("the token is in the error")
			}
		})
	}
}

func TestGitHubAPIPolicy(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": ghToken}
	r := mustParse(t, githubFront("    repo: acme/app\n", ""), env)
	if p := r.Config.Tracker.Tools.GitHubAPI; p != bus.LinearGraphQLScoped {
		t.Fatalf("default policy %q", p)
	}
	found := false
	for _, s := range Effective(r) {
		if s.Key == "tracker.tools.github_api" {
			found = s.Value == "scoped" && s.Default
		}
		if s.Key == "tracker.tools.linear_graphql" {
			t.Errorf("a github tracker shows linear_graphql: %+v", s)
		}
	}
	if !found {
		t.Error("validate does not show tracker.tools.github_api scoped (default)")
	}
	for _, p := range []string{"any", "Off"} {
		r := mustParse(t, githubFront("    repo: acme/app\n", "  tools: {github_api: "+p+"}\n"), env)
		if got := r.Config.Tracker.Tools.GitHubAPI; got != strings.ToLower(p) {
			t.Errorf("policy %q read as %q", p, got)
		}
	}
	_, err := parse(t, githubFront("    repo: acme/app\n", "  tools: {github_api: everything}\n"), env)
	var we *Error
	if !errors.As(err, &we) || we.Key != "tracker.tools.github_api" {
		t.Fatalf("unknown policy: %v", err)
	}
	// Kept only for github; checked for every kind.
	r = mustParse(t, minimalFiles, nil)
	if r.Config.Tracker.Tools.GitHubAPI != "" {
		t.Error("the files tracker keeps a github_api policy")
	}
	if _, err := parse(t, "---\ntracker:\n  kind: files\n  provider: {path: x}\n  tools: {github_api: nope}\n---\n", nil); err == nil {
		t.Error("a misspelt github_api policy on another tracker passed")
	}
}

func TestGitHubProjectKeys(t *testing.T) {
	r := mustParse(t, githubFront("    repo: acme/app\n    project: Acme-Org/12\n", ""), map[string]string{"GITHUB_TOKEN": ghToken})
	p := r.Config.Tracker.Provider
	if p.Project != "Acme-Org/12" || p.StatusField != "Status" || p.PriorityField != "" {
		t.Fatalf("provider = %+v", p)
	}
	if tc := r.Config.Tracker; !slices.Equal(tc.ActiveStates, DefaultActiveStates()) || !slices.Equal(tc.TerminalStates, DefaultTerminalStates()) {
		t.Fatalf("states with a project = %v / %v", tc.ActiveStates, tc.TerminalStates)
	}
	eff := map[string]Setting{}
	for _, s := range Effective(r) {
		eff[s.Key] = s
	}
	if s := eff["tracker.provider.status_field"]; s.Value != "Status" || !s.Default {
		t.Errorf("status_field shown as %+v", s)
	}
	if _, ok := eff["tracker.provider.state_labels"]; ok {
		t.Error("a project board shows state_labels as the source of states")
	}
	r = mustParse(t, githubFront("    repo: acme/app\n    project: acme/3\n    status_field: Stage\n    priority_field: Priority\n", ""), map[string]string{"GITHUB_TOKEN": ghToken})
	if p := r.Config.Tracker.Provider; p.StatusField != "Stage" || p.PriorityField != "Priority" {
		t.Fatalf("fields = %+v", p)
	}
}

// TestGitHubRepoFromEnvironment: as in the reference, $GITHUB_REPO names
// the repository when the workflow does not, with a warning; the
// workflow's own repo wins.
func TestGitHubRepoFromEnvironment(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": ghToken, "GITHUB_REPO": "acme/from-env"}
	r := mustParse(t, githubFront("    assignee: me\n", ""), env)
	if r.Config.Tracker.Provider.Repo != "acme/from-env" || !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "from $GITHUB_REPO") }) {
		t.Fatalf("repo %q, warnings %q", r.Config.Tracker.Provider.Repo, r.Warnings)
	}
	r = mustParse(t, githubFront("    repo: acme/app\n", ""), env)
	if r.Config.Tracker.Provider.Repo != "acme/app" || len(r.Warnings) != 0 {
		t.Fatalf("repo %q, warnings %q", r.Config.Tracker.Provider.Repo, r.Warnings)
	}
	env["GITHUB_REPO"] = "not a repo"
	if _, err := parse(t, githubFront("    assignee: me\n", ""), env); err == nil || !strings.Contains(err.Error(), "tracker.provider.repo") {
		t.Fatalf("a bad $GITHUB_REPO: %v", err)
	}
}
