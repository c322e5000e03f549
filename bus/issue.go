package bus

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Issue is the tracker-neutral issue every component works with. Optional
// fields are pointers so "absent" and "empty" stay distinct (the prompt sees
// null for an absent value).
type Issue struct {
	ID          string  `json:"id"`
	Identifier  string  `json:"identifier"`
	Title       string  `json:"title"`
	Description *string `json:"description"`
	// Priority is 1 (urgent) .. 4 (low); nil or 0 means none.
	Priority   *int    `json:"priority"`
	State      string  `json:"state"`
	BranchName *string `json:"branch_name"`
	URL        *string `json:"url"`
	AssigneeID *string `json:"assignee_id"`
	// Labels are trimmed, lowercased and de-duplicated.
	Labels    []string  `json:"labels"`
	BlockedBy []Blocker `json:"blocked_by"`
	// Dispatchable is false when the tracker adapter knows the issue must
	// not be dispatched (assignee filter, open blockers on Todo).
	Dispatchable bool       `json:"dispatchable"`
	CreatedAt    *time.Time `json:"created_at"`
	UpdatedAt    *time.Time `json:"updated_at"`
	// NativeRef holds the provider's own non-secret names for the issue,
	// for prompts and provider-native tools (the reference specification,
	// §4.1.1 and §11.3); nil (null) when the adapter has none to add. Its
	// keys and values are each at most FieldMaxBytes and there are at most
	// MaxNativeRefKeys of them (Bound drops it otherwise).
	NativeRef map[string]string `json:"native_ref"`
	// IsOutline is set on an outline (Outline): the description and the
	// blockers were left out, and the full issue is read from the tracker
	// by id (TrackerRefresh) where it is needed (the agent's prompt).
	IsOutline bool `json:"outline,omitempty"`
}

// Blocker is an issue that blocks another.
type Blocker struct {
	ID         *string `json:"id"`
	Identifier *string `json:"identifier"`
	State      *string `json:"state"`
}

// Bounds of an issue on the bus. The tracker cuts every issue it hands out
// to these (Issue.Bound) and lists candidates as outlines (Issue.Outline),
// so that no message grows without bound with what an issue author writes
// or with how many issues the tracker holds.
const (
	// IssueMaxBytes is the most one issue's JSON may take on the bus; a
	// server whose max payload is under four times this lowers it to a
	// quarter of that (IssueLimit), leaving room for the message around it.
	IssueMaxBytes = 256 << 10
	// TitleMaxBytes bounds the title (as JSON, quotes and escapes included).
	TitleMaxBytes = 2 << 10
	// FieldMaxBytes bounds the id, identifier and state (an issue whose
	// value is longer is not an issue Symphony can route: the tracker drops
	// it as malformed), the URL, branch name and assignee id (dropped when
	// longer), each label and each blocker's fields (dropped when longer).
	FieldMaxBytes = 512
	// MaxLabels and MaxBlockers bound the lists; the rest are dropped
	// (labels the workflow requires are kept first).
	MaxLabels   = 100
	MaxBlockers = 50
	// MaxNativeRefKeys bounds native_ref.
	MaxNativeRefKeys = 8
)

// OutlineWholeBytes is the size up to which an issue is its own outline.
const OutlineWholeBytes = 2 << 10

// CutMarker starts the note that ends a cut title or description.
const CutMarker = "[… cut by Symphony:"

// IssueLimit is the bound of one issue on a server that accepts messages
// of at most maxPayload bytes.
func IssueLimit(maxPayload int64) int {
	if maxPayload <= 0 || maxPayload/4 >= IssueMaxBytes {
		return IssueMaxBytes
	}
	return int(max(maxPayload/4, 4<<10))
}

// Outline is the issue as the scheduler needs it to dispatch and reconcile
// (internal/eligibility and the dispatch order read nothing else): the
// description and the blockers are left out (Dispatchable already says
// whether a blocker holds the issue back), and Outline is set, so the agent
// runner knows to read the full issue from the tracker before the run.
//
// An issue of at most OutlineWholeBytes is its own outline: it goes whole
// and needs no read by id (most issues, and the one round trip a dispatch
// would otherwise add).
func (i Issue) Outline() Issue {
	if issueJSONBound(i) <= OutlineWholeBytes {
		return i
	}
	i.Description = nil
	i.BlockedBy = nil
	i.IsOutline = true
	return i
}

