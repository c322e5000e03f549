package tracker

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestChaosLinearFaults polls a fake Linear that answers 30 % of requests
// with a fault (500, 429 with Retry-After, RATELIMITED, GraphQL errors,
// malformed JSON, broken pagination, a response slower than the client's
// timeout, rarely). Every poll must either return every issue, in order, or fail
// with a classified error — never a partial list, never a panic; a rate
// limit must be honoured (no request before its window ends, and the
// error says how long); once the faults stop, polls succeed.
func TestChaosLinearFaults(t *testing.T) {
	const issues = 120 // three pages
	f := newFakeLinear(t)
	var want []map[string]any
	for i := 1; i <= issues; i++ {
		want = append(want, linearIssue(i, "Todo"))
	}
	f.setIssues(want)

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(7, 11))
	injected := map[string]int{}
	faults := []struct {
		name string
		do   func(w http.ResponseWriter) bool
	}{
		{"500", func(w http.ResponseWriter) bool { http.Error(w, "upstream exploded", 500); return true }},
		{"429", func(w http.ResponseWriter) bool { w.Header().Set("Retry-After", "7"); w.WriteHeader(429); return true }},
		{"RATELIMITED", func(w http.ResponseWriter) bool {
			fmt.Fprint(w, `{"data":null,"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}`)
			return true
		}},
		{"graphql error", func(w http.ResponseWriter) bool {
			fmt.Fprint(w, `{"data":null,"errors":[{"message":"Internal error"}]}`)
			return true
		}},
		{"malformed json", func(w http.ResponseWriter) bool { fmt.Fprint(w, `{"data": {"issues": [`); return true }},
		{"broken pagination", func(w http.ResponseWriter) bool {
			fmt.Fprint(w, `{"data":{"issues":{"nodes":[],"pageInfo":{"hasNextPage":true,"endCursor":null}}}}`)
			return true
		}},
	}
	f.inject = func(w http.ResponseWriter, n int, op string) bool {
		mu.Lock()
		roll, pick, slow := rng.Float64(), rng.IntN(len(faults)), rng.Float64() < 0.005
		mu.Unlock()
		if slow {
			mu.Lock()
			injected["timeout"]++
			mu.Unlock()
			time.Sleep(testHTTPTimeout + 500*time.Millisecond) // the client gives up first
			return false
		}
		if roll >= 0.3 {
			return false
		}
		mu.Lock()
		injected[faults[pick].name]++
		mu.Unlock()
		return faults[pick].do(w)
	}
	logs := &logBuf{}
	l := newTestLinear(t, f, "", logs)
	clock := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }

	outcomes := map[string]int{}
	for range 100 {
		before := len(f.ops())
		got, _, err := l.Candidates(t.Context(), []string{"Todo"})
		if err != nil {
			class, retry := classOf(err)
			outcomes[class]++
			if class == bus.TrackerRateLimited {
				if retry <= 0 {
					t.Fatalf("rate limited without a wait: %v", err)
				}
				// Inside the window nothing is sent.
				clock = clock.Add(retry / 2)
				n := len(f.ops())
				if _, _, err := l.Candidates(t.Context(), []string{"Todo"}); err == nil || len(f.ops()) != n {
					t.Fatalf("a request went out inside the rate-limit window (%v)", err)
				}
				clock = clock.Add(retry)
			}
			if strings.Contains(err.Error(), testAPIKey) {
				t.Fatal("the API key leaked into an error")
			}
			continue
		}
		outcomes["ok"]++
		if len(got) != issues {
			t.Fatalf("a successful poll returned %d issues of %d (after %d requests)", len(got), issues, len(f.ops())-before)
		}
		for i, iss := range got {
			if iss.Identifier != want[i]["identifier"] {
				t.Fatalf("issue %d is %s, want %v: order lost", i, iss.Identifier, want[i]["identifier"])
			}
		}
	}
	if strings.Contains(logs.String(), testAPIKey) {
		t.Error("the API key leaked into the log")
	}
	// Faults stop: the next poll works.
	f.inject = nil
	clock = clock.Add(time.Hour)
	if got, _, err := l.Candidates(t.Context(), []string{"Todo"}); err != nil || len(got) != issues {
		t.Fatalf("after the faults stopped: %d issues, %v", len(got), err)
	}
	if outcomes["ok"] == 0 || len(outcomes) < 4 {
		t.Errorf("the chaos did not exercise enough: %v", outcomes)
	}
	t.Logf("requests %d; faults injected %v; poll outcomes %v", len(f.ops()), injected, outcomes)
}
