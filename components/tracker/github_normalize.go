package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// ghIssue is a REST issue as GitHub's API version 2022-11-28 sends it,
// the fields the adapter reads. Pointers tell missing from empty.
type ghIssue struct {
	Number    *int64            `json:"number"`
	NodeID    *string           `json:"node_id"`
	Title     *string           `json:"title"`
	Body      *string           `json:"body"`
	State     *string           `json:"state"`
	HTMLURL   *string           `json:"html_url"`
	RepoURL   *string           `json:"repository_url"`
	Labels    []json.RawMessage `json:"labels"`
	Assignee  *ghUser           `json:"assignee"`
	Assignees []ghUser          `json:"assignees"`
	CreatedAt *string           `json:"created_at"`
	UpdatedAt *string           `json:"updated_at"`
	// PullRequest is present (not null) on a pull request.
	PullRequest json.RawMessage `json:"pull_request"`
	// Dependencies counts the issue's blockers: BlockedBy the open ones,
	// TotalBlockedBy all. Absent where GitHub has no issue dependencies
	// (older GitHub Enterprise Server): no blockers are known then.
	Dependencies *struct {
		BlockedBy      *int64 `json:"blocked_by"`
		TotalBlockedBy *int64 `json:"total_blocked_by"`
	} `json:"issue_dependencies_summary"`
}

type ghUser struct {
	Login *string `json:"login"`
}

// ghItem is a normalized issue with what finish still needs.
type ghItem struct {
	iss bus.Issue
	// logins are its assignees' logins.
	logins []string
	// blockedBy is how many blockers GitHub says it has (all states).
	blockedBy int64
	// unseen: GitHub has more blockers than were read.
	unseen bool
	// ambiguous lists the state labels of an issue with more than one.
	ambiguous []string
}

// normalize turns one REST issue into an item; nil, nil for a pull
// request. A record without a number, title or state is an error that
// says what is missing.
func (g *github) normalize(raw json.RawMessage, pm projectMap) (*ghItem, error) {
	var n ghIssue
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("issue: %v", err)
	}
	if len(n.PullRequest) > 0 && string(n.PullRequest) != "null" {
		return nil, nil
	}
	who := "issue"
	if n.Number != nil {
		who = fmt.Sprintf("issue %d", *n.Number)
	}
	switch {
	case n.Number == nil || *n.Number <= 0:
		return nil, fmt.Errorf("%s: missing or bad number", who)
	case n.Title == nil:
		return nil, fmt.Errorf("%s: missing title", who)
	case n.State == nil || (*n.State != "open" && *n.State != "closed"):
		return nil, fmt.Errorf("%s: state is not open or closed", who)
	}
	labels := labelNames(n.Labels)
	state, ambiguous := g.stateOf(*n.State, labels, *n.Number, pm)
	num := strconv.FormatInt(*n.Number, 10)
	priority := priorityOf(labels)
	if p := pm[*n.Number].priority; p != nil {
		priority = p
	}
	it := &ghItem{ambiguous: ambiguous, iss: bus.Issue{
		ID:          num,
		Identifier:  g.prefix + "-" + num,
		Title:       *n.Title,
		Description: n.Body,
		Priority:    priority,
		State:       state,
		URL:         nonEmpty(n.HTMLURL),
		CreatedAt:   parseTime(n.CreatedAt),
		UpdatedAt:   parseTime(n.UpdatedAt),
		Labels:      normLabels(labels),
		BlockedBy:   []bus.Blocker{},
		NativeRef:   g.nativeRef(num, n.NodeID),
	}}
	if n.Assignee != nil && n.Assignee.Login != nil && *n.Assignee.Login != "" {
		it.logins = append(it.logins, *n.Assignee.Login)
	}
	for _, a := range n.Assignees {
		if a.Login != nil && *a.Login != "" && !slices.ContainsFunc(it.logins, func(l string) bool { return strings.EqualFold(l, *a.Login) }) {
			it.logins = append(it.logins, *a.Login)
		}
	}
	if len(it.logins) > 0 {
		it.iss.AssigneeID = &it.logins[0]
	}
	if n.Dependencies != nil && n.Dependencies.TotalBlockedBy != nil && *n.State == "open" {
		it.blockedBy = max(*n.Dependencies.TotalBlockedBy, 0)
	}
	return it, nil
}

