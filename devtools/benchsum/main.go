// Command benchsum reads `go test -bench` output (several -count runs) and
// prints the summary table of BENCHMARKS.md: for every figure issue #10
// sets a target for, the median of the runs, the target and whether it is
// met, with a few related figures that have no target of their own; then
// the median of every other reported metric. `go tool task
// bench` pipes its run through it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// target is one figure with a goal.
type target struct {
	figure string
	bench  string // benchmark name without the -GOMAXPROCS suffix
	metric string
	// scale turns the metric into unit (ns/op into ms, say); 0 means 1.
	scale     float64
	unit      string
	atMost    bool // the figure must be ≤ goal (else ≥ goal)
	goal      float64
	goalLabel string // "" for a figure shown beside a target, without one
}

// targets are the figures issues #10 and #19 set goals for, in the units of the
// goals, and beside some of them a related figure without a goal (issue
// #22's codex workload beside claude's).
func targets() []target {
	return []target{
		{"start → /healthz 200", "BenchmarkStartToReady", "start-ms", 0, "ms", true, 15, "≤ 15 ms"},
		{"idle RSS", "BenchmarkStartToReady", "idle-rss-MB", 0, "MB", true, 20, "≤ 20 MB"},
		{"50×200 workload: peak RSS", "BenchmarkWorkload50x200", "peak-rss-MB", 0, "MB", true, 60, "≤ 60 MB"},
		{"50×200 workload: daemon CPU", "BenchmarkWorkload50x200", "cpu-s", 0, "s", true, 2.0, "≤ 2.0 s"},
		{"50×200 workload: events lost", "BenchmarkWorkload50x200", "events-lost", 0, "", true, 0, "0"},
		{"50×200 workload: issues dispatched twice", "BenchmarkWorkload50x200", "double-dispatch", 0, "", true, 0, "0"},
		// Issue #22: the same workload with codex app-server as the agent,
		// beside claude's figures (no target of its own for the costs).
		{"50×200 workload, codex app-server: peak RSS (no target: beside claude's)", "BenchmarkWorkload50x200Codex", "peak-rss-MB", 0, "MB", true, 0, ""},
		{"50×200 workload, codex app-server: daemon CPU (no target: beside claude's)", "BenchmarkWorkload50x200Codex", "cpu-s", 0, "s", true, 0, ""},
		{"50×200 workload, codex app-server: events lost", "BenchmarkWorkload50x200Codex", "events-lost", 0, "", true, 0, "0"},
		{"50×200 workload, codex app-server: issues dispatched twice", "BenchmarkWorkload50x200Codex", "double-dispatch", 0, "", true, 0, "0"},
		{"dispatch after refresh → agent process started, p50", "BenchmarkDispatchLatency", "dispatch-p50-ms", 0, "ms", true, 5, "≤ 5 ms"},
		{"dispatch after refresh → agent's main, p50 (no target: adds the agent's own start)", "BenchmarkDispatchLatency", "main-p50-ms", 0, "ms", true, 0, ""},
		{"pipeline, 100 flooding agents", "BenchmarkPipeline/agents=100", "events/s", 0, "events/s", false, 50000, "≥ 50,000 events/s"},
		{"pipeline as a share of raw JetStream", "BenchmarkPipeline/agents=100", "%-of-raw", 0, "%", false, 50, "≥ 50 %"},
		{"the same 100 flooding agents with no Symphony, lines read (no target: the machine's ceiling)", "BenchmarkPipelineAgentsAlone", "events/s", 0, "events/s", false, 0, ""},
		{"agent line → SSE client, p99, 100 agents × 200 events/s", "BenchmarkPipelineLatency", "p99-ms", 0, "ms", true, 20, "< 20 ms"},
		{"the same 100 agents with no Symphony, p99 line written → read (no target: the machine's floor)", "BenchmarkPipelineLatencyAgentsAlone", "p99-ms", 0, "ms", true, 0, ""},
		{"Linear poll of 10,000 issues, adapter CPU", "BenchmarkLinearPoll10k/server=replay", "cpu-ms/poll", 0, "ms", true, 1000, "< 1 s"},
		// Issue #19, item 8: a backlog of 10,000 active issues with 4 KB
		// descriptions dispatches (targets proposed with the fix).
		{"backlog 10,000 × 4 KB, files: poll start → first agent's turn", "BenchmarkBacklog10k", "first-dispatch-ms", 0, "ms", true, 3000, "≤ 3 s"},
		{"backlog 10,000 × 4 KB, files: CPU per poll", "BenchmarkBacklog10k", "cpu-ms/poll", 0, "ms", true, 1000, "≤ 1 s"},
		{"backlog 10,000 × 4 KB, files: peak RSS", "BenchmarkBacklog10k", "peak-rss-MB", 0, "MB", true, 300, "≤ 300 MB"},
		{"backlog 10,000 × 4 KB, Linear (replayed pages): poll start → first full issue", "BenchmarkBacklog10kLinear/server=replay", "first-dispatch-ms", 0, "ms", true, 5000, "≤ 5 s"},
		{"backlog 10,000 × 4 KB, Linear (replayed pages): CPU per poll", "BenchmarkBacklog10kLinear/server=replay", "cpu-ms/poll", 0, "ms", true, 2000, "≤ 2 s"},
		{"backlog 10,000 × 4 KB, Linear (replayed pages): peak RSS", "BenchmarkBacklog10kLinear/server=replay", "peak-rss-MB", 0, "MB", true, 400, "≤ 400 MB"},
		{"the same on the fake Linear, poll start → first full issue (no target: the fake validates and encodes every page)", "BenchmarkBacklog10kLinear/server=fake", "first-dispatch-ms", 0, "ms", true, 0, ""},
		{"list 10,000 runs", "BenchmarkRunsList10k", "ms/list", 0, "ms", true, 100, "< 100 ms"},
		{"replay a 100,000-event run", "BenchmarkReplay100k", "events/s", 0, "events/s", false, 200000, "≥ 200,000 events/s"},
		{"restart with 1 GiB of history", "BenchmarkRestart1GiB/history=fresh/cache=warm", "restart-ms", 0, "ms", true, 2000, "< 2 s"},
		{"overview with 1,000 runs", "BenchmarkOverview/runs=1000", "ns/op", 1e-6, "ms", true, 100, "< 100 ms"},
	}
}

