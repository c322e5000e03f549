package main

import (
	"strings"
	"testing"
)

func TestSummaryTakesMediansAndJudgesTargets(t *testing.T) {
	in := `goos: linux
BenchmarkStartToReady-2   	1	100 ns/op	12.0 start-ms	30 idle-rss-MB
BenchmarkStartToReady-2   	1	100 ns/op	40.0 start-ms	10 idle-rss-MB
BenchmarkStartToReady-2   	1	100 ns/op	9.0 start-ms	25 idle-rss-MB
BenchmarkOverview/runs=1000-2 	20	2500000 ns/op
BenchmarkOverview/runs=1000-2 	20	3500000 ns/op
BenchmarkDispatchLatency-2 	1	400000000 ns/op	4.2 dispatch-p50-ms	6.0 dispatch-p99-ms	12.5 main-p50-ms	15.0 main-p99-ms	7.4 exec-ms
BenchmarkDispatchLatency-2 	1	400000000 ns/op	5.4 dispatch-p50-ms	7.0 dispatch-p99-ms	13.5 main-p50-ms	16.0 main-p99-ms	7.6 exec-ms
BenchmarkDispatchLatency-2 	1	400000000 ns/op	4.6 dispatch-p50-ms	6.5 dispatch-p99-ms	12.9 main-p50-ms	15.5 main-p99-ms	7.5 exec-ms
BenchmarkWorkload50x200Codex-2 	1	5853739740 ns/op	1.66 cpu-s	0 double-dispatch	0 double-end	0 events-lost	0 failed-runs	68.3 hwm-rss-MB	36.1 peak-anon-MB	68.3 peak-rss-MB	3.07 wall-s
BenchmarkWorkload50x200Codex-2 	1	5853739740 ns/op	1.70 cpu-s	0 double-dispatch	0 double-end	0 events-lost	0 failed-runs	66.1 hwm-rss-MB	36.1 peak-anon-MB	66.1 peak-rss-MB	3.07 wall-s
BenchmarkWorkload50x200Codex-2 	1	5853739740 ns/op	1.62 cpu-s	0 double-dispatch	0 double-end	2 events-lost	0 failed-runs	70.0 hwm-rss-MB	36.1 peak-anon-MB	70.0 peak-rss-MB	3.07 wall-s
PASS
`
	s, order, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 4 || len(s["BenchmarkStartToReady"]["start-ms"]) != 3 {
		t.Fatalf("read %v %v", order, s)
	}
	var b strings.Builder
	summarize(&b, s, order)
	out := b.String()
	for _, want := range []string{
		"| start → /healthz 200 | ≤ 15 ms | 12 ms | 3 | met |",
		"| idle RSS | ≤ 20 MB | 25 MB | 3 | missed |",
		"| overview with 1,000 runs | < 100 ms | 3 ms | 2 | met |",
		"| list 10,000 runs | < 100 ms | not measured | 0 | — |",
		// The target is the process start; the figure to the agent's main
		// is shown beside it, without a target, and not counted.
		"| dispatch after refresh → agent process started, p50 | ≤ 5 ms | 4.6 ms | 3 | met |",
		"| dispatch after refresh → agent's main, p50 (no target: adds the agent's own start) | — | 12.9 ms | 3 | — |",
		// Codex's workload beside claude's: its costs without a target,
		// its correctness with claude's.
		"| 50×200 workload, codex app-server: peak RSS (no target: beside claude's) | — | 68.3 MB | 3 | — |",
		"| 50×200 workload, codex app-server: daemon CPU (no target: beside claude's) | — | 1.66 s | 3 | — |",
		"| 50×200 workload, codex app-server: events lost | 0 | 0  | 3 | met |",
		"1 of 23 targets missed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