// nativeRef is the issue's native_ref: GitHub's own names for it, so a
// prompt or a github_api call can address it without taking the id or
// the identifier apart. Bound (bus) drops it whole if a value is too long.
func (g *github) nativeRef(number string, nodeID *string) map[string]string {
	ref := map[string]string{"owner": g.owner, "repo": g.repo, "number": number}
	if nodeID != nil && *nodeID != "" {
		ref["node_id"] = *nodeID
	}
	return ref
}

// labelNames reads the labels, which GitHub sends as objects with a name
// (or, in some payloads, as plain strings); others are skipped.
func labelNames(raw []json.RawMessage) []string {
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		var l struct {
			Name *string `json:"name"`
		}
		var s string
		if json.Unmarshal(r, &l) == nil && l.Name != nil {
			out = append(out, *l.Name)
		} else if json.Unmarshal(r, &s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// stateOf is an issue's state: closed for a closed issue, whatever its
// labels or board; open for an open one without state_labels or project.
// With a project, an open issue's state is its status on the board (open
// when it is not on it, or the field is empty). With state_labels,
// an open issue's state is the text after the prefix (compared
// case-insensitively) of its one state label, as written; with none it is
// open; with several naming different states it is open and ambiguous
// lists them (finish makes it not dispatchable).
func (g *github) stateOf(ghState string, labels []string, number int64, pm projectMap) (string, []string) {
	if ghState == "closed" {
		return ghState, nil
	}
	if g.projectOwner != "" {
		if s := pm[number].status; s != "" {
			return s, nil
		}
		return ghState, nil
	}
	if g.stateLabels == "" {
		return ghState, nil
	}
	var states, seen []string
	for _, l := range labels {
		l = strings.TrimSpace(l)
		if len(l) < len(g.stateLabels) || !strings.EqualFold(l[:len(g.stateLabels)], g.stateLabels) {
			continue
		}
		s := strings.TrimSpace(l[len(g.stateLabels):])
		if s == "" || slices.Contains(seen, normState(s)) {
			continue
		}
		seen = append(seen, normState(s))
		states = append(states, s)
	}
	switch len(states) {
	case 0:
		return "open", nil
	case 1:
		return states[0], nil
	}
	return "open", states
}

// priorityOf reads the priority: label convention: priority:1 (urgent) to
// priority:4 (low), or priority:urgent, high, medium, low; with several,
// the most urgent; none (or anything else) is no priority.
func priorityOf(labels []string) *int {
	var best *int
	for _, l := range labels {
		v, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(l)), priorityLabelPrefix)
		if p := priorityValue(v); ok && p != nil && (best == nil || *p < *best) {
			best = p
		}
	}
	return best
}

// priorityValue reads one priority: 1..4, or urgent, high, medium, low
// (case-insensitive); anything else is none.
func priorityValue(v string) *int {
	v = strings.ToLower(strings.TrimSpace(v))
	p := slices.Index([]string{"urgent", "high", "medium", "low"}, v) + 1
	if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 4 {
		p = n
	}
	if p == 0 {
		return nil
	}
	return &p
}

// finish sets what depends on the config and the blockers: the assignee
// filter (the login among the issue's assignees, case-insensitively; the
// matching login becomes assignee_id) and dispatchable. Blockers hold back
// an issue in Todo, and without state_labels one in open (GitHub's only
// active state then).
func (g *github) finish(it *ghItem, r rules) bus.Issue {
	iss := it.iss
	iss.Dispatchable = true
	if login := g.login(); login != "" {
		i := slices.IndexFunc(it.logins, func(l string) bool { return strings.EqualFold(l, login) })
		if i < 0 {
			iss.Dispatchable = false
			return iss
		}
		iss.AssigneeID = &it.logins[i]
	}
	if len(it.ambiguous) > 0 {
		g.log.Warn("not dispatchable: the issue has several state labels", "issue_id", iss.ID, "issue_identifier", iss.Identifier,
			"states", cutText(strings.Join(it.ambiguous, ", "), 200))
		iss.Dispatchable = false
		return iss
	}
	st := normState(iss.State)
	if (st == "todo" || (!g.namedStates() && st == "open")) && r.held(&iss, it.unseen) {
		if it.unseen {
			g.log.Warn("not dispatchable: GitHub has more blockers than were read, and one may be open", "issue_id", iss.ID, "issue_identifier", iss.Identifier)
		}
		iss.Dispatchable = false
	}
	return iss
}

