package secretenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

func gh(key bus.Secret) bus.ConfigSnapshot {
	return bus.ConfigSnapshot{Config: bus.Config{Tracker: bus.TrackerConfig{Kind: bus.TrackerGitHub,
		Provider: bus.TrackerProvider{Repo: "acme/app", APIKey: key}}}}
}

func names(env []string) []string {
	var out []string
	for _, kv := range env {
		n, _, _ := strings.Cut(kv, "=")
		out = append(out, n)
	}
	return out
}

// Every GitHub credential variable goes, and so does any variable holding
// the key's value, however the key was given.
func TestFilterGitHub(t *testing.T) {
	parent := []string{"PATH=/bin", "GITHUB_TOKEN=ghp_SAME", "GH_TOKEN=ghp_OTHER", "GH_ENTERPRISE_TOKEN=x",
		"GITHUB_ENTERPRISE_TOKEN=y", "SYM_GH=ghp_SAME", "COPY=ghp_SAME", "LINEAR_API_KEY=lin", "EMPTY="}
	for _, key := range []bus.Secret{bus.NewSecret("GITHUB_TOKEN", ""), bus.NewSecret("SYM_GH", ""), bus.NewSecret("", "ghp_SAME")} {
		got := names(Filter(gh(key), parent))
		if want := []string{"PATH", "EMPTY"}; !slices.Equal(got, want) {
			t.Errorf("api_key %v: kept %v, want %v", key, got, want)
		}
	}
}

// Under Linear the GitHub names are not the tracker's and stay; the
// key's variable, LINEAR_API_KEY and same-value copies go.
func TestFilterLinear(t *testing.T) {
	parent := []string{"GH_TOKEN=gh", "MY_KEY=lin_1", "LINEAR_API_KEY=lin_2", "COPY=lin_1"}
	snap := bus.ConfigSnapshot{Config: bus.Config{Tracker: bus.TrackerConfig{Kind: bus.TrackerLinear,
		Provider: bus.TrackerProvider{APIKey: bus.NewSecret("MY_KEY", "")}}}}
	if got := names(Filter(snap, parent)); !slices.Equal(got, []string{"GH_TOKEN"}) {
		t.Errorf("kept %v, want [GH_TOKEN]", got)
	}
}

// A literal key that crossed the bus (value dropped) is re-read from the
// workflow file while its checksum holds, and not after it changed.
func TestLiteralReRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "WORKFLOW.md")
	if err := os.WriteFile(path, []byte("---\ntracker:\n  kind: github\n  provider:\n    repo: acme/app\n    api_key: ghp_LITERAL\n---\nwork\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := workflowfile.Load(path, workflowfile.OSEnv())
	if err != nil {
		t.Fatal(err)
	}
	snap := res.Snapshot()
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var crossed bus.ConfigSnapshot
	if err := json.Unmarshal(b, &crossed); err != nil {
		t.Fatal(err)
	}
	if crossed.Config.Tracker.Provider.APIKey.Value() != "" {
		t.Fatal("the literal crossed the bus")
	}
	parent := []string{"PATH=/bin", "STASH=ghp_LITERAL"}
	if got := names(Filter(crossed, parent)); !slices.Equal(got, []string{"PATH"}) {
		t.Errorf("kept %v, want [PATH]", got)
	}
	if err := os.WriteFile(path, []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v := Value(crossed, parent); v != "" {
		t.Errorf("a changed file still gave a key")
	}
}
