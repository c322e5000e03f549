package duration

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ok := map[string]time.Duration{
		"30d":    30 * 24 * time.Hour,
		"1d12h":  36 * time.Hour,
		"12h":    12 * time.Hour,
		"90m":    90 * time.Minute,
		"10s":    10 * time.Second,
		"1.5d":   36 * time.Hour,
		"250ms":  250 * time.Millisecond,
		"0":      0,
		"1h30m":  90 * time.Minute,
		"2d3h4m": 2*24*time.Hour + 3*time.Hour + 4*time.Minute,
	}
	for in, want := range ok {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3x", "d", "30", "1.2.3h", "h1", "30 d", "-", "1e3d", "99999999999d", "-2h", "+1d", "-0"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"30d", "1d12h", "3x", "", "-1.5d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever parses as a plain Go duration must parse the same here.
		if g, gerr := time.ParseDuration(s); gerr == nil && g != d && s != "0" {
			t.Errorf("Parse(%q) = %v, time.ParseDuration = %v", s, d, g)
		}
	})
}
