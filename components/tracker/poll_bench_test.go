package tracker

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// pollBenchIssues is the size of the project the poll benchmark pages
// through: 200 pages of 50, the most one listing accepts.
const pollBenchIssues = 10000

// benchIssues builds n active issues as Linear returns them; every third
// has labels and every fifth a blocker, so normalization does real work.
func benchIssues(n int) []map[string]any {
	issues := make([]map[string]any, 0, n)
	for i := 1; i <= n; i++ {
		iss := linearIssue(i, []string{"Todo", "In Progress"}[i%2])
		iss["description"] = strings.Repeat("Describe the change in a paragraph of text. ", 6)
		if i%3 == 0 {
			iss["labels"] = map[string]any{"nodes": []any{map[string]any{"name": "Bug"}, map[string]any{"name": " backend "}}}
		}
		if i%5 == 0 {
			iss["inverseRelations"] = map[string]any{"nodes": []any{map[string]any{
				"type":  "blocks",
				"issue": map[string]any{"id": fmt.Sprintf("uuid-b%d", i), "identifier": fmt.Sprintf("SYM-B%d", i), "state": map[string]any{"name": "Done"}},
			}}}
		}
		issues = append(issues, iss)
	}
	return issues
}

// BenchmarkLinearPoll10k measures one Candidates poll of the Linear adapter
// over 10,000 active issues (200 pages). Sub-benchmarks:
//
//   - server=fake: the package's fake Linear server, which validates every
//     request against Linear's schema and encodes each page from maps; its
//     CPU is in the figures (same process).
//   - server=replay: the same pages, encoded once beforehand and replayed as
//     bytes, so the figures are the adapter's (HTTP client, decoding,
//     normalization) plus a minimal handler.
//
// Figures: cpu-ms/poll (user+sys of the whole process, getrusage), wall
// ms/poll and allocs/issue (heap allocations of the process per issue).
// Target: under 1 s of CPU per poll.
func BenchmarkLinearPoll10k(b *testing.B) {
	issues := benchIssues(pollBenchIssues)
	b.Run("server=fake", func(b *testing.B) {
		f := newFakeLinear(b)
		f.setIssues(issues)
		benchPoll(b, f.url())
	})
	b.Run("server=replay", func(b *testing.B) {
		pages := encodedPages(issues)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Variables struct {
					After *string `json:"after"`
				} `json:"variables"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
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
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(page)
		}))
		b.Cleanup(srv.Close)
		benchPoll(b, srv.URL+"/graphql")
	})
}

func benchPoll(b *testing.B, endpoint string) {
	cfg := bus.TrackerConfig{
		Kind:           bus.TrackerLinear,
		Provider:       bus.TrackerProvider{ProjectSlug: "proj-1", Endpoint: endpoint},
		TerminalStates: []string{"Done", "Canceled"},
	}
	l, err := newLinear(cfg, testAPIKey, &http.Client{Timeout: 30 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	states := []string{"Todo", "In Progress"}
	poll := func() {
		got, dropped, err := l.Candidates(b.Context(), states)
		if err != nil || dropped != 0 || len(got) != pollBenchIssues {
			b.Fatalf("poll: %d issues, %d dropped, %v", len(got), dropped, err)
		}
	}
	poll() // warm the connection and the schema cache
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		poll()
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	runtime.ReadMemStats(&ms1)
	n := float64(b.N)
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/poll")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/n, "ms/poll")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n/pollBenchIssues, "allocs/issue")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/n/pollBenchIssues, "B/issue")
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// encodedPages encodes the issues' listing pages once, keyed by the cursor
// that asks for each ("cursor-0" first), for a server that replays bytes.
func encodedPages(issues []map[string]any) map[string][]byte {
	pages := map[string][]byte{}
	for start := 0; start < len(issues); start += linearPageSize {
		end := min(start+linearPageSize, len(issues))
		rec := httptest.NewRecorder()
		writePage(rec, issues[start:end], end < len(issues), fmt.Sprintf("cursor-%d", end))
		pages["cursor-"+strconv.Itoa(start)] = rec.Body.Bytes()
	}
	return pages
}