// lineRE matches a result line: name, iterations, then value/unit pairs.
var lineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// samples holds every value seen, by benchmark then metric.
type samples map[string]map[string][]float64

func read(r io.Reader) (samples, []string, error) {
	s := samples{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name, fields := m[1], strings.Fields(m[2])
		if s[name] == nil {
			s[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			s[name][fields[i+1]] = append(s[name][fields[i+1]], v)
		}
	}
	return s, order, sc.Err()
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func main() {
	s, order, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsum:", err)
		os.Exit(1)
	}
	summarize(os.Stdout, s, order)
}

// summarize writes the target table, then every metric's median.
func summarize(w io.Writer, s samples, order []string) {
	fmt.Fprintln(w, "| figure | target | median | runs | status |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	missed, goals := 0, 0
	for _, t := range targets() {
		label := t.goalLabel
		if label == "" {
			label = "—"
		} else {
			goals++
		}
		v := s[t.bench][t.metric]
		if len(v) == 0 {
			fmt.Fprintf(w, "| %s | %s | not measured | 0 | — |\n", t.figure, label)
			continue
		}
		m := median(v)
		if t.scale != 0 {
			m *= t.scale
		}
		if t.goalLabel == "" {
			fmt.Fprintf(w, "| %s | — | %s %s | %d | — |\n", t.figure, format(m), t.unit, len(v))
			continue
		}
		ok := m >= t.goal
		if t.atMost {
			ok = m <= t.goal
		}
		status := "met"
		if !ok {
			status, missed = "missed", missed+1
		}
		fmt.Fprintf(w, "| %s | %s | %s %s | %d | %s |\n", t.figure, t.goalLabel, format(m), t.unit, len(v), status)
	}
	fmt.Fprintf(w, "\n%d of %d targets missed\n\nEvery metric (median of the runs):\n", missed, goals)
	for _, name := range order {
		metrics := make([]string, 0, len(s[name]))
		for k := range s[name] {
			metrics = append(metrics, k)
		}
		slices.Sort(metrics)
		var b strings.Builder
		for _, k := range metrics {
			fmt.Fprintf(&b, "  %s %s", format(median(s[name][k])), k)
		}
		fmt.Fprintf(w, "%-58s%s\n", name, b.String())
	}
}