// Bound cuts the issue to at most limit bytes of JSON (see the constants
// above): the title and the description are cut at a rune boundary and end
// with a note starting with CutMarker; over-long optional fields, labels
// and blockers are dropped; required labels are kept first. ok is false
// when the id, identifier or state is longer than FieldMaxBytes: such an
// issue cannot be routed and is dropped. cut names what was cut (empty when
// nothing). The cost is linear in the issue's size.
func (i Issue) Bound(limit int, required []string) (out Issue, cut []string, ok bool) {
	for _, f := range []struct{ name, v string }{{"id", i.ID}, {"identifier", i.Identifier}, {"state", i.State}} {
		if jsonStringLen(f.v) > FieldMaxBytes {
			return i, []string{f.name + " longer than " + fmt.Sprint(FieldMaxBytes) + " bytes"}, false
		}
	}
	if n := jsonStringLen(i.Title); n > TitleMaxBytes {
		i.Title = cutText(i.Title, TitleMaxBytes)
		cut = append(cut, "title")
	}
	for _, f := range []struct {
		name string
		p    **string
	}{{"url", &i.URL}, {"branch_name", &i.BranchName}, {"assignee_id", &i.AssigneeID}} {
		if *f.p != nil && jsonStringLen(**f.p) > FieldMaxBytes {
			*f.p = nil
			cut = append(cut, f.name)
		}
	}
	if !nativeRefFits(i.NativeRef) {
		i.NativeRef = nil
		cut = append(cut, "native_ref")
	}
	if labels, dropped := boundLabels(i.Labels, required); dropped > 0 {
		i.Labels = labels
		cut = append(cut, fmt.Sprintf("%d label(s)", dropped))
	}
	if len(i.BlockedBy) > 0 {
		kept := make([]Blocker, 0, min(len(i.BlockedBy), MaxBlockers))
		dropped := 0
		for _, b := range i.BlockedBy {
			if len(kept) == MaxBlockers || strLen(b.ID) > FieldMaxBytes || strLen(b.Identifier) > FieldMaxBytes || strLen(b.State) > FieldMaxBytes {
				dropped++
				continue
			}
			kept = append(kept, b)
		}
		if dropped > 0 {
			i.BlockedBy = kept
			cut = append(cut, fmt.Sprintf("%d blocker(s)", dropped))
		}
	}
	// The lists may still take more than a small limit leaves: they are
	// halved (blockers first, then labels other than the required ones)
	// until the rest of the issue leaves room for a cut description.
	if issueJSONBound(i) <= limit {
		return i, cut, true // the usual case, without encoding the issue
	}
	d := i.Description
	i.Description = nil
	rest := issueJSONLen(i)
	trimmed := 0
	for rest+descRoom > limit {
		switch {
		case len(i.BlockedBy) > 0:
			trimmed += len(i.BlockedBy) - len(i.BlockedBy)/2
			i.BlockedBy = i.BlockedBy[:len(i.BlockedBy)/2]
		case len(i.Labels) > 0:
			req := requiredFirst(i.Labels, required)
			n := len(req) / 2
			if k := requiredCount(req, required); n < k {
				n = k
			}
			if n == len(req) {
				n = 0 // only required labels left, and still too long
			}
			trimmed += len(i.Labels) - n
			i.Labels = req[:n]
		default:
			// Nothing left to trim: the fields are each bounded, so only
			// a limit far below IssueLimit's least gets here.
			rest = limit - descRoom
			continue
		}
		rest = issueJSONLen(i)
	}
	if trimmed > 0 {
		cut = append(cut, fmt.Sprintf("%d more label(s) or blocker(s) to fit %d bytes", trimmed, limit))
	}
	if d != nil {
		text := *d
		// "null" becomes the quoted description.
		budget := limit - rest + len("null")
		if n := jsonStringLen(text); n > budget {
			text = cutText(text, budget)
			cut = append(cut, "description")
		}
		i.Description = &text
	}
	return i, cut, true
}

