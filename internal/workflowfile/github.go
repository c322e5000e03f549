package workflowfile

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
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

// DefaultGitHubStatusField is the project field states come from.
const DefaultGitHubStatusField = "Status"

// MaxProjectFieldName bounds a project field's name.
const MaxProjectFieldName = 100

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
	if v, ok := d.env.LookupEnv("GITHUB_REPO"); ok && t.Provider.Repo == "" && src["repo"] == nil {
		// The reference reads $GITHUB_REPO when the workflow names no
		// repository; so does this loader, saying so.
		t.Provider.Repo = strings.TrimSpace(v)
		d.warn(key, "%s (from $GITHUB_REPO: the workflow names no repository)", t.Provider.Repo)
	}
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
	} else if err := CheckTransport(u); err != nil {
		d.fail(key, "%v", err)
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
	d.githubProject(t, get)
}

// githubProject decodes the Projects (v2) keys: project (owner/number),
// status_field (default Status) and priority_field (none). A project and
// state_labels are two sources of states: one or the other.
func (d *decoder) githubProject(t *bus.TrackerConfig, get func(string) (map[string]any, string)) {
	src, key := get("project")
	t.Provider.Project = strings.TrimSpace(d.indirect(src, "project", key, ""))
	fields := []struct {
		name string
		dst  *string
		def  string
	}{{"status_field", &t.Provider.StatusField, DefaultGitHubStatusField}, {"priority_field", &t.Provider.PriorityField, ""}}
	if t.Provider.Project == "" {
		for _, f := range fields {
			if src, key := get(f.name); src[f.name] != nil {
				d.fail(key, "applies only with tracker.provider.project (a GitHub Projects board)")
			}
		}
		return
	}
	owner, num, ok := strings.Cut(t.Provider.Project, "/")
	n, err := strconv.Atoi(num)
	if !ok || !githubLogin.MatchString(owner) || err != nil || n <= 0 || strconv.Itoa(n) != num {
		d.fail(key, "want owner/number of a GitHub Projects board (the number from its URL, e.g. acme/3), got %q", cutQuote(t.Provider.Project))
	}
	if t.Provider.StateLabels != "" {
		d.fail(key, "give tracker.provider.project or tracker.provider.state_labels, not both: they are two sources of states")
	}
	for _, f := range fields {
		src, key := get(f.name)
		*f.dst = strings.TrimSpace(d.str(src, f.name, key, f.def))
		if len(*f.dst) > MaxProjectFieldName || strings.ContainsAny(*f.dst, "\n\r") || (f.def != "" && *f.dst == "") {
			d.fail(key, "must be the name of a field of the project (one line, at most %d bytes), got %q", MaxProjectFieldName, cutQuote(*f.dst))
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
	if !githubNamedStates(t.Provider) {
		for _, l := range []struct {
			key    string
			states []string
		}{{"tracker.active_states", t.ActiveStates}, {"tracker.terminal_states", t.TerminalStates}} {
			for _, s := range l.states {
				if !strings.EqualFold(s, GitHubOpen) && !strings.EqualFold(s, GitHubClosed) {
					d.fail(l.key, "the github tracker without tracker.provider.state_labels or project has only the states open and closed, got %q (set state_labels or project to take states from labels or a board)", s)
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

// githubNamedStates reports whether open issues take named states (from
// state labels or a project) rather than being just open.
func githubNamedStates(p bus.TrackerProvider) bool { return p.StateLabels != "" || p.Project != "" }

// cutQuote bounds a value quoted in a message.
func cutQuote(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
