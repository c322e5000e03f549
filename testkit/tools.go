package testkit

import (
	"fmt"
	"os"
	"path/filepath"
)

// ToolPath finds a real client the tests run (the claude and codex CLIs,
// the MCP Inspector): the path in $envVar when it is set, else
// <module root>/.tools/<dir>/node_modules/.bin/<bin>, where `go tool task
// tools` installs it, the module root being the nearest directory above
// the working directory that holds go.mod. The error names what is
// missing and ends with hint (how to install it): a real-client test
// fails with it, it never skips.
func ToolPath(what, envVar, dir, bin, hint string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: $%s=%s: %w; %s", what, envVar, p, err, hint)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%s: %w; %s", what, err, hint)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", fmt.Errorf("%s: no go.mod above %s; %s", what, wd, hint)
		}
		root = parent
	}
	p := filepath.Join(root, ".tools", dir, "node_modules", ".bin", bin)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s; %s", what, p, hint)
	}
	return p, nil
}
