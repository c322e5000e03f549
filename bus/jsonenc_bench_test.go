package bus

import (
	"strings"
	"testing"
	"time"
)

func BenchmarkTurnEventAppendJSON(b *testing.B) {
	e := TurnEvent{RunID: "run-abc", Turn: 1, Seq: 42, At: time.Now().UTC(), Kind: TurnText, SessionID: "sess-1234", Text: strings.Repeat("lorem ipsum dolor sit amet, ", 10)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := marshal(e); err != nil {
			b.Fatal(err)
		}
	}
}
