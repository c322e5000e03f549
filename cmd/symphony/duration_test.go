package main

import (
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
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

func TestDashboardAddressPrecedence(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	for _, c := range []struct {
		flags    Dashboard
		cfg      bus.ServerConfig
		bind     string
		wantPort int
	}{
		{Dashboard{}, bus.ServerConfig{Bind: "127.0.0.1", Port: 4000}, "127.0.0.1", 4000},
		{Dashboard{}, bus.ServerConfig{Bind: "::1", Port: 4100}, "::1", 4100},
		{Dashboard{}, bus.ServerConfig{Port: 0}, "127.0.0.1", 0}, // server.port: 0 asks for a free port
		{Dashboard{Port: num(0)}, bus.ServerConfig{Bind: "127.0.0.1", Port: 4100}, "127.0.0.1", 0},
		{Dashboard{Bind: str("localhost"), Port: num(5000)}, bus.ServerConfig{Bind: "127.0.0.2", Port: 4100}, "localhost", 5000},
	} {
		bind, port := c.flags.address(c.cfg)
		if bind != c.bind || port != c.wantPort {
			t.Errorf("%+v over %+v: %s:%d, want %s:%d", c.flags, c.cfg, bind, port, c.bind, c.wantPort)
		}
	}
}
