package tracker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/frontmatter"
	"github.com/symphony-oss/symphony/internal/yamlbound"
)

// MaxIssueFileBytes caps one issue file of the files tracker.
const MaxIssueFileBytes = 1 << 20

// files is the local tracker: a directory of <IDENTIFIER>.md files with YAML
// front matter and the description as body. It needs no account, so the
// demo and the tests run on it; editing a file is how an operator (or a
// hook) moves an issue.
type files struct {
	dir   string
	rules rules
	log   *slog.Logger
	// racy and racyFine are how recent a file's change may be and its
	// parse still be kept (see parsed and window); fields so tests can set
	// them.
	racy, racyFine time.Duration

	// writeMu serializes the tools' writes (files_tools.go).
	writeMu sync.Mutex

	mu sync.Mutex
	// parsed keeps each file's parse, keyed by path, with the file's
	// identity when it was read: every poll and every operator refresh
	// reads the whole directory, and re-parsing the YAML of files that did
	// not change was most of its cost.
	parsed map[string]parsedFile
	// parses counts the files read and parsed (tests).
	parses int
}

// parsedFile is one file's parse, or why its content was refused, and the
// stat it belongs to. A refusal is kept like a parse: a malformed file
// (hostile, or one the operator has not fixed yet) was otherwise read and
// parsed again at every poll and every candidates, terminal and refresh
// request, the most expensive parse there is each time.
type parsedFile struct {
	stamp fileStamp
	fi    fileIssue
	err   error
}

// fileStamp is what tells a changed file from an unchanged one: a file
// replaced (rename over it) has another inode; one rewritten in place has
// a new change time (which no one can set back) and usually a new size and
// modification time.
type fileStamp struct {
	ino, size    int64
	mtime, ctime time.Time
	dev          uint64
}

// racyWindow is how recently a file may have changed and its parse still
// be kept. A file's times come from a coarse clock and are truncated to the
// file system's granularity (at worst 2 s, FAT's), so a second change soon
// after the first can leave the same times; with the same size and inode
// it would look unchanged. A file whose last change is older than this
// when it is read cannot be hit by that: any later change gets a later
// time. Files changed more recently are parsed again at every read (git's
// "racily clean" entries, the same problem). FAT's 2 s steps plus a tick
// of the coarse clock: a change a moment after the window can still be
// stamped inside the step it would have to leave.
const racyWindow = 2*time.Second + racyWindowFine

// racyWindowFine replaces racyWindow for a file whose change time has a
// fraction of a second: its file system keeps fine times, and they come
// from the kernel's coarse clock, which ticks every 1-10 ms (a jiffy). A
// change later than one tick after a read gets a later time, so a tenth of
// a second is ten ticks of margin. (On a network file system the times
// come from the server's clock: the window is then also the clock skew it
// tolerates.) The 2 s window re-read a file the dispatch benchmark had just
// changed at every refresh, and the 50-agent workload's after_run hooks
// make 50 such files.
const racyWindowFine = 100 * time.Millisecond

func newFiles(cfg bus.TrackerConfig, log *slog.Logger) (*files, error) {
	if cfg.Provider.Path == "" {
		return nil, errorf(bus.TrackerConfigError, "tracker.provider.path is required for the files tracker")
	}
	return &files{dir: cfg.Provider.Path, rules: newRules(cfg.TerminalStates, cfg.Provider.Assignee), log: log,
		racy: racyWindow, racyFine: racyWindowFine, parsed: map[string]parsedFile{}}, nil
}

// stampOf is st's fileStamp; ok is false when the platform gives no inode.
func stampOf(st os.FileInfo) (fileStamp, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{ino: int64(sys.Ino), dev: uint64(sys.Dev), size: st.Size(), mtime: st.ModTime(),
		ctime: time.Unix(sys.Ctim.Unix())}, true
}

// readIssueFile returns the parse of one issue file, or why it was
// refused: the kept one when the file has not changed since, else a fresh
// one (kept when the file's last change is old enough, see racyWindow).
func (f *files) readIssueFile(path string) (fileIssue, error) {
	now := time.Now()
	st, err := os.Stat(path)
	if err != nil {
		return fileIssue{}, err
	}
	stamp, ok := stampOf(st)
	f.mu.Lock()
	kept, hit := f.parsed[path]
	f.mu.Unlock()
	if ok && hit && kept.stamp == stamp {
		return kept.fi, kept.err
	}
	fi, err := parseIssueFile(path, st)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parses++
	changed := stamp.mtime
	if stamp.ctime.After(changed) {
		changed = stamp.ctime
	}
	// An error reading the file (permissions, I/O) is not kept: it says
	// nothing of the content the stamp stands for.
	var readErr *fs.PathError
	if ok && !errors.As(err, &readErr) && now.Sub(changed) > f.window(changed) {
		f.parsed[path] = parsedFile{stamp: stamp, fi: fi, err: err}
	} else {
		delete(f.parsed, path)
	}
	return fi, err
}

