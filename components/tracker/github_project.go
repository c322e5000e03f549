package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/symphony-oss/symphony/bus"
)

// A GitHub Projects (v2) board as the source of states
// (tracker.provider.project): an open issue of the repository that is on
// the board is in the state its single-select status field names
// ("In Progress"); an open issue off the board, or with the field empty,
// is open; a closed issue is closed. With priority_field, the field's
// value (1..4, or urgent/high/medium/low) is the priority, before any
// priority: label. The board is read with GitHub's GraphQL API (the one
// static document in queries/github_project_items.graphql, validated
// against GitHub's published schema in the tests), every page, once per
// listing or refresh: GraphQL answers carry no ETag, so each poll spends
// about one point of the GraphQL quota per 100 items of the board.

// Project reading limits.
const (
	githubProjectPage = 100
	// githubProjectMaxPages bounds one read of a board (10,000 items).
	githubProjectMaxPages = 100
)

// ghProjectItem is what the board says of one issue.
type ghProjectItem struct {
	status   string // "" when the field is empty
	priority *int
}

// projectMap is the board's items of this repository, by issue number.
type projectMap map[int64]ghProjectItem

type ghProjectPage struct {
	RepositoryOwner *struct {
		ProjectV2 *struct {
			Items *struct {
				Nodes []struct {
					IsArchived bool `json:"isArchived"`
					Content    *struct {
						Number     *int64 `json:"number"`
						Repository *struct {
							NameWithOwner string `json:"nameWithOwner"`
						} `json:"repository"`
					} `json:"content"`
					Status *struct {
						Name *string `json:"name"`
					} `json:"status"`
					Priority *struct {
						Name   *string  `json:"name"`
						Number *float64 `json:"number"`
						Text   *string  `json:"text"`
					} `json:"priority"`
				} `json:"nodes"`
				PageInfo *struct {
					HasNextPage bool    `json:"hasNextPage"`
					EndCursor   *string `json:"endCursor"`
				} `json:"pageInfo"`
			} `json:"items"`
		} `json:"projectV2"`
	} `json:"repositoryOwner"`
}

// graphqlURL is GitHub's GraphQL endpoint for the REST root: /graphql on
// api.github.com, /api/graphql on GitHub Enterprise Server (/api/v3).
func (g *github) graphqlURL() string {
	u := *g.base
	if p, ok := strings.CutSuffix(u.Path, "/api/v3"); ok {
		u.Path = p + "/api/graphql"
		return u.String()
	}
	return u.JoinPath("graphql").String()
}

// readProject reads the board, every page or nothing; nil without a
// project.
func (g *github) readProject(ctx context.Context) (projectMap, error) {
	if g.projectOwner == "" {
		return nil, nil
	}
	out := projectMap{}
	seen := map[string]bool{}
	var after *string
	full := strings.ToLower(g.owner + "/" + g.repo)
	for page := 1; ; page++ {
		if page > githubProjectMaxPages {
			return nil, errorf(bus.TrackerPaginationError, "project %s/%d: more than %d pages of items", g.projectOwner, g.projectNumber, githubProjectMaxPages)
		}
		vars := map[string]any{"owner": g.projectOwner, "number": g.projectNumber, "first": githubProjectPage, "after": after,
			"statusField": g.statusField, "priorityField": g.priorityField}
		var p ghProjectPage
		if err := g.graphql(ctx, queryGitHubProjectItems, vars, &p); err != nil {
			return nil, fmt.Errorf("project %s/%d page %d: %w", g.projectOwner, g.projectNumber, page, err)
		}
		if p.RepositoryOwner == nil || p.RepositoryOwner.ProjectV2 == nil || p.RepositoryOwner.ProjectV2.Items == nil || p.RepositoryOwner.ProjectV2.Items.PageInfo == nil {
			return nil, errorf(bus.TrackerStatusError, "project %s/%d not found, or the token cannot read it (a token needs read access to projects)", g.projectOwner, g.projectNumber)
		}
		items := p.RepositoryOwner.ProjectV2.Items
		g.collectItems(p, full, out)
		if !items.PageInfo.HasNextPage {
			return out, nil
		}
		cur := items.PageInfo.EndCursor
		if cur == nil || *cur == "" || seen[*cur] {
			return nil, errorf(bus.TrackerPaginationError, "project %s/%d page %d: a next page without a new cursor", g.projectOwner, g.projectNumber, page)
		}
		seen[*cur] = true
		after = cur
	}
}

