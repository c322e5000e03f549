package ui

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// filledModel is a model with n finished runs and 10 running ones, as a
// busy instance's dashboard sees it.
func filledModel(n int) *Model {
	m := NewModel()
	now := time.Now()
	for i := range n + 10 {
		started := now.Add(-time.Duration(i) * time.Minute)
		s := bus.RunSummary{RunID: fmt.Sprintf("RUN-%05d", i), Issue: bus.IssueRef{ID: fmt.Sprintf("id-%d", i%300), Identifier: fmt.Sprintf("ENG-%d", i%300), Title: "Fix the <flaky> test number " + fmt.Sprint(i), State: "In Progress"},
			Status: "running", Started: started, Turns: 3, Usage: bus.Usage{InputTokens: 1200, OutputTokens: 800}, Workspace: "/ws/x"}
		if i >= 10 {
			end := started.Add(30 * time.Second)
			s.Status, s.Ended, s.Error = bus.RunSucceeded, &end, ""
			if i%7 == 0 {
				s.Status, s.Error = bus.RunFailed, "agent exited with status 1"
			}
			c := 0.12
			s.CostUSD = &c
		}
		m.PutRun(s)
	}
	for i := range 20 {
		id := fmt.Sprintf("id-r%d", i)
		m.SetRetry(id, &bus.RetryEntry{IssueID: id, Identifier: fmt.Sprintf("ENG-R%d", i), Attempt: 2, DueAt: now.Add(time.Minute), Error: "no available orchestrator slots"})
	}
	m.SetReady()
	return m
}

// BenchmarkOverview renders the overview page of an instance with 1,000
// recent runs, server side (target: under 100 ms).
func BenchmarkOverview(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			s := &Server{model: filledModel(n), opts: Options{Now: time.Now}}
			b.ReportAllocs()
			var size int
			for b.Loop() {
				var buf bytes.Buffer
				if err := overviewPage(s.view(recentRuns), "").Render(context.Background(), &buf); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}

// BenchmarkRunsPage renders the runs page listing all 1,000 runs.
func BenchmarkRunsPage(b *testing.B) {
	s := &Server{model: filledModel(1000), opts: Options{Now: time.Now}, metrics: newMetrics(NewModel())}
	s.handler = s.routes()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/runs", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

func TestOverviewWithManyRuns(t *testing.T) {
	s := &Server{model: filledModel(1000), opts: Options{Now: time.Now}}
	var buf bytes.Buffer
	if err := overviewPage(s.view(recentRuns), "").Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	v := s.view(recentRuns)
	if v.Totals.Runs != 1010 || len(v.Running) != 10 || len(v.Recent) != recentRuns || v.Totals.Retrying != 20 {
		t.Fatalf("totals %+v running %d recent %d", v.Totals, len(v.Running), len(v.Recent))
	}
	if !bytes.Contains(buf.Bytes(), []byte("RUN-00010")) || bytes.Contains(buf.Bytes(), []byte("<flaky>")) {
		t.Fatal("overview content wrong or unescaped")
	}
}
