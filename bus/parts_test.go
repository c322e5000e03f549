package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// bigIssues are n issues with descriptions of descBytes each.
func bigIssues(n, descBytes int) []Issue {
	out := make([]Issue, n)
	for k := range out {
		d := strings.Repeat("x", descBytes)
		p := k%4 + 1
		out[k] = Issue{ID: "id-" + strconv.Itoa(k), Identifier: "BIG-" + strconv.Itoa(k), Title: "issue " + strconv.Itoa(k), State: "Todo",
			Description: &d, Priority: &p, Labels: []string{"agent"}, BlockedBy: []Blocker{}, Dispatchable: true}
	}
	return out
}

// TestLargeListsCrossTheBusInParts: on a server whose max payload is 64
// KiB, a snapshot of 800 issues with 12 KB descriptions (9.6 MB) and a
// listing of 5,000 issues reach their subscriber and asker whole, in
// order; every message on the wire fits the server. Before parts, the
// publish failed with "maximum payload exceeded" at every poll.
func TestLargeListsCrossTheBusInParts(t *testing.T) {
	b := openTest(t, Options{MaxPayload: 64 << 10})
	if got := b.Conn().MaxPayload(); got != 64<<10 {
		t.Fatalf("max payload %d", got)
	}
	wire, err := b.Conn().SubscribeSync(Root + ".>")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := Subscribe(t.Context(), b, TrackerSnapshots)
	if err != nil {
		t.Fatal(err)
	}
	issues := bigIssues(800, 12000)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	snap := CandidateSnapshot{IssueList: IssueList{Issues: issues, FetchedAt: at, Dropped: 3}, States: []string{"Todo"}, ConfigVersion: 7, DurationMS: 9}
	if err := Publish(b, TrackerSnapshots, snap); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := recv(t, sub).Data
	if len(got.Issues) != 800 || got.Dropped != 3 || got.ConfigVersion != 7 || !got.FetchedAt.Equal(at) || got.States[0] != "Todo" {
		t.Fatalf("snapshot: %d issues, %+v", len(got.Issues), got.IssueList.FetchedAt)
	}
	for k, iss := range got.Issues {
		if iss.ID != issues[k].ID || len(*iss.Description) != 12000 {
			t.Fatalf("issue %d is %s", k, iss.ID)
		}
	}
	parts := 0
	for {
		m, err := wire.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		parts++
		if len(m.Data) > 32<<10 || m.Header.Get(HeaderPart) == "" {
			t.Fatalf("a part of %d bytes, header %q", len(m.Data), m.Header.Get(HeaderPart))
		}
	}
	if parts < 9600000/(32<<10) {
		t.Errorf("%d parts", parts)
	}
	if err := wire.Unsubscribe(); err != nil {
		t.Fatal(err)
	}

	// A listing asked for comes back whole too, and a small one in one
	// message as before.
	_, err = Serve(t.Context(), b, TrackerTerminal, func(_ context.Context, _ string, req IssuesByStates) (IssueList, error) {
		if req.States[0] == "small" {
			return IssueList{Issues: issues[:2]}, nil
		}
		return IssueList{Issues: bigIssues(5000, 300), FetchedAt: at}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := Ask(t.Context(), b, TrackerTerminal, IssuesByStates{States: []string{"Done"}})
	if err != nil || len(list.Issues) != 5000 || list.Issues[4999].ID != "id-4999" || !list.FetchedAt.Equal(at) {
		t.Fatalf("ask: %d issues, %v", len(list.Issues), err)
	}
	list, err = Ask(t.Context(), b, TrackerTerminal, IssuesByStates{States: []string{"small"}})
	if err != nil || len(list.Issues) != 2 {
		t.Fatalf("small ask: %d issues, %v", len(list.Issues), err)
	}
	// Asking without a responder still fails fast.
	if _, err := Ask(t.Context(), b, TrackerCandidates, IssuesByStates{}); !errors.Is(err, ErrNoResponder) {
		t.Errorf("no responder: %v", err)
	}
	// One item larger than a part is refused with a clear error, at the
	// publisher.
	huge := bigIssues(1, 100000)
	if err := Publish(b, TrackerSnapshots, CandidateSnapshot{IssueList: IssueList{Issues: huge}}); !errors.Is(err, ErrPartTooLarge) {
		t.Errorf("huge issue: %v", err)
	}
}

// TestAPartMissingDropsTheMessage: a message whose part was lost (a slow
// subscriber) is dropped whole and counted, never delivered short; the next
// whole message is delivered.
func TestAPartMissingDropsTheMessage(t *testing.T) {
	b := openTest(t, Options{})
	sub, err := Subscribe(t.Context(), b, TrackerSnapshots)
	if err != nil {
		t.Fatal(err)
	}
	part := func(i, n int, id string, issue string) {
		t.Helper()
		data, _ := json.Marshal(CandidateSnapshot{IssueList: IssueList{Issues: []Issue{{ID: issue}}}})
		m := nats.NewMsg("symphony.tracker.snapshot")
		m.Data = data
		m.Header.Set(HeaderType, "CandidateSnapshot")
		m.Header.Set(HeaderSchema, "1")
		m.Header.Set(HeaderPart, fmt.Sprintf("%d/%d", i, n))
		m.Header.Set(HeaderPartsID, id)
		if err := b.Conn().PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	part(1, 3, "a", "a1")
	part(3, 3, "a", "a3") // a2 lost
	part(2, 2, "b", "b2") // b1 lost
	part(1, 2, "c", "c1")
	part(2, 2, "c", "c2")
	got := recv(t, sub).Data
	if len(got.Issues) != 2 || got.Issues[0].ID != "c1" || got.Issues[1].ID != "c2" {
		t.Fatalf("delivered %+v", got.Issues)
	}
	if sub.Overflows() != 2 {
		t.Errorf("overflows %d, want 2 (a and b)", sub.Overflows())
	}
}

// TestIssueBound: whatever an issue author writes, one issue's JSON stays
// within the bound, the title and description end with the cut note, the
// required label survives 60,000 others, and an issue whose id is too long
// to route is refused.
func TestIssueBound(t *testing.T) {
	title := strings.Repeat("T<", 450000) // 900 KB, escaped to 5.4 MB
	desc := strings.Repeat("é\x01", 200000)
	labels := make([]string, 0, 60001)
	for k := range 60000 {
		labels = append(labels, "l"+strconv.Itoa(k))
	}
	labels = append(labels, "agent")
	long := strings.Repeat("u", 5000)
	var blockers []Blocker
	for range 1000 {
		blockers = append(blockers, Blocker{ID: &long, Identifier: &long})
		s := "s"
		blockers = append(blockers, Blocker{ID: &s})
	}
	iss := Issue{ID: "1", Identifier: "A-1", Title: title, State: "Todo", Description: &desc, Labels: labels, BlockedBy: blockers, URL: &long, Dispatchable: true}
	for _, limit := range []int{IssueLimit(MaxPayload), IssueLimit(1 << 20), IssueLimit(64 << 10), IssueLimit(1)} {
		got, cut, ok := iss.Bound(limit, []string{"Agent"})
		if !ok {
			t.Fatalf("refused: %v", cut)
		}
		data, err := json.Marshal(got)
		if err != nil || len(data) > limit {
			t.Fatalf("limit %d: %d bytes, %v", limit, len(data), err)
		}
		if !strings.Contains(got.Title, CutMarker) || !strings.Contains(*got.Description, CutMarker) || got.URL != nil {
			t.Errorf("limit %d: title %q…, url %v", limit, got.Title[:20], got.URL)
		}
		if len(got.Labels) == 0 || got.Labels[0] != "agent" || len(got.Labels) > MaxLabels || len(got.BlockedBy) > MaxBlockers {
			t.Errorf("limit %d: %d labels (first %v), %d blockers", limit, len(got.Labels), got.Labels[:1], len(got.BlockedBy))
		}
		if len(cut) < 4 {
			t.Errorf("limit %d: cut %v", limit, cut)
		}
	}
	// An issue that fits is unchanged.
	small := bigIssues(1, 1000)[0]
	if got, cut, ok := small.Bound(IssueMaxBytes, nil); !ok || len(cut) != 0 || *got.Description != *small.Description {
		t.Errorf("small issue changed: %v", cut)
	}
	// An id too long to route is refused, naming it.
	iss.ID = long
	if _, cut, ok := iss.Bound(IssueMaxBytes, nil); ok || !strings.Contains(cut[0], "id longer") {
		t.Errorf("long id: %v %v", ok, cut)
	}
	// The outline drops the description and blockers, and says so; an
	// issue of at most OutlineWholeBytes goes whole.
	large := bigIssues(1, 3000)[0]
	o := large.Outline()
	if o.Description != nil || o.BlockedBy != nil || !o.IsOutline || o.Title != large.Title || len(o.Labels) != 1 {
		t.Errorf("outline %+v", o)
	}
	if o := small.Outline(); o.IsOutline || o.Description == nil || *o.Description != *small.Description {
		t.Errorf("a small issue's outline is not the issue: %+v", o)
	}
}

// FuzzIssueBound: for any title, description and label, the bound holds
// and jsonStringLen is what encoding/json writes.
func FuzzIssueBound(f *testing.F) {
	f.Add("title", "desc", "label", 4096)
	f.Add(strings.Repeat("<&>\u2028", 3000), "\xff\xfe\x00\"\\", "\x7f", 4096)
	f.Fuzz(func(t *testing.T, title, desc, label string, limit int) {
		for _, s := range []string{title, desc, label} {
			data, _ := json.Marshal(s)
			if jsonStringLen(s) != len(data) {
				t.Fatalf("jsonStringLen(%q) = %d, encoding/json writes %d", s, jsonStringLen(s), len(data))
			}
		}
		limit = IssueLimit(int64(limit))
		labels := []string{label, label + "2"}
		iss := Issue{ID: "1", Identifier: "A-1", Title: title, State: "Todo", Description: &desc, Labels: labels}
		got, _, ok := iss.Bound(limit, []string{label})
		if !ok {
			t.Fatal("refused")
		}
		data, _ := json.Marshal(got)
		if len(data) > limit {
			t.Fatalf("%d bytes over the limit %d", len(data), limit)
		}
	})
}

// TestIssueJSONBoundIsAtLeastTheSize: the shortcut Bound takes for an
// issue that fits never lets one through that does not.
func TestIssueJSONBoundIsAtLeastTheSize(t *testing.T) {
	s, p := "<&>\x01\"", 1
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	full := Issue{ID: s, Identifier: s, Title: s, Description: &s, Priority: &p, State: s, BranchName: &s, URL: &s, AssigneeID: &s,
		Labels: []string{s, s}, BlockedBy: []Blocker{{ID: &s, Identifier: &s, State: &s}, {}}, Dispatchable: true, CreatedAt: &now, UpdatedAt: &now, IsOutline: true,
		NativeRef: map[string]string{s: s, "file": s}}
	for _, iss := range []Issue{{}, full} {
		if data, _ := json.Marshal(iss); issueJSONBound(iss) < len(data) {
			t.Errorf("bound %d < size %d", issueJSONBound(iss), len(data))
		}
	}
}

// TestIssueBoundDropsAnOversizedNativeRef: native_ref keeps within its
// bounds (keys, and each key's and value's length) or is dropped, named.
func TestIssueBoundDropsAnOversizedNativeRef(t *testing.T) {
	base := Issue{ID: "1", Identifier: "A-1", Title: "t", State: "Todo"}
	ok := base
	ok.NativeRef = map[string]string{"file": "A-1.md"}
	if out, cut, _ := ok.Bound(IssueMaxBytes, nil); len(cut) != 0 || out.NativeRef["file"] != "A-1.md" {
		t.Errorf("a small native_ref was touched: %v %v", out.NativeRef, cut)
	}
	many := map[string]string{}
	for i := range MaxNativeRefKeys + 1 {
		many[string(rune('a'+i))] = "v"
	}
	for name, ref := range map[string]map[string]string{
		"too many keys": many,
		"long value":    {"file": strings.Repeat("x", FieldMaxBytes+1)},
	} {
		iss := base
		iss.NativeRef = ref
		out, cut, _ := iss.Bound(IssueMaxBytes, nil)
		if out.NativeRef != nil || !slices.Contains(cut, "native_ref") {
			t.Errorf("%s: native_ref %v kept, cut %v", name, out.NativeRef, cut)
		}
	}
}
