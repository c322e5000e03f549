package ui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// TestAPIStateScheduler: with the embedded server (no lease) the state has
// no scheduler; with a lease it names the active process, its fencing
// token and the standbys heard of lately (not one silent for three TTLs).
func TestAPIStateScheduler(t *testing.T) {
	h := newHarness(t)
	if _, body := get(t, h.url+"/api/v1/state"); strings.Contains(body, `"scheduler"`) {
		t.Fatalf("a scheduler without a lease:\n%s", body)
	}
	now := time.Now().UTC()
	if _, err := bus.Put(t.Context(), h.b, bus.SchedulerLease, bus.LeaseState{Holder: "sched-a", Token: 3, TTLMS: 10000, At: now}); err != nil {
		t.Fatal(err)
	}
	for name, seen := range map[string]time.Time{"sched-b": now, "sched-gone": now.Add(-time.Hour)} {
		k, _ := bus.Standbys.Key(name)
		if _, err := bus.Put(t.Context(), h.b, k, bus.StandbyState{Name: name, Since: now.Add(-time.Minute), SeenAt: seen, TTLMS: 10000}); err != nil {
			t.Fatal(err)
		}
	}
	_, body := get(t, h.url+"/api/v1/state")
	var st struct {
		Scheduler *struct {
			Active   string `json:"active"`
			Fence    uint64 `json:"fence"`
			TTLMS    int64  `json:"ttl_ms"`
			Standbys []struct {
				Name string `json:"name"`
			} `json:"standbys"`
		} `json:"scheduler"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	sc := st.Scheduler
	if sc == nil || sc.Active != "sched-a" || sc.Fence != 3 || sc.TTLMS != 10000 || len(sc.Standbys) != 1 || sc.Standbys[0].Name != "sched-b" {
		t.Fatalf("scheduler %+v, want sched-a with fence 3 and the one live standby sched-b\n%s", sc, body)
	}
}
