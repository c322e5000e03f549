package agentrunner

import (
	"encoding/json"
	"fmt"
	"math"
)

// Stream limits (CONTRACT §5).
const (
	// MaxLineBytes caps one stream-json line; a longer line is dropped
	// (and counted) without being held in memory.
	MaxLineBytes = 10 << 20
	// MaxTextBytes caps the text kept in one turn event.
	MaxTextBytes = 64 << 10
	// MaxRawBytes caps the raw JSON kept for an unknown event.
	MaxRawBytes = 4 << 10
)

// bound cuts text to MaxTextBytes on a rune boundary.
func bound(s string) string { return boundTo(s, MaxTextBytes) }

// boundTo cuts s to max bytes on a rune boundary, saying how much it cut.
func boundTo(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + fmt.Sprintf("… [%d bytes cut]", len(s)-n)
}

// MaxNameBytes bounds the short strings of an agent event (a type, a tool's
// name or id, a session id), which a broken or hostile agent could make
// megabytes long: each agent event stays small enough to store and follow.
// maxDenials bounds the permission denials kept from one result.
const (
	MaxNameBytes = 1 << 10
	maxDenials   = 100
)

// boundName cuts a name to MaxNameBytes, as bound does text.
func boundName(s string) string { return boundTo(s, MaxNameBytes) }

// boundRaw keeps raw JSON only when it is small enough to stay valid.
func boundRaw(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxRawBytes || !json.Valid(raw) {
		b, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(raw)})
		return b
	}
	return append(json.RawMessage(nil), raw...)
}

// MaxTurnUSD bounds the cost one turn's report may claim: a larger figure
// (or an infinite one) is read as this much, a negative one as none. The
// agent's figures feed the budget caps, so a report can neither widen the
// next turn's --max-budget-usd (a negative cost) nor poison the sums (an
// overflowing one); a million dollars is far above any real turn and far
// below where float sums lose their cents.
const MaxTurnUSD = 1e6

// clampUSD is an agent's cost figure within [0, MaxTurnUSD]; nil stays nil.
func clampUSD(v *float64) *float64 {
	if v == nil {
		return nil
	}
	c := *v
	switch {
	case math.IsNaN(c) || c < 0:
		c = 0
	case c > MaxTurnUSD:
		c = MaxTurnUSD
	}
	return &c
}
