package ui

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// apiScheduler is who schedules on a NATS cluster (`symphony run --nats`):
// the lease's holder and fencing token, and the processes standing by.
type apiScheduler struct {
	Active    string       `json:"active"`
	Fence     uint64       `json:"fence"`
	TTLMS     int64        `json:"ttl_ms"`
	RenewedAt time.Time    `json:"renewed_at"`
	Released  bool         `json:"released,omitempty"`
	Standbys  []apiStandby `json:"standbys"`
}

type apiStandby struct {
	Name   string    `json:"name"`
	Since  time.Time `json:"since"`
	SeenAt time.Time `json:"seen_at"`
}

// clusterReadTimeout bounds the two reads of schedulerOf: the state must
// answer even when the cluster is slow.
const clusterReadTimeout = time.Second

// schedulerOf reads the scheduler lease and the standbys' entries; nil
// when there is no lease (the embedded server) or it cannot be read. A
// standby not heard of for three of its TTLs is left out (it died
// without removing its entry); the times are the writers' clocks.
func (s *Server) schedulerOf(ctx context.Context) *apiScheduler {
	if s.opts.Bus == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, clusterReadTimeout)
	defer cancel()
	l, err := bus.Get(ctx, s.opts.Bus, bus.SchedulerLease)
	if err != nil {
		return nil
	}
	out := &apiScheduler{Active: l.Value.Holder, Fence: l.Value.Token, TTLMS: l.Value.TTLMS, RenewedAt: l.Value.At,
		Released: l.Value.Released, Standbys: []apiStandby{}}
	sbs, err := bus.All(ctx, s.opts.Bus, bus.Standbys)
	if err != nil {
		return out
	}
	now := s.opts.Now()
	for _, sb := range sbs {
		if now.Sub(sb.SeenAt) > 3*time.Duration(sb.TTLMS)*time.Millisecond {
			continue
		}
		out.Standbys = append(out.Standbys, apiStandby{Name: sb.Name, Since: sb.Since, SeenAt: sb.SeenAt})
	}
	slices.SortFunc(out.Standbys, func(a, b apiStandby) int { return strings.Compare(a.Name, b.Name) })
	return out
}
