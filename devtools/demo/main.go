// Command demo runs Symphony end to end on a fresh machine with no
// accounts: the files tracker over the demo issues in testdata/demo, the
// REAL claude CLI (installed by `go tool task tools`), and a local scripted
// model server that makes a small real edit in each workspace and then
// hands the issue to review itself: it calls the files tracker's
// files_set_state tool, which claude reaches through Symphony's MCP server
// (mcp__symphony__files_set_state) and Symphony runs host-side on the
// run's own issue, as an agent moves a Linear issue with linear_graphql.
// It runs one poll (`symphony run --once`), checks the outcome and exits
// non-zero if anything is missing.
//
// Run it with `go tool task demo`. Everything it writes is under
// .symphony-demo/ (git-ignored).
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/symphony-oss/symphony/testkit/mockanthropic"
)

const workflow = `---
# The demo workflow: a folder of Markdown issues, the real claude CLI, a
# scripted local model. Written by devtools/demo; edit freely.
tracker:
  kind: files
  provider:
    path: issues
  active_states: [Todo, In Progress]
  terminal_states: [Done, Cancelled]
polling:
  interval_ms: 2000
workspace:
  root: workspaces
hooks:
  after_create: |
    git init -q . && git config user.email demo@example.invalid && git config user.name "Symphony demo"
agent:
  max_concurrent_agents: 3
  max_turns: 2
claude:
  permission_mode: acceptEdits
  turn_timeout_ms: 120000
---
You are working on {{ issue.identifier }}: {{ issue.title }}.

{{ issue.description }}
{% if attempt %}This is attempt {{ attempt }}.{% endif %}
When the work is done, move the issue to Human Review with the
files_set_state tool.
`

// setState is the files tracker's state tool as claude names it.
const setState = "mcp__symphony__files_set_state"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, ".symphony-demo")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		return err
	}
	srcs, err := filepath.Glob(filepath.Join(root, "testdata", "demo", "issues", "*.md"))
	if err != nil || len(srcs) == 0 {
		return fmt.Errorf("no demo issues in testdata/demo/issues (run from the repository root): %v", err)
	}
	for _, src := range srcs {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(issues, filepath.Base(src)), b, 0o644); err != nil {
			return err
		}
	}
	wf := filepath.Join(dir, "WORKFLOW.md")
	if err := os.WriteFile(wf, []byte(workflow), 0o644); err != nil {
		return err
	}
	cli, err := mockanthropic.CLIPath()
	if err != nil {
		return err
	}

	model := scriptedModel()
	defer model.Close()

	bin := filepath.Join(dir, "bin", "symphony")
	build := exec.Command("go", "build", "-o", bin, "./cmd/symphony")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build symphony: %w", err)
	}

	fmt.Printf("demo: model server %s, claude %s\n", model.URL(), cli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", wf, "--once", "--port", "0")
	cmd.Env = append(os.Environ(), mockanthropic.Env(model.URL(), filepath.Join(dir, "claude-config"))...)
	cmd.Env = append(cmd.Env, "CLAUDE_CLI="+cli)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("symphony run --once: %w", err)
	}

	// Check what happened.
	var problems []string
	fmt.Println("\ndemo: results")
	for _, src := range srcs {
		id := strings.TrimSuffix(filepath.Base(src), ".md")
		b, err := os.ReadFile(filepath.Join(issues, id+".md"))
		if err != nil {
			return err
		}
		state := ""
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "state: "); ok {
				// The files tracker writes the state as a YAML string.
				state = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
		_, werr := os.Stat(filepath.Join(dir, "workspaces", id, "SYMPHONY_DEMO.md"))
		fmt.Printf("  %-8s state=%-13s agent edit=%v\n", id, state, werr == nil)
		if strings.Contains(string(b), "blocked_by") {
			// Blocked by an issue that is not terminal: never dispatched.
			if state != "Todo" || werr == nil {
				problems = append(problems, id+" is blocked and must not run")
			}
			continue
		}
		if state != "Human Review" || werr != nil {
			problems = append(problems, id+" was not worked on and handed to review")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	fmt.Printf("demo: ok — runs are recorded in %s (see the README for `go tool nats` and `symphony runs`)\n", filepath.Join(dir, ".symphony"))
	return nil
}

// scriptedModel is the demo's model server. In each new conversation it
// writes a file named after the issue's workspace, then moves the issue to
// Human Review with the tracker's tool, then says it is done.
func scriptedModel() *mockanthropic.Server {
	return mockanthropic.NewResponder(func(r mockanthropic.Request) mockanthropic.Step {
		switch {
		case !r.ToolResult:
			id := filepath.Base(r.Cwd)
			return mockanthropic.Write("SYMPHONY_DEMO.md", fmt.Sprintf("# %s\n\nHello from the Symphony demo. This file was written by the real claude CLI,\ndriven by a scripted local model, in the workspace of %s.\n", id, id))
		case slices.Contains(r.ToolResultTools, "Write"):
			return mockanthropic.ToolUse(setState, map[string]any{"state": "Human Review"})
		case r.ToolResultError:
			return mockanthropic.Text("I could not hand the issue over: " + r.ToolResultText)
		}
		return mockanthropic.Text("Done: I wrote SYMPHONY_DEMO.md and moved the issue to Human Review.")
	})
}