// issueJSONBound is at least the size of the issue's JSON, without
// encoding it: its strings' encoded lengths plus room for every key,
// number, time and punctuation.
func issueJSONBound(i Issue) int {
	n := 512 + jsonStringLen(i.ID) + jsonStringLen(i.Identifier) + jsonStringLen(i.Title) + jsonStringLen(i.State) +
		strLen(i.Description) + strLen(i.BranchName) + strLen(i.URL) + strLen(i.AssigneeID)
	for _, l := range i.Labels {
		n += jsonStringLen(l) + 1
	}
	for _, b := range i.BlockedBy {
		n += 48 + strLen(b.ID) + strLen(b.Identifier) + strLen(b.State)
	}
	for k, v := range i.NativeRef {
		n += 2 + jsonStringLen(k) + jsonStringLen(v)
	}
	return n
}

// nativeRefFits says whether native_ref keeps within its bounds.
func nativeRefFits(ref map[string]string) bool {
	if len(ref) > MaxNativeRefKeys {
		return false
	}
	for k, v := range ref {
		if jsonStringLen(k) > FieldMaxBytes || jsonStringLen(v) > FieldMaxBytes {
			return false
		}
	}
	return true
}

// issueJSONLen is the size of the issue's JSON.
func issueJSONLen(i Issue) int {
	b, err := json.Marshal(i)
	if err != nil {
		return 0
	}
	return len(b)
}

func strLen(s *string) int {
	if s == nil {
		return 0
	}
	return jsonStringLen(*s)
}

// boundLabels keeps at most MaxLabels labels no longer than FieldMaxBytes,
// the required ones first; dropped counts the rest.
func boundLabels(labels, required []string) (kept []string, dropped int) {
	fits := func(l string) bool { return jsonStringLen(l) <= FieldMaxBytes }
	if len(labels) <= MaxLabels && !slices.ContainsFunc(labels, func(l string) bool { return !fits(l) }) {
		return labels, 0
	}
	kept = make([]string, 0, MaxLabels)
	for _, l := range requiredFirst(labels, required) {
		if len(kept) < MaxLabels && fits(l) {
			kept = append(kept, l)
		}
	}
	return kept, len(labels) - len(kept)
}

func isRequired(l string, required []string) bool {
	return slices.ContainsFunc(required, func(r string) bool { return strings.EqualFold(strings.TrimSpace(r), strings.TrimSpace(l)) })
}

// requiredFirst orders the labels the workflow requires first, the rest
// after them, each in their order.
func requiredFirst(labels, required []string) []string {
	out := make([]string, 0, len(labels))
	for _, pass := range []bool{true, false} {
		for _, l := range labels {
			if isRequired(l, required) == pass {
				out = append(out, l)
			}
		}
	}
	return out
}

// descRoom is the least room kept for a cut description and its note.
const descRoom = 128

// requiredCount counts the leading labels of kept that are required
// (boundLabels puts them first).
func requiredCount(kept, required []string) int {
	n := 0
	for _, l := range kept {
		if !isRequired(l, required) {
			break
		}
		n++
	}
	return n
}

// cutText cuts s so that with its note it takes
// at most budget bytes; the note says how much was cut.
func cutText(s string, budget int) string {
	note := func(k int) string { return fmt.Sprintf(" %s %d bytes not shown]", CutMarker, k) }
	room := budget - 2 - jsonStringLen(note(len(s))) // the quotes
	used, end := 0, 0
	for end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		w := jsonRuneLen(r, size)
		if used+w > room {
			break
		}
		used += w
		end += size
	}
	return s[:end] + note(len(s)-end)
}

// jsonStringLen is the length of s encoded as a JSON string by
// encoding/json (quotes included; HTML characters, control characters,
// U+2028, U+2029 and invalid UTF-8 escaped as it escapes them).
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			// Plain ASCII, the usual case, without decoding a rune.
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				n++
			} else {
				n += jsonRuneLen(rune(c), 1)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		n += jsonRuneLen(r, size)
		i += size
	}
	return n
}

// jsonRuneLen is the encoded length of one rune of size bytes.
func jsonRuneLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return 6 // \ufffd
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	}
	return size
}
