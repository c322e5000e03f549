package tracker

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
)

// TestClientsRefusePlainHTTPToAnotherHost: a config that reaches the
// tracker without the loader's check (built by hand) still does not send
// the key in clear: both clients refuse http:// to a host that is not a
// loopback one, and take it to a loopback host or https anywhere. No
// request is made.
func TestClientsRefusePlainHTTPToAnotherHost(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	build := map[string]func(endpoint string) error{
		"linear": func(ep string) error {
			_, err := newLinear(bus.TrackerConfig{Kind: bus.TrackerLinear, Provider: bus.TrackerProvider{ProjectSlug: "p", Endpoint: ep}}, testAPIKey, nil, log)
			return err
		},
		"github": func(ep string) error {
			_, err := newGitHub(bus.TrackerConfig{Kind: bus.TrackerGitHub, Provider: bus.TrackerProvider{Repo: "acme/app", Endpoint: ep}}, "ghp_k", nil, log)
			return err
		},
	}
	for name, newClient := range build {
		for _, ep := range []string{"http://127.0.0.1:1/x", "http://[::1]:1/x", "http://localhost:1/x", "https://example.com/x"} {
			if err := newClient(ep); err != nil {
				t.Errorf("%s refused %s: %v", name, ep, err)
			}
		}
		for _, ep := range []string{"http://example.com/graphql", "http://10.0.0.1:8080/x"} {
			err := newClient(ep)
			class, _ := classOf(err)
			if err == nil || class != bus.TrackerConfigError || !strings.Contains(err.Error(), "tracker.provider.endpoint must use https") {
				t.Errorf("%s with %s: err = %v (class %s), want %s saying https is required", name, ep, err, class, bus.TrackerConfigError)
			}
		}
	}
}
