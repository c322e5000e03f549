package workflowfile

import (
	"errors"
	"strings"
	"testing"
)

// TestPlainHTTPOnlyToLoopback: the Linear and GitHub endpoints (and
// GitHub's api_url spelling) take http:// only to a loopback host; any
// other host is refused with an error that names the key and says https
// is required, and https:// goes anywhere.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": ghToken, "LINEAR_API_KEY": "lin_api_key"}
	linear := func(endpoint string) string {
		return "---\ntracker:\n  kind: linear\n  provider:\n    project_slug: p\n    endpoint: " + endpoint + "\n---\nWork.\n"
	}
	github := func(key string) func(string) string {
		return func(endpoint string) string {
			return githubFront("    repo: acme/app\n    "+key+": "+endpoint+"\n", "")
		}
	}
	trackers := []struct {
		name, key string
		front     func(string) string
	}{
		{"linear", "tracker.provider.endpoint", linear},
		{"github", "tracker.provider.endpoint", github("endpoint")},
		{"github api_url", "tracker.provider.api_url", github("api_url")},
	}
	allowed := []string{
		"http://127.0.0.1:8080/x", "http://127.3.4.5:1/x", "http://[::1]:9999/x", "http://localhost:4000/x", "http://LocalHost./x",
		"http://[::ffff:127.0.0.1]:80/x", "https://example.com/x", "https://10.1.2.3:8443/x", "https://[2001:db8::1]/x", "HTTP://127.0.0.1/x",
	}
	refused := []string{
		"http://example.com/graphql", "http://10.0.0.1:8080/x", "http://[2001:db8::1]:80/x", "http://0.0.0.0:80/x", "http://128.0.0.1/x",
		"http://localhost.example.com/x", "http://api.localhost/x", "http://[::1%25lo]:80/x", "HTTP://example.com/x",
	}
	for _, tr := range trackers {
		for _, ep := range allowed {
			t.Run(tr.name+" "+ep, func(t *testing.T) {
				r, err := parse(t, tr.front(ep), env)
				if err != nil {
					t.Fatalf("%s refused: %v", ep, err)
				}
				if got := r.Config.Tracker.Provider.Endpoint; !strings.EqualFold(strings.TrimSuffix(got, "/x"), strings.TrimSuffix(ep, "/x")) {
					t.Errorf("endpoint %q, want %q", got, ep)
				}
			})
		}
		for _, ep := range refused {
			t.Run(tr.name+" "+ep, func(t *testing.T) {
				_, err := parse(t, tr.front(ep), env)
				var we *Error
				if !errors.As(err, &we) || we.Class != ClassConfig || we.Key != tr.key || !strings.Contains(we.Message, "must use https") ||
					!strings.Contains(we.Message, "loopback") || !strings.Contains(err.Error(), tr.key) {
					t.Fatalf("err = %v, want %s on %s saying https is required", err, ClassConfig, tr.key)
				}
			})
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.255.255.254": true, "::1": true, "localhost": true, "LOCALHOST": true, "localhost.": true,
		"": false, "0.0.0.0": false, "::": false, "example.com": false, "localhost.localdomain": false, "x.localhost": false,
		"::1%lo": false, "127.0.0.1.nip.io": false, "192.168.1.1": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
