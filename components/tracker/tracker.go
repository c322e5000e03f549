// Package tracker is the component that talks to the issue tracker. It is
// the only holder of the tracker credential. It polls the active issues on
// polling.interval_ms (re-read live from the workflow config), publishes
// each poll's candidates on symphony.tracker.snapshot, reports failed polls,
// and answers candidate, terminal and refresh requests at any time.
//
// It also runs the tools its adapter offers a run's agent (tools.go):
// listed on symphony.tracker.tools, called on symphony.tracker.tool,
// executed here with the adapter's credential on the run's own issue only,
// every outcome a result (never a request error), so an agent acts on its
// ticket without ever holding the key.
//
// Adapters: linear (GraphQL over HTTP), github (GitHub Issues over REST;
// github*.go) and files (a directory of Markdown issues). All normalize
// into bus.Issue with the same rules.
package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// adapter is what a tracker provider implements. Listings return the
// number of malformed records they dropped.
type adapter interface {
	Candidates(ctx context.Context, states []string) ([]bus.Issue, int, error)
	Terminal(ctx context.Context, states []string) ([]bus.Issue, int, error)
	Refresh(ctx context.Context, ids []string) ([]bus.Issue, error)
	// tools are what the adapter offers a run's agent (tools.go).
	tools() []tool
}

// PollTimeout bounds one poll.
const PollTimeout = 2 * time.Minute

// Options configures the component.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// HTTPClient is used by the Linear adapter (default: 30s timeout).
	HTTPClient *http.Client
	// Env resolves secrets: $NAME references are re-read from it, and a
	// literal key is re-read from the workflow file it came from.
	Env workflowfile.Env
}

// Component is the tracker component.
type Component struct {
	opts Options
	log  *slog.Logger
	// current is the adapter for the config in force (nil before the
	// first config, or with the error that prevents building one).
	current atomic.Pointer[active]
	// gates are the Linear rate limits in effect, shared by every adapter
	// this component builds with the same credential.
	gates *rateGates
	// etags are the GitHub ETag caches, one per credential like gates.
	etags *etagCaches
	// sessions are the runs' tool sessions (sessions.go).
	sessions *toolSessions
}

type active struct {
	snap    bus.ConfigSnapshot
	adapter adapter
	err     error // why there is no adapter
}

// New checks the options; it starts nothing.
func New(opts Options) (*Component, error) {
	if opts.Bus == nil {
		return nil, errors.New("tracker: a bus is required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Env.LookupEnv == nil {
		opts.Env = workflowfile.OSEnv()
	}
	return &Component{opts: opts, log: opts.Log.With("component", bus.CompTracker), gates: &rateGates{}, etags: &etagCaches{}, sessions: newToolSessions()}, nil
}

// Name is "tracker".
func (c *Component) Name() string { return bus.CompTracker }

// Run serves requests and polls until ctx ends.
func (c *Component) Run(ctx context.Context) error {
	c.current.Store(nil)
	// Everything this Run serves and watches ends, and the requests in
	// flight have returned, once the client is closed.
	cl := c.opts.Bus.Client(bus.CompTracker)
	defer cl.Close()
	configs, err := bus.Watch(ctx, cl, bus.ConfigCurrent)
	if err != nil {
		return components.Stopped(ctx, err)
	}
	for _, serve := range []func(context.Context, *bus.Client) error{c.serveCandidates, c.serveTerminal, c.serveRefresh, c.serveTools, c.serveToolCalls, c.serveToolsRelease} {
		if err := serve(ctx, cl); err != nil {
			return components.Stopped(ctx, err)
		}
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-configs.C():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("config watch ended")
			}
			prev := c.current.Load()
			c.apply(e.Value)
			if prev == nil || !reflect.DeepEqual(prev.snap.Config.Tracker, e.Value.Config.Tracker) {
				// New tracker settings: poll now.
				timer.Reset(0)
			} else if prev.snap.Config.Polling != e.Value.Config.Polling {
				timer.Reset(e.Value.Config.Polling.Interval())
			}
		case <-timer.C:
			timer.Reset(c.poll(ctx))
		}
	}
}

// apply builds the adapter for a new config.
func (c *Component) apply(snap bus.ConfigSnapshot) {
	a, err := c.build(snap)
	if err != nil {
		c.log.Error("tracker not usable with this config", "err", err, "config_version", snap.Version)
	} else {
		c.log.Info("tracker configured", "kind", snap.Config.Tracker.Kind, "config_version", snap.Version)
	}
	c.current.Store(&active{snap: snap, adapter: a, err: err})
}