// window is how long after changed a file's parse may not be kept: a time
// with no fraction of a second may come from a file system that keeps
// whole seconds (or FAT's two), whose clock cannot tell two changes in one
// second apart.
func (f *files) window(changed time.Time) time.Duration {
	if changed.Nanosecond() != 0 {
		return f.racyFine
	}
	return f.racy
}

// fileIssue is an issue file's front matter before normalization.
type fileIssue struct {
	path  string
	issue bus.Issue
	// blockers as written: identifiers (resolved against the other files)
	// or explicit {id, identifier, state} maps.
	blockers []bus.Blocker
}

// load reads every issue file; malformed ones are skipped with a logged
// reason naming the file.
func (f *files) load(ctx context.Context) ([]bus.Issue, int, error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, 0, errorf(bus.TrackerRequestError, "read issues directory %s: %v", f.dir, err)
	}
	var parsed []fileIssue
	dropped := 0
	seen := make(map[string]bool, len(entries))
	defer f.forgetAllBut(seen)
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".md") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(f.dir, e.Name())
		seen[path] = true
		fi, err := f.readIssueFile(path)
		if err != nil {
			dropped++
			f.log.Warn("skipped a malformed issue file", "file", path, "reason", err.Error())
			continue
		}
		parsed = append(parsed, fi)
	}
	parsed, clashing := f.dropClashes(parsed)
	dropped += clashing
	byIdent := map[string]bus.Issue{}
	for _, p := range parsed {
		byIdent[p.issue.Identifier] = p.issue
	}
	out := make([]bus.Issue, 0, len(parsed))
	for _, p := range parsed {
		iss := p.issue
		iss.BlockedBy = []bus.Blocker{}
		for _, b := range p.blockers {
			if b.Identifier != nil && b.State == nil {
				if other, ok := byIdent[*b.Identifier]; ok {
					id, state := other.ID, other.State
					b.ID, b.State = &id, &state
				}
			}
			iss.BlockedBy = append(iss.BlockedBy, b)
		}
		f.rules.dispatchable(&iss, false)
		out = append(out, iss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identifier < out[j].Identifier })
	return out, dropped, nil
}

// dropClashes removes every file whose id or identifier another file also
// has, logging which files clash, and returns the rest and how many it
// removed. Two files for one issue would be two claims and two agents in
// one workspace (<root>/<identifier>, so identifiers compare exactly, as
// the path uses them); which of them is the real one is the operator's
// call, so none is kept. Counted as dropped, they make a Refresh of their
// id fail rather than answer "gone" or two issues.
func (f *files) dropClashes(parsed []fileIssue) ([]fileIssue, int) {
	byID := map[string][]string{}
	byIdent := map[string][]string{}
	for _, p := range parsed {
		byID[p.issue.ID] = append(byID[p.issue.ID], p.path)
		byIdent[p.issue.Identifier] = append(byIdent[p.issue.Identifier], p.path)
	}
	clash := map[string]bool{}    // paths to drop
	reported := map[string]bool{} // "id\x00<value>", "identifier\x00<value>"
	report := func(what, value string, paths []string) {
		if len(paths) < 2 || reported[what+"\x00"+value] {
			return
		}
		reported[what+"\x00"+value] = true
		f.log.Warn("skipped issue files that describe the same issue", "files", strings.Join(paths, ", "),
			"reason", fmt.Sprintf("%s %q is in %d files; none is used until one remains", what, value, len(paths)))
		for _, path := range paths {
			clash[path] = true
		}
	}
	// In directory order, so the log reads the same at every poll.
	for _, p := range parsed {
		report("id", p.issue.ID, byID[p.issue.ID])
		report("identifier", p.issue.Identifier, byIdent[p.issue.Identifier])
	}
	kept := parsed[:0]
	for _, p := range parsed {
		if !clash[p.path] {
			kept = append(kept, p)
		}
	}
	return kept, len(parsed) - len(kept)
}

