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
// DEMO_AGENT=codex runs the same demo with the REAL codex CLI instead
// (`agent.kind: codex`, `codex app-server`, also installed by
// `go tool task tools`) against testkit/mockopenai's scripted Responses
// model: it writes the file with a shell command and calls files_set_state
// as a dynamic tool of its thread, which codex sends back to Symphony over
// its own stdio (no MCP server, no credential). The same issues and the
// same checks; DEMO_AGENT=claude (or unset) is the claude demo.
//
// Run it with `go tool task demo` (or `DEMO_AGENT=codex go tool task demo`).
// Everything it writes is under .symphony-demo/ (git-ignored).
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
	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// demoWorkflow is the demo's WORKFLOW.md for one agent: the same tracker,
// workspace, hooks and prompt, with the agent's name in the header
// comment, agentKind (a line under agent:, or "") and the agent's own
// section.
func demoWorkflow(cli, agentKind, section string) string {
	return `---
# The demo workflow: a folder of Markdown issues, the real ` + cli + ` CLI, a
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
` + agentKind + `  max_concurrent_agents: 3
  max_turns: 2
` + section + `---
You are working on {{ issue.identifier }}: {{ issue.title }}.

{{ issue.description }}
{% if attempt %}This is attempt {{ attempt }}.{% endif %}
When the work is done, move the issue to Human Review with the
files_set_state tool.
`
}

// claudeSection is the demo's claude section.
const claudeSection = "claude:\n  permission_mode: acceptEdits\n  turn_timeout_ms: 120000\n"

// codexSection is the demo's codex section for DEMO_AGENT=codex; command
// is the real CLI's app-server.
func codexSection(command string) string {
	return fmt.Sprintf("codex:\n  command: %q\n  turn_timeout_ms: 120000\n", command)
}

// setState is the files tracker's state tool as claude names it.
const setState = "mcp__symphony__files_set_state"

// codexSetState is the same tool as codex names it: a dynamic tool of the
// thread, called by its own name.
const codexSetState = "files_set_state"

// agentSetup is what differs between the claude and the codex demo.
type agentSetup struct {
	// workflow is the WORKFLOW.md text.
	workflow string
	// env is added to Symphony's environment (the agent inherits it).
	env []string
	// banner is printed before Symphony starts.
	banner string
	// close stops the model server.
	close func()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// setupAgent starts the scripted model for the agent DEMO_AGENT names.
func setupAgent(dir string) (agentSetup, error) {
	switch kind := os.Getenv("DEMO_AGENT"); kind {
	case "", "claude":
		return setupClaude(dir)
	case "codex":
		return setupCodex(dir)
	default:
		return agentSetup{}, fmt.Errorf("DEMO_AGENT=%q: want claude (the default) or codex", kind)
	}
}

func setupClaude(dir string) (agentSetup, error) {
	cli, err := mockanthropic.CLIPath()
	if err != nil {
		return agentSetup{}, err
	}
	model := scriptedModel()
	env := append(mockanthropic.Env(model.URL(), filepath.Join(dir, "claude-config")), "CLAUDE_CLI="+cli)
	return agentSetup{
		workflow: demoWorkflow("claude", "", claudeSection),
		env:      env,
		banner:   fmt.Sprintf("demo: model server %s, claude %s", model.URL(), cli),
		close:    model.Close,
	}, nil
}

// setupCodex points the real codex at a scripted Responses model through
// a CODEX_HOME of its own under dir; Symphony's environment carries it to
// every app-server it starts.
func setupCodex(dir string) (agentSetup, error) {
	cli, err := mockopenai.CLIPath()
	if err != nil {
		return agentSetup{}, err
	}
	model := scriptedCodexModel()
	env, err := mockopenai.CodexHome(filepath.Join(dir, "codex-home"), model.URL())
	if err != nil {
		model.Close()
		return agentSetup{}, err
	}
	command := shellQuote(cli) + " app-server"
	return agentSetup{
		workflow: demoWorkflow("codex", "  kind: codex\n", codexSection(command)),
		env:      env,
		banner:   fmt.Sprintf("demo: model server %s, codex %s", model.URL(), cli),
		close:    model.Close,
	}, nil
}

// shellQuote quotes s for codex.command, which Symphony runs with bash -lc.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
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
	agent, err := setupAgent(dir)
	if err != nil {
		return err
	}
	defer agent.close()
	wf := filepath.Join(dir, "WORKFLOW.md")
	if err := os.WriteFile(wf, []byte(agent.workflow), 0o644); err != nil {
		return err
	}

	bin := filepath.Join(dir, "bin", "symphony")
	build := exec.Command("go", "build", "-o", bin, "./cmd/symphony")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build symphony: %w", err)
	}

	fmt.Println(agent.banner)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", wf, "--once", "--port", "0")
	// A HOME of the demo's own: hooks and codex run under `bash -lc`,
	// and the operator's login profile (slow, or holding a lock) must not
	// decide whether the demo works.
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	cmd.Env = append(os.Environ(), agent.env...)
	cmd.Env = append(cmd.Env, "HOME="+home)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("symphony run --once: %w", err)
	}
	return check(dir, issues, srcs)
}

// check reports each demo issue's state and edit and fails unless the two
// open issues were worked on and handed to review and the blocked one was
// left alone.
func check(dir, issues string, srcs []string) error {
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

// writeDemoFile is the shell command the codex demo's model runs (codex
// has no file-writing tool for an unknown model): it names the file after
// the workspace, the issue's identifier, as the claude demo does.
const writeDemoFile = `id=$(basename "$PWD") && printf '# %s\n\nHello from the Symphony demo. This file was written by the real codex CLI,\ndriven by a scripted local model, in the workspace of %s.\n' "$id" "$id" > SYMPHONY_DEMO.md`

// scriptedCodexModel is the codex demo's model server, the same script
// as scriptedModel's: in each new thread it writes the file with a shell
// command, then moves the issue to Human Review with the dynamic tool
// files_set_state, then says it is done. Codex resends the whole history
// with every request, so the step follows from the latest tool outputs.
func scriptedCodexModel() *mockopenai.Server {
	return mockopenai.NewResponder(func(r mockopenai.Request) mockopenai.Step {
		last := ""
		if n := len(r.ToolOutputs); n > 0 {
			last = r.ToolOutputs[n-1].Name
		}
		switch {
		case len(r.AllToolOutputs) == 0:
			return mockopenai.Exec(writeDemoFile)
		case last == "exec_command" && !strings.Contains(r.ToolResultText(), "exited with code 0"):
			return mockopenai.Text("I could not write SYMPHONY_DEMO.md: " + r.ToolResultText())
		case last == "exec_command":
			return mockopenai.FunctionCall(codexSetState, map[string]any{"state": "Human Review"})
		case last == codexSetState && strings.Contains(r.ToolResultText(), `"error"`):
			return mockopenai.Text("I could not hand the issue over: " + r.ToolResultText())
		}
		return mockopenai.Text("Done: I wrote SYMPHONY_DEMO.md and moved the issue to Human Review.")
	})
}
