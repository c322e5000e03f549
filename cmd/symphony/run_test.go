package main

import (
	"runtime/debug"
	"testing"
)

// TestStartupGC: the collector's target is startupGCPercent while the
// start runs and defaultGCPercent once it is over; ending the start twice
// changes nothing.
func TestStartupGC(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(debug.SetGCPercent(100)) })
	end := startupGC()
	if gc := debug.SetGCPercent(startupGCPercent); gc != startupGCPercent {
		t.Errorf("GOGC during the start: %d, want %d", gc, startupGCPercent)
	}
	end()
	end()
	if gc := debug.SetGCPercent(defaultGCPercent); gc != defaultGCPercent {
		t.Errorf("GOGC after the start: %d, want %d", gc, defaultGCPercent)
	}
}