// forgetAllBut drops the kept parses of files no longer listed.
func (f *files) forgetAllBut(listed map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for path := range f.parsed {
		if !listed[path] {
			delete(f.parsed, path)
		}
	}
}

// Candidates implements adapter.
func (f *files) Candidates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	return f.inStates(ctx, states)
}

// Terminal implements adapter.
func (f *files) Terminal(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	return f.inStates(ctx, states)
}

func (f *files) inStates(ctx context.Context, states []string) ([]bus.Issue, int, error) {
	if len(states) == 0 {
		return []bus.Issue{}, 0, nil
	}
	all, dropped, err := f.load(ctx)
	if err != nil {
		return nil, 0, err
	}
	want := stateSet(states)
	out := []bus.Issue{}
	for _, iss := range all {
		if want[normState(iss.State)] {
			out = append(out, iss)
		}
	}
	return out, dropped, nil
}

// Refresh implements adapter.
func (f *files) Refresh(ctx context.Context, ids []string) ([]bus.Issue, error) {
	ids = dedupe(ids)
	if len(ids) == 0 {
		return []bus.Issue{}, nil
	}
	all, dropped, err := f.load(ctx)
	if err != nil {
		return nil, err
	}
	out := []bus.Issue{}
	for _, iss := range all {
		if slices.Contains(ids, iss.ID) {
			out = append(out, iss)
		}
	}
	if dropped > 0 && len(out) < len(ids) {
		// A requested issue may be one of the files that could not be
		// read (caught half-saved, say) or that clash with another (see
		// dropClashes): "gone" would stop its agent, so the answer is an
		// error, never a partial result.
		return nil, errorf(bus.TrackerMalformed, "refresh: %d issue file(s) in %s are malformed or share an id or identifier with another, and %d requested issue(s) were not found", dropped, f.dir, len(ids)-len(out))
	}
	return out, nil
}