func (c *Component) build(snap bus.ConfigSnapshot) (adapter, error) {
	tc := snap.Config.Tracker
	log := c.log.With("tracker", tc.Kind)
	switch tc.Kind {
	case bus.TrackerFiles:
		return newFiles(tc, log)
	case bus.TrackerLinear:
		key, err := c.secret(snap)
		if err != nil {
			return nil, err
		}
		l, err := newLinear(tc, key, c.opts.HTTPClient, log)
		if err != nil {
			return nil, err
		}
		// One quota for the poller and every pinned tool session, across
		// reloads (usually the same workspace's key).
		l.gate = c.gates.of(l.endpoint, key)
		return l, nil
	case bus.TrackerGitHub:
		key, err := c.secret(snap)
		if err != nil {
			return nil, err
		}
		g, err := newGitHub(tc, key, c.opts.HTTPClient, log)
		if err != nil {
			return nil, err
		}
		// The token's quota and its conditional requests' cache outlive
		// a reload, as for Linear.
		g.gate, g.cache = c.gates.of(g.endpoint, key), c.etags.of(g.endpoint, key)
		return g, nil
	}
	return nil, errorf(bus.TrackerConfigError, "unsupported tracker kind %q", tc.Kind)
}

// secret resolves the API key: from its environment variable, or, for a
// literal in the file (which never crosses the bus), from the workflow file
// itself when it still has the checksum of the config in force.
func (c *Component) secret(snap bus.ConfigSnapshot) (string, error) {
	s := snap.Config.Tracker.Provider.APIKey
	getenv := func(k string) string { v, _ := c.opts.Env.LookupEnv(k); return v }
	if v := s.Resolve(getenv); v != "" {
		return v, nil
	}
	if s.Env() != "" {
		return "", errorf(bus.TrackerMissingSecret, "$%s is not set or empty", s.Env())
	}
	res, err := workflowfile.Load(snap.Path, c.opts.Env)
	if err != nil || res.Checksum != snap.Checksum {
		return "", errorf(bus.TrackerMissingSecret, "the literal API key of %s could not be re-read (the file changed or is invalid)", snap.Path)
	}
	if v := res.Config.Tracker.Provider.APIKey.Value(); v != "" {
		return v, nil
	}
	return "", errorf(bus.TrackerMissingSecret, "no API key configured (tracker.provider.api_key)")
}

// use returns the adapter in force, or the reason there is none.
func (c *Component) use() (*active, error) {
	cur := c.current.Load()
	if cur == nil {
		return nil, errorf(bus.TrackerConfigError, "no workflow configuration loaded yet")
	}
	if cur.err != nil {
		return nil, cur.err
	}
	return cur, nil
}

// poll fetches the candidates once and returns the wait before the next.
func (c *Component) poll(ctx context.Context) time.Duration {
	cur, err := c.use()
	interval := bus.PollingConfig{IntervalMS: 30000}.Interval()
	if cur != nil {
		interval = cur.snap.Config.Polling.Interval()
	} else if latest := c.current.Load(); latest != nil {
		interval = latest.snap.Config.Polling.Interval()
	}
	var list []bus.Issue
	var dropped int
	states := []string{}
	// Stamp the snapshot with when the fetch started: a run that ended
	// after this moment may not be reflected in it (the scheduler relies
	// on that to ignore stale candidates).
	now := time.Now().UTC()
	if err == nil {
		states = cur.snap.Config.Tracker.ActiveStates
		pctx, cancel := context.WithTimeout(ctx, PollTimeout)
		list, dropped, err = cur.adapter.Candidates(pctx, states)
		cancel()
	}
	took := time.Since(now).Milliseconds()
	if err != nil {
		if ctx.Err() != nil {
			return interval
		}
		class, retry := classOf(err)
		c.log.Warn("poll failed; dispatch waits for the next good poll", "class", class, "err", err.Error(), "retry_after", retry)
		if perr := bus.Publish(c.opts.Bus, bus.TrackerPollFailures, bus.PollFailed{Class: class, Message: err.Error(), At: now, RetryAfterMS: retry.Milliseconds(), DurationMS: took}); perr != nil {
			c.log.Warn("publish poll failure", "err", perr)
		}
		return max(interval, retry)
	}
	list, cut := c.bound(cur, list, true)
	snap := bus.CandidateSnapshot{IssueList: bus.IssueList{Issues: list, FetchedAt: now, Dropped: dropped + cut}, States: states, ConfigVersion: cur.snap.Version, DurationMS: took}
	if err := bus.Publish(c.opts.Bus, bus.TrackerSnapshots, snap); err != nil {
		c.log.Warn("publish snapshot", "err", err, "issues", len(list))
	}
	c.log.Debug("polled", "issues", len(list), "dropped", dropped)
	return interval
}