// githubMaxBlockers is the most blockers read for one issue (one page).
const githubMaxBlockers = 100

// blockers reads the blockers of the items GitHub says have some
// (GET …/issues/{n}/dependencies/blocked_by, one page of 100, 4 at once).
// A blocker's state follows the same rules as an issue's. More blockers
// than that page, or an endpoint this GitHub does not have (404), leave
// them unseen: the issue is held back where blockers count.
func (g *github) blockers(ctx context.Context, items []*ghItem, pm projectMap) error {
	var need []*ghItem
	for _, it := range items {
		if it.blockedBy > 0 {
			need = append(need, it)
		}
	}
	return runBounded(ctx, len(need), githubConcurrency, func(ctx context.Context, i int) error {
		it := need[i]
		u, err := g.url(url.Values{"per_page": {strconv.Itoa(githubMaxBlockers)}}, "issues", it.iss.ID, "dependencies", "blocked_by")
		if err != nil {
			return fmt.Errorf("blockers of issue %s: %w", it.iss.ID, err)
		}
		ans, err := g.get(ctx, u)
		if err != nil {
			return fmt.Errorf("blockers of issue %s: %w", it.iss.ID, err)
		}
		if ans.status != http.StatusOK {
			it.unseen = true
			return nil
		}
		list, err := g.parseBlockers(ans.body, pm)
		if err != nil {
			return errorf(bus.TrackerMalformed, "blockers of issue %s: %v", it.iss.ID, err)
		}
		it.iss.BlockedBy = list
		it.unseen = int64(len(list)) < it.blockedBy || ans.link != ""
		return nil
	})
}

// parseBlockers reads a page of blocking issues. A blocker in another
// repository is named by its own repository's identifier form and its
// node id.
func (g *github) parseBlockers(body []byte, pm projectMap) ([]bus.Blocker, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, errors.New("not a JSON array of issues")
	}
	out := []bus.Blocker{}
	for _, raw := range raws {
		var n ghIssue
		if json.Unmarshal(raw, &n) != nil || n.Number == nil || n.State == nil {
			// A blocker that cannot be read still blocks: unknown state.
			out = append(out, bus.Blocker{})
			continue
		}
		num := strconv.FormatInt(*n.Number, 10)
		owner, repo, ok := repoOfURL(n.RepoURL)
		other := ok && !(strings.EqualFold(owner, g.owner) && strings.EqualFold(repo, g.repo))
		bpm := pm
		if other {
			bpm = nil // the board's map holds this repository's issues only
		}
		state, _ := g.stateOf(*n.State, labelNames(n.Labels), *n.Number, bpm)
		b := bus.Blocker{State: &state}
		if other {
			ident := githubIdentifierPrefix(repo) + "-" + num
			b.ID, b.Identifier = nonEmpty(n.NodeID), &ident
		} else {
			ident := g.prefix + "-" + num
			b.ID, b.Identifier = &num, &ident
		}
		out = append(out, b)
	}
	return out, nil
}

// repoOfURL reads owner and name from a repository_url
// (…/repos/{owner}/{repo}).
func repoOfURL(s *string) (string, string, bool) {
	if s == nil {
		return "", "", false
	}
	parts := strings.Split(strings.TrimRight(*s, "/"), "/")
	if len(parts) < 3 || parts[len(parts)-3] != "repos" {
		return "", "", false
	}
	return parts[len(parts)-2], parts[len(parts)-1], true
}