// parseIssueFile reads one <IDENTIFIER>.md, whose stat is st.
func parseIssueFile(path string, st os.FileInfo) (fileIssue, error) {
	if st.Size() > MaxIssueFileBytes {
		return fileIssue{}, fmt.Errorf("larger than %d bytes", MaxIssueFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fileIssue{}, err
	}
	fi, err := parseIssue(strings.TrimSuffix(filepath.Base(path), ".md"), data)
	fi.path = path
	return fi, err
}

// parseIssue parses the bytes of an issue file whose name (without .md) is
// stem. The identifier defaults to stem and the id to the identifier.
func parseIssue(stem string, data []byte) (fileIssue, error) {
	m, body, err := issueFrontMatter(data)
	if err != nil {
		return fileIssue{}, err
	}
	var fi fileIssue
	if err := m.readNames(&fi.issue, stem); err != nil {
		return fi, err
	}
	if err := m.readDetails(&fi.issue); err != nil {
		return fi, err
	}
	if fi.blockers, err = blockers(m["blocked_by"]); err != nil {
		return fi, fmt.Errorf("blocked_by: %v", err)
	}
	if d := strings.TrimSpace(string(body)); d != "" {
		fi.issue.Description = &d
	}
	// The file's name within the tracker's directory: what a tool or a
	// prompt needs to find the issue on disk, and nothing secret.
	fi.issue.NativeRef = map[string]string{"file": stem + ".md"}
	return fi, nil
}

// issueKeys is the decoded front matter of an issue file. Its readers
// check one group of keys each, always in the same order, so a file with
// several wrong keys is always refused naming the same one.
type issueKeys map[string]any

// issueFrontMatter splits an issue file into its front matter, which must
// be a map of keys, and its body (the description).
func issueFrontMatter(data []byte) (issueKeys, []byte, error) {
	front, body, _, err := frontmatter.Split(data)
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	if len(strings.TrimSpace(string(front))) > 0 {
		// yamlbound bounds nesting and alias expansion, so a hostile file
		// costs in proportion to its bytes (an alias bomb is refused).
		v, _, _, err := yamlbound.Decode(front)
		if err != nil {
			return nil, nil, fmt.Errorf("front matter: %w", err)
		}
		switch x := v.(type) {
		case nil:
		case map[string]any:
			m = x
		default:
			return nil, nil, fmt.Errorf("front matter must be a map of keys (title:, state:, …), got %s", yamlbound.Describe(v))
		}
	}
	if m == nil {
		return nil, nil, fmt.Errorf("no front matter (need at least title and state)")
	}
	return m, body, nil
}

// str reads a scalar key as a string (a number or a boolean as YAML wrote
// it); nil when the key is absent or null.
func (m issueKeys) str(key string) (*string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	switch x := v.(type) {
	case string:
		return &x, nil
	case uint64, int64, float64, bool:
		s := fmt.Sprint(x)
		return &s, nil
	}
	return nil, fmt.Errorf("%s must be a string", key)
}

// readNames reads what names the issue — identifier (default stem), id
// (default the identifier) — and the two keys every issue must have,
// title and state.
func (m issueKeys) readNames(iss *bus.Issue, stem string) error {
	ident, err := m.str("identifier")
	if err != nil {
		return err
	}
	iss.Identifier = stem
	if ident != nil && *ident != "" {
		iss.Identifier = *ident
	}
	id, err := m.str("id")
	if err != nil {
		return err
	}
	iss.ID = iss.Identifier
	if id != nil && *id != "" {
		iss.ID = *id
	}
	title, err := m.str("title")
	if err != nil {
		return err
	}
	if title == nil || strings.TrimSpace(*title) == "" {
		return fmt.Errorf("title is required")
	}
	iss.Title = *title
	state, err := m.str("state")
	if err != nil {
		return err
	}
	if state == nil || strings.TrimSpace(*state) == "" {
		return fmt.Errorf("state is required")
	}
	iss.State = strings.TrimSpace(*state)
	return nil
}

// readDetails reads the optional keys: branch_name, url, assignee,
// priority, created_at, updated_at and labels.
func (m issueKeys) readDetails(iss *bus.Issue) error {
	for _, k := range []struct {
		key string
		dst **string
	}{{"branch_name", &iss.BranchName}, {"url", &iss.URL}, {"assignee", &iss.AssigneeID}} {
		v, err := m.str(k.key)
		if err != nil {
			return err
		}
		*k.dst = nonEmpty(v)
	}
	if v, ok := m["priority"]; ok && v != nil {
		p, ok := number(v)
		if !ok {
			return fmt.Errorf("priority must be a number, got %s", yamlbound.Describe(v))
		}
		if p != 0 {
			iss.Priority = &p
		}
	}
	for _, k := range []struct {
		key string
		dst **time.Time
	}{{"created_at", &iss.CreatedAt}, {"updated_at", &iss.UpdatedAt}} {
		t, err := timestamp(m[k.key])
		if err != nil {
			return fmt.Errorf("%s: %v", k.key, err)
		}
		*k.dst = t
	}
	labels, err := stringList(m["labels"])
	if err != nil {
		return fmt.Errorf("labels: %v", err)
	}
	iss.Labels = normLabels(labels)
	return nil
}

func number(v any) (int, bool) {
	switch n := v.(type) {
	case uint64:
		return int(min(n, 1<<31)), true
	case int64:
		return int(n), true
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return 0, false
		}
		return int(math.Round(n)), true
	}
	return 0, false
}

func timestamp(v any) (*time.Time, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		t := x.UTC()
		return &t, nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("want an RFC 3339 time like 2026-01-02T15:04:05Z, got %s", yamlbound.Describe(x))
		}
		t = t.UTC()
		return &t, nil
	}
	return nil, fmt.Errorf("want an RFC 3339 time, got %s", yamlbound.Describe(v))
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Split(x, ","), nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("entries must be strings, got %s", yamlbound.Describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %s", yamlbound.Describe(v))
}

// blockers reads blocked_by: identifiers, or maps with id/identifier/state.
func blockers(v any) ([]bus.Blocker, error) {
	list, ok := v.([]any)
	if v == nil {
		return nil, nil
	}
	if !ok {
		if s, isStr := v.(string); isStr {
			list = []any{s}
		} else {
			return nil, fmt.Errorf("want a list, got %s", yamlbound.Describe(v))
		}
	}
	var out []bus.Blocker
	for _, e := range list {
		switch x := e.(type) {
		case string:
			s := strings.TrimSpace(x)
			out = append(out, bus.Blocker{Identifier: &s})
		case map[string]any:
			var b bus.Blocker
			for key, dst := range map[string]**string{"id": &b.ID, "identifier": &b.Identifier, "state": &b.State} {
				if s, ok := x[key].(string); ok && s != "" {
					*dst = &s
				}
			}
			if b.ID == nil && b.Identifier == nil {
				return nil, fmt.Errorf("a blocker needs an id or an identifier")
			}
			out = append(out, b)
		default:
			return nil, fmt.Errorf("entries must be identifiers or maps, got %s", yamlbound.Describe(e))
		}
	}
	return out, nil
}