func (c *Component) serveCandidates(ctx context.Context, cl *bus.Client) error {
	_, err := bus.Serve(ctx, cl, bus.TrackerCandidates, func(ctx context.Context, _ string, req bus.IssuesByStates) (bus.IssueList, error) {
		cur, err := c.use()
		if err != nil {
			return bus.IssueList{}, err
		}
		now := time.Now().UTC()
		list, dropped, err := cur.adapter.Candidates(ctx, req.States)
		if err != nil {
			return bus.IssueList{}, fmt.Errorf("candidates: %w", err)
		}
		list, cut := c.bound(cur, list, req.Outline)
		return bus.IssueList{Issues: list, FetchedAt: now, Dropped: dropped + cut}, nil
	})
	return err
}

func (c *Component) serveTerminal(ctx context.Context, cl *bus.Client) error {
	_, err := bus.Serve(ctx, cl, bus.TrackerTerminal, func(ctx context.Context, _ string, req bus.IssuesByStates) (bus.IssueList, error) {
		cur, err := c.use()
		if err != nil {
			return bus.IssueList{}, err
		}
		now := time.Now().UTC()
		list, dropped, err := cur.adapter.Terminal(ctx, req.States)
		if err != nil {
			return bus.IssueList{}, fmt.Errorf("terminal issues: %w", err)
		}
		list, cut := c.bound(cur, list, req.Outline)
		return bus.IssueList{Issues: list, FetchedAt: now, Dropped: dropped + cut}, nil
	})
	return err
}

func (c *Component) serveRefresh(ctx context.Context, cl *bus.Client) error {
	_, err := bus.Serve(ctx, cl, bus.TrackerRefresh, func(ctx context.Context, _ string, req bus.IssuesByIDs) (bus.IssueList, error) {
		cur, err := c.use()
		if err != nil {
			return bus.IssueList{}, err
		}
		now := time.Now().UTC()
		list, err := cur.adapter.Refresh(ctx, req.IDs)
		if err != nil {
			return bus.IssueList{}, fmt.Errorf("refresh: %w", err)
		}
		if list, cut := c.bound(cur, list, req.Outline); cut == 0 {
			return bus.IssueList{Issues: list, FetchedAt: now}, nil
		}
		// An issue left out would read as gone (and stop its agent):
		// never a partial answer.
		return bus.IssueList{}, errorf(bus.TrackerMalformed, "refresh: a requested issue has an id, identifier or state longer than %d bytes", bus.FieldMaxBytes)
	})
	return err
}

// bound cuts every issue to the bus's bound for one issue (bus.Issue.Bound,
// the workflow's required labels kept first) and, with outline, to its
// outline. Issues that cannot be routed at any size (an id, identifier or
// state over bus.FieldMaxBytes) are left out and counted; what was cut of
// the others is logged. The cost is linear in the issues' size.
func (c *Component) bound(cur *active, list []bus.Issue, outline bool) ([]bus.Issue, int) {
	limit := c.opts.Bus.IssueLimit()
	required := cur.snap.Config.Tracker.RequiredLabels
	out := list[:0]
	left := 0
	for _, iss := range list {
		b, cut, ok := iss.Bound(limit, required)
		if !ok {
			left++
			c.log.Warn("issue left out: it cannot be routed", "issue_id", safeid.Quote(iss.ID), "issue_identifier", safeid.Quote(iss.Identifier), "reason", strings.Join(cut, ", "))
			continue
		}
		if len(cut) > 0 {
			c.log.Warn("issue cut to fit the bus", "issue_id", b.ID, "issue_identifier", b.Identifier, "cut", strings.Join(cut, ", "), "limit_bytes", limit)
		}
		if outline {
			b = b.Outline()
		}
		out = append(out, b)
	}
	return out, left
}

// outputLimit is the most a tool result's output may take: the bound, or
// less on a server whose messages are smaller.
func (c *Component) outputLimit() int {
	return int(min(int64(bus.ToolOutputMaxBytes), c.opts.Bus.Conn().MaxPayload()/2))
}
