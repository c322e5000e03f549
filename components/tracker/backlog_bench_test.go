package tracker

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

// BenchmarkBacklog10kLinear: the tracker component polling 10,000 active
// issues with 4 KB descriptions from the fake Linear server, on a real
// embedded bus. Each round is one poll; a stand-in for the scheduler and
// the agent runner (which this package may not import) takes the poll's
// snapshot (outlines, in parts), picks the first issue in dispatch order
// (priority, then creation) and reads its full issue by id, as the runner
// does before its prompt. Figures:
//
//   - first-dispatch-ms: the poll's start → the first issue's full issue in
//     hand (the poll's 200 pages, the snapshot's parts, the refresh by id);
//   - cpu-ms/poll: user+sys CPU of the whole process per poll, the fake
//     server's included (it validates every request against Linear's
//     schema and encodes every page from maps);
//   - peak-rss-MB: the process's peak resident set (VmHWM), the fake
//     server's 10,000 issues included.
//
// server=fake is the package's fake Linear (its CPU dominates);
// server=replay replays pre-encoded pages, so the figures are Symphony's.
func BenchmarkBacklog10kLinear(b *testing.B) {
	issues := benchIssues(pollBenchIssues)
	desc := strings.Repeat("Describe the change in a paragraph of text. ", 4096/44+1)[:4096]
	byID := map[string]map[string]any{}
	for _, iss := range issues {
		iss["description"] = desc
		byID[iss["id"].(string)] = iss
	}
	b.Run("server=fake", func(b *testing.B) {
		f := newFakeLinear(b)
		f.setIssues(issues)
		backlogLinear(b, f.url())
	})
	// The same pages encoded once beforehand and replayed as bytes, and
	// issues by id encoded from the same maps: the figures are then
	// Symphony's, with a minimal server.
	b.Run("server=replay", func(b *testing.B) {
		pages := encodedPages(issues)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Query     string `json:"query"`
				Variables struct {
					After *string  `json:"after"`
					IDs   []string `json:"ids"`
				} `json:"variables"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if strings.Contains(req.Query, "SymphonyIssuesByIDs") {
				var nodes []map[string]any
				for _, id := range req.Variables.IDs {
					if iss, ok := byID[id]; ok {
						nodes = append(nodes, iss)
					}
				}
				writePage(w, nodes, false, "")
				return
			}
			key := "cursor-0"
			if req.Variables.After != nil {
				key = *req.Variables.After
			}
			page, ok := pages[key]
			if !ok {
				http.Error(w, "unknown cursor", http.StatusBadRequest)
				return
			}
			_, _ = w.Write(page)
		}))
		b.Cleanup(srv.Close)
		backlogLinear(b, srv.URL+"/graphql")
	})
}

func backlogLinear(b *testing.B, endpoint string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bs, err := bus.Open(ctx, bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = bs.Close(context.Background()) }()
	snaps, err := bus.Subscribe(ctx, bs, bus.TrackerSnapshots)
	if err != nil {
		b.Fatal(err)
	}
	comp, err := New(Options{Bus: bs, HTTPClient: &http.Client{Timeout: 30 * time.Second}, Env: workflowfile.Env{
		LookupEnv: func(k string) (string, bool) { return testAPIKey, k == "LINEAR_API_KEY" },
	}})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = comp.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	tc := bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "proj-1", Endpoint: endpoint, APIKey: bus.NewSecret("LINEAR_API_KEY", "")},
		ActiveStates: []string{"Todo", "In Progress"}, TerminalStates: []string{"Done", "Canceled"}}
	// Polls follow each other closely: the next starts 100 ms after one ends.
	if _, err := bus.Put(ctx, bs, bus.ConfigCurrent, bus.ConfigSnapshot{Version: 1, Checksum: "c", Path: "/x/WORKFLOW.md",
		Config: bus.Config{Tracker: tc, Polling: bus.PollingConfig{IntervalMS: 100}}}); err != nil {
		b.Fatal(err)
	}
	round := func() (time.Duration, time.Duration) {
		var s bus.CandidateSnapshot
		select {
		case m := <-snaps.C():
			s = m.Data
		case <-time.After(2 * time.Minute):
			b.Fatal("no snapshot")
		}
		if len(s.Issues) != pollBenchIssues || s.Issues[0].Description != nil {
			b.Fatalf("snapshot of %d issues (outlines: %v)", len(s.Issues), s.Issues[0].IsOutline)
		}
		rank := func(p *int) int {
			if p == nil {
				return 5
			}
			return *p
		}
		first := slices.MinFunc(s.Issues, func(x, y bus.Issue) int {
			return cmp.Or(cmp.Compare(rank(x.Priority), rank(y.Priority)), x.CreatedAt.Compare(*y.CreatedAt))
		})
		list, err := bus.Ask(ctx, bs, bus.TrackerRefresh, bus.IssuesByIDs{IDs: []string{first.ID}})
		if err != nil || len(list.Issues) != 1 || len(*list.Issues[0].Description) != 4096 {
			b.Fatalf("full issue: %v", err)
		}
		return time.Since(s.FetchedAt), time.Duration(s.DurationMS) * time.Millisecond
	}
	round() // the first poll warms the connection
	cpu0 := cpuTime(b)
	var firsts []time.Duration
	b.ResetTimer()
	for b.Loop() {
		d, _ := round()
		firsts = append(firsts, d)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	slices.Sort(firsts)
	b.ReportMetric(float64(firsts[len(firsts)/2].Microseconds())/1000, "first-dispatch-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(firsts)), "cpu-ms/poll")
	b.ReportMetric(peakRSSMB(b), "peak-rss-MB")
}

// peakRSSMB is this process's peak resident set (VmHWM) in MiB.
func peakRSSMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
