package main

import (
	"strconv"
	"time"

	"github.com/alecthomas/kong"

	"github.com/symphony-oss/symphony/internal/duration"
)

// Duration is a time.Duration flag that also accepts days ("30d", "1d12h"),
// which operators use for retention and which time.ParseDuration rejects.
type Duration time.Duration

// Decode implements kong.MapperValue.
func (d *Duration) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
		return err
	}
	v, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String formats the duration with days for whole-day values.
func (d Duration) String() string {
	v := time.Duration(d)
	if v != 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

// ParseDuration is duration.Parse (kept for the flag tests).
func ParseDuration(s string) (time.Duration, error) { return duration.Parse(s) }
