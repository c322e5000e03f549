// Package duration parses the durations operators write: Go durations
// ("90m", "1h30m", "10s") and days ("30d", "1d12h"), which
// time.ParseDuration rejects. Used by the CLI flags and by WORKFLOW.md's
// retention.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse parses a Go duration ("90m", "1h30m", "10s") that may also
// use "d" for 24-hour days ("30d", "1d12h"). Day segments are rewritten as
// hours and the result is handed to time.ParseDuration, so precision and
// overflow behave exactly as for a plain Go duration.
func Parse(s string) (time.Duration, error) {
	hint := "(use e.g. 30d, 12h, 90m, 10s)"
	rest := s
	if rest == "" {
		return 0, fmt.Errorf("invalid duration %q: empty %s", s, hint)
	}
	if rest[0] == '-' || rest[0] == '+' {
		// A negative age would put a cutoff in the future: fail closed.
		return 0, fmt.Errorf("invalid duration %q: must not be signed %s", s, hint)
	}
	if rest == "0" {
		return 0, nil
	}
	var out strings.Builder
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] == '.' || (rest[i] >= '0' && rest[i] <= '9')) {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid duration %q: expected a number at %q %s", s, rest, hint)
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] == '.' || (rest[j] >= '0' && rest[j] <= '9')) {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]
		switch unit {
		case "d":
			days, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: bad number %q", s, num)
			}
			out.WriteString(strconv.FormatFloat(days*24, 'f', -1, 64) + "h")
		case "ns", "us", "µs", "ms", "s", "m", "h":
			out.WriteString(num + unit)
		case "":
			return 0, fmt.Errorf("invalid duration %q: missing unit after %s (use d, h, m, s, ms)", s, num)
		default:
			return 0, fmt.Errorf("invalid duration %q: unknown unit %q (use d, h, m, s, ms)", s, unit)
		}
	}
	d, err := time.ParseDuration(out.String())
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	return d, nil
}
