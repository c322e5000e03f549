package workflowfile

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// GitHub tracker defaults and its two native states.
const (
	DefaultGitHubEndpoint = "https://api.github.com"
	DefaultGitHubAPIKey   = "$GITHUB_TOKEN"
	// GitHubOpen and GitHubClosed are GitHub's own issue states, the
	// tracker's states without state_labels; a closed issue is always in
	// state closed.
	GitHubOpen   = "open"
	GitHubClosed = "closed"
	// MaxStateLabelPrefix bounds tracker.provider.state_labels.
	MaxStateLabelPrefix = 100
)

// GitHub's naming rules: an account login is letters, digits and single
// inner hyphens, at most 39 characters; a repository name is letters,
// digits, '.', '_' and '-', at most 100 characters.
var (
	githubLogin = regexp.MustCompile(`^[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}$`)
	githubRepo  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// githubProjectKeys are the keys of GitHub Projects (v2) states, which
// this build reads but does not support yet: a workflow that sets one
// fails validation rather than running with states from somewhere else
// than it says.
var githubProjectKeys = []string{"project", "status_field", "priority_field"}

// ValidGitHubRepo checks an "owner/name" repository as GitHub names them.
func ValidGitHubRepo(s string) error {
	owner, name, ok := strings.Cut(s, "/")
	switch {
	case strings.Contains(s, "://") || strings.HasPrefix(s, "github.com/"):
		return fmt.Errorf("want owner/name, not a URL, got %q", s)
	case !ok || strings.Contains(name, "/"):
		return fmt.Errorf("want owner/name (one slash), got %q", s)
	case !githubLogin.MatchString(owner):
		return fmt.Errorf("owner %q is not a GitHub account name (letters, digits and single hyphens, at most 39)", owner)
	case !githubRepo.MatchString(name) || name == "." || name == "..":
		return fmt.Errorf("repository name %q is not a GitHub repository name (letters, digits, '.', '_', '-', at most 100)", name)
	case strings.HasSuffix(strings.ToLower(name), ".git"):
		return fmt.Errorf("repository name %q ends in .git: give the name without it", name)
	}
	return nil
}

// github decodes the GitHub provider keys. get finds a key under
// tracker.provider or, the reference's spelling, directly under tracker.
// The reference's own key names (token, api_url) are read as api_key and
// endpoint; giving both spellings is an error.
func (d *decoder) github(t *bus.TrackerConfig, get func(string) (map[string]any, string)) {
	src, key := get("repo")
	t.Provider.Repo = strings.TrimSpace(d.indirect(src, "repo", key, ""))
	if t.Provider.Repo == "" {
		d.fail(key, "required for the github tracker (owner/name)")
	} else if err := ValidGitHubRepo(t.Provider.Repo); err != nil {
		d.fail(key, "%v", err)
	}

	src, key = d.alias(get, "api_key", "token")
	t.Provider.APIKey = d.secret(src, key[strings.LastIndex(key, ".")+1:], key, DefaultGitHubAPIKey)
	src, key = d.alias(get, "endpoint", "api_url")
	t.Provider.Endpoint = strings.TrimRight(d.indirect(src, key[strings.LastIndex(key, ".")+1:], key, DefaultGitHubEndpoint), "/")
	if u, err := url.Parse(t.Provider.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		d.fail(key, "must be an http(s) URL without query or fragment (GitHub's REST API root), got %q", t.Provider.Endpoint)
	}

	src, key = get("assignee")
	t.Provider.Assignee = strings.TrimSpace(d.indirect(src, "assignee", key, ""))
	if a := t.Provider.Assignee; a != "" && a != "me" && !githubLogin.MatchString(a) {
		d.fail(key, "must be a GitHub login or me, got %q", a)
	}

	src, key = get("state_labels")
	t.Provider.StateLabels = strings.TrimSpace(d.str(src, "state_labels", key, ""))
	if p := t.Provider.StateLabels; len(p) > MaxStateLabelPrefix || strings.ContainsAny(p, ",\n\r") {
		d.fail(key, "must be a label prefix such as \"status:\" (one line, no comma, at most %d bytes), got %q", MaxStateLabelPrefix, cutQuote(p))
	}
	for _, k := range githubProjectKeys {
		if src, key := get(k); src[k] != nil {
			d.fail(key, "GitHub Projects (v2) states are not supported by this build yet; remove the key (states come from open/closed, or from state_labels)")
		}
	}
}

// alias finds key, or its alternative spelling alt; both is an error.
func (d *decoder) alias(get func(string) (map[string]any, string), key, alt string) (map[string]any, string) {
	src, full := get(key)
	asrc, afull := get(alt)
	if asrc[alt] == nil {
		return src, full
	}
	if src[key] != nil {
		d.fail(afull, "give %s or %s, not both", full, afull)
	}
	return asrc, afull
}

// githubStates checks the states against what the github tracker can
// produce: open and closed without state_labels; with them, a closed
// issue is in state closed, which must be terminal and not active.
func (d *decoder) githubStates(t bus.TrackerConfig) {
	has := func(states []string, s string) bool {
		return slices.ContainsFunc(states, func(x string) bool { return strings.EqualFold(strings.TrimSpace(x), s) })
	}
	if t.Provider.StateLabels == "" {
		for _, l := range []struct {
			key    string
			states []string
		}{{"tracker.active_states", t.ActiveStates}, {"tracker.terminal_states", t.TerminalStates}} {
			for _, s := range l.states {
				if !strings.EqualFold(s, GitHubOpen) && !strings.EqualFold(s, GitHubClosed) {
					d.fail(l.key, "the github tracker without tracker.provider.state_labels has only the states open and closed, got %q (set state_labels to take states from labels)", s)
				}
			}
		}
		if has(t.TerminalStates, GitHubOpen) {
			d.fail("tracker.terminal_states", "open cannot be terminal for the github tracker (every open issue would be done)")
		}
	}
	if has(t.ActiveStates, GitHubClosed) {
		d.fail("tracker.active_states", "closed cannot be active for the github tracker (a closed issue is done)")
	}
	if !has(t.TerminalStates, GitHubClosed) {
		d.fail("tracker.terminal_states", "must include closed for the github tracker (a closed issue is in state closed, whatever its labels)")
	}
}

// cutQuote bounds a value quoted in a message.
func cutQuote(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
