package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestStartupGC: the collector is off while the start runs (bounded by
// startupHeapLimit) and at defaultGCPercent, with the earlier memory limit
// back, once the start is over; ending the start twice changes nothing.
func TestStartupGC(t *testing.T) {
	gcBefore := debug.SetGCPercent(100)
	limitBefore := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gcBefore); debug.SetMemoryLimit(limitBefore) })

	end := startupGC()
	if gc := debug.SetGCPercent(-1); gc != -1 {
		t.Errorf("GOGC during the start: %d, want -1 (off)", gc)
	}
	if limit := debug.SetMemoryLimit(-1); limit != startupHeapLimit {
		t.Errorf("memory limit during the start: %d, want %d", limit, startupHeapLimit)
	}
	end()
	end()
	if gc := debug.SetGCPercent(-1); gc != defaultGCPercent {
		t.Errorf("GOGC after the start: %d, want %d", gc, defaultGCPercent)
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		t.Errorf("memory limit after the start: %d, want none (%d)", limit, int64(math.MaxInt64))
	}
}