// collectItems adds a page's items of the repository full (owner/name,
// lowercased) to out; archived items and other content are skipped.
func (g *github) collectItems(p ghProjectPage, full string, out projectMap) {
	if p.RepositoryOwner == nil || p.RepositoryOwner.ProjectV2 == nil || p.RepositoryOwner.ProjectV2.Items == nil {
		return
	}
	for _, n := range p.RepositoryOwner.ProjectV2.Items.Nodes {
		if n.IsArchived || n.Content == nil || n.Content.Number == nil || n.Content.Repository == nil || strings.ToLower(n.Content.Repository.NameWithOwner) != full {
			continue
		}
		var it ghProjectItem
		if n.Status != nil && n.Status.Name != nil {
			it.status = strings.TrimSpace(*n.Status.Name)
		}
		if pr := n.Priority; pr != nil {
			switch {
			case pr.Name != nil:
				it.priority = priorityValue(*pr.Name)
			case pr.Text != nil:
				it.priority = priorityValue(*pr.Text)
			case pr.Number != nil && !math.IsNaN(*pr.Number) && *pr.Number >= 1 && *pr.Number <= 4 && *pr.Number == math.Trunc(*pr.Number):
				v := int(*pr.Number)
				it.priority = &v
			}
		}
		out[*n.Content.Number] = it
	}
}

// graphql sends one document through the gate, with the token, and
// decodes its data into out: GraphQL errors are graphql_error (RATE_LIMITED
// ones rate_limited, with the headers' wait).
func (g *github) graphql(ctx context.Context, doc string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": doc, "variables": vars})
	if err != nil {
		return errorf(bus.TrackerRequestError, "encode the GraphQL request: %v", err)
	}
	status, h, raw, err := g.send(ctx, http.MethodPost, g.graphqlURL(), body)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return g.statusError(status, h, raw)
	}
	return g.decodeGraphQL(raw, h, out)
}

// decodeGraphQL reads a GraphQL answer's body into out (see graphql).
func (g *github) decodeGraphQL(raw []byte, h http.Header, out any) error {
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(io.LimitReader(bytes.NewReader(raw), MaxResponseBytes)).Decode(&env); err != nil {
		return errorf(bus.TrackerMalformed, "GitHub's GraphQL answer is not JSON: %v", err)
	}
	if len(env.Errors) > 0 {
		msgs := make([]string, 0, len(env.Errors))
		for _, e := range env.Errors {
			if strings.EqualFold(e.Type, "RATE_LIMITED") {
				wait := parseGitHubRateLimit(h, g.now()).wait()
				g.gate.limit(g.now().Add(wait))
				return &Error{Class: bus.TrackerRateLimited, Message: "GitHub GraphQL rate limit (RATE_LIMITED)", RetryAfter: wait}
			}
			msgs = append(msgs, e.Message)
		}
		return errorf(bus.TrackerGraphQLError, "GitHub returned errors: %s", snippetText(strings.Join(msgs, "; "), 500))
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return errorf(bus.TrackerMalformed, "GitHub's GraphQL answer has no data")
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return errorf(bus.TrackerMalformed, "GitHub's GraphQL data does not have the expected shape: %v", err)
	}
	return nil
}

// parseProject splits "owner/number".
func parseProject(s string) (string, int, error) {
	owner, num, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if !ok || owner == "" || err != nil || n <= 0 {
		return "", 0, fmt.Errorf("tracker.provider.project must be owner/number, got %q", s)
	}
	return owner, n, nil
}
