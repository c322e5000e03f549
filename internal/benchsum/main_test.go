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
PASS
`
	s, order, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || len(s["BenchmarkStartToReady"]["start-ms"]) != 3 {
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
		"1 of 15 targets missed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
