package main

import (
	"testing"
	"time"
)

func TestDurationString(t *testing.T) {
	for d, want := range map[Duration]string{
		Duration(30 * 24 * time.Hour): "30d",
		Duration(36 * time.Hour):      "36h0m0s",
		Duration(0):                   "0s",
	} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}
