package shellrun

import (
	"fmt"
	"strings"
	"testing"
)

// TestCappedKeepsHeadAndTail: however the output arrives, what is kept is
// exactly its start and its end, with the count of what is between.
func TestCappedKeepsHeadAndTail(t *testing.T) {
	var all strings.Builder
	for i := 0; all.Len() < 3*MaxOutput; i++ {
		fmt.Fprintf(&all, "line %d\n", i)
	}
	full := all.String()
	for _, chunk := range []int{1, 7, 4096, keepTail - 1, keepTail, keepTail + 1, len(full)} {
		var c Capped
		for rest := full; len(rest) > 0; {
			k := min(chunk, len(rest))
			if n, err := c.Write([]byte(rest[:k])); n != k || err != nil {
				t.Fatalf("write: %d %v", n, err)
			}
			rest = rest[k:]
		}
		want := fmt.Sprintf("%s\n[… %d bytes not kept]\n%s", full[:keepHead], len(full)-MaxOutput, full[len(full)-keepTail:])
		if got := c.String(); got != want {
			t.Errorf("chunks of %d: kept %d bytes, not the head and tail of the output", chunk, len(got))
		}
	}
	var short Capped
	_, _ = short.Write([]byte("small\n"))
	if got := short.String(); got != "small\n" {
		t.Errorf("short output = %q", got)
	}
}
