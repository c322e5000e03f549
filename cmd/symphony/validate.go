package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/prompt"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/internal/workflowfile"
	"github.com/symphony-oss/symphony/ui"
)

// ValidateCmd is `symphony validate`.
type ValidateCmd struct {
	Workflow string `arg:"" optional:"" default:"WORKFLOW.md" help:"Path to the WORKFLOW.md to check (default ./WORKFLOW.md)." type:"path"`
	JSON     bool   `help:"Print the result as JSON (for scripts)."`
}

// validateJSON is the --json output.
type validateJSON struct {
	Valid    bool                   `json:"valid"`
	Path     string                 `json:"path"`
	Checksum string                 `json:"checksum,omitempty"`
	Settings []workflowfile.Setting `json:"settings,omitempty"`
	Warnings []string               `json:"warnings,omitempty"`
	// PromptFirstRun and PromptAttempt2 render the sample issue.
	PromptFirstRun string              `json:"prompt_first_run,omitempty"`
	PromptAttempt2 string              `json:"prompt_attempt_2,omitempty"`
	Error          *workflowfile.Error `json:"error,omitempty"`
}

// Run loads the workflow, prints the effective config and sample prompts,
// and exits 1 with the classed error when it is invalid.
func (c *ValidateCmd) Run(e *env) error {
	res, err := workflowfile.Load(c.Workflow, workflowfile.OSEnv())
	if err != nil {
		var we *workflowfile.Error
		if !errors.As(err, &we) {
			return err
		}
		if c.JSON {
			if err := writeJSON(e.stdout, validateJSON{Path: we.Path, Error: we}); err != nil {
				return err
			}
			return &exitError{code: exitFailure, err: errors.New("invalid workflow")}
		}
		return &exitError{code: exitFailure, err: err}
	}
	sample := prompt.SampleIssueFor(res.Config.Tracker.Kind)
	first, err := res.Template.Render(sample, nil)
	if err != nil {
		return err
	}
	two := 2
	retry, err := res.Template.Render(sample, &two)
	if err != nil {
		return err
	}
	home, _ := os.UserHomeDir()
	warnings := codexPricingWarnings(res, os.LookupEnv, home)
	if w := bindWarning(res.Config.Server); w != "" {
		warnings = append(warnings, w)
	}
	if c.JSON {
		return writeJSON(e.stdout, validateJSON{
			Valid: true, Path: res.Path, Checksum: res.Checksum, Settings: workflowfile.Effective(res),
			Warnings: warnings, PromptFirstRun: first, PromptAttempt2: retry,
		})
	}
	w := e.stdout
	fmt.Fprintf(w, "%s is valid (sha256 %s)\n\nEffective configuration (secrets masked):\n", res.Path, res.Checksum[:12])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range workflowfile.Effective(res) {
		mark := ""
		switch {
		case s.Default:
			mark = "(default)"
		case s.Inferred:
			mark = "(inferred)"
		}
		// One line per setting: a value's own tab or newline is escaped.
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", termsafe.Line(s.Key), termsafe.Line(s.Value), mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, warn := range warnings {
			fmt.Fprintln(w, "  "+warn)
		}
	}
	section := func(title, body string) {
		fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("-", len(title)))
		fmt.Fprintln(w, strings.TrimRight(body, "\n"))
	}
	if res.PromptTemplate == "" {
		fmt.Fprintln(w, "\nThe prompt body is empty: the default prompt is used.")
	}
	section(fmt.Sprintf("Prompt for sample issue %s, first run (attempt: null)", sample.Identifier), first)
	section(fmt.Sprintf("Prompt for sample issue %s, attempt 2", sample.Identifier), retry)
	return nil
}

// maxCodexConfig bounds the bytes of codex's config.toml validate reads.
const maxCodexConfig = 1 << 20

// codexPricingWarnings refines the loader's warning that a codex run's
// model, and so whether USD caps can price it, is unknown: the loader
// reads only WORKFLOW.md, but validate runs on the operator's machine and
// can read the model from codex's own config.toml (in the CODEX_HOME the
// command sets, else $CODEX_HOME, else ~/.codex). A model found there
// turns the warning into a precise one, or removes it when the model has
// a price. Anything unclear leaves the loader's warning as it was.
func codexPricingWarnings(res *workflowfile.Result, lookup func(string) (string, bool), home string) []string {
	cfg := res.Config
	generic := workflowfile.UnpricedUSDWarning(cfg, "", "")
	i := slices.Index(res.Warnings, generic)
	if generic == "" || i < 0 || len(cfg.Pricing) == 0 || workflowfile.CodexModel(cfg.Codex.Command) != "" {
		return res.Warnings
	}
	dir := workflowfile.CodexHome(cfg.Codex.Command)
	if dir == "" {
		dir, _ = lookup("CODEX_HOME")
	}
	if dir == "" && home != "" {
		dir = filepath.Join(home, ".codex")
	}
	if strings.HasPrefix(dir, "~/") && home != "" {
		dir = filepath.Join(home, dir[2:])
	}
	if dir == "" {
		return res.Warnings
	}
	path := filepath.Join(dir, "config.toml")
	model := codexConfigModel(path)
	if model == "" {
		return res.Warnings
	}
	out := slices.Clone(res.Warnings)
	if w := workflowfile.UnpricedUSDWarning(cfg, model, path); w != "" {
		out[i] = w
	} else {
		out = slices.Delete(out, i, i+1)
	}
	return out
}

// codexTopModel matches a top-level `model = "…"` line of a config.toml.
var codexTopModel = regexp.MustCompile(`^model\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$`)

// codexTopProfile matches a top-level `profile = …` line.
var codexTopProfile = regexp.MustCompile(`^profile\s*=`)

// codexConfigModel reads the top-level model of codex's config.toml, ""
// when the file is absent or unreadable, sets none, or selects a profile
// (whose model would apply instead).
func codexConfigModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCodexConfig))
	if err != nil {
		return ""
	}
	model := ""
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			break // the first table ends the top level
		}
		if codexTopProfile.MatchString(line) {
			return ""
		}
		if m := codexTopModel.FindStringSubmatch(line); m != nil {
			model = m[1] + m[2]
			if m[1] != "" {
				if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
					model = u
				}
			}
		}
	}
	return strings.TrimSpace(model)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// bindWarning warns about a server address `symphony run` refuses without
// --bind-unsafe (server.host 0.0.0.0, which the reference accepts): the
// file is valid, the start is not, and the operator learns it here.
func bindWarning(srv bus.ServerConfig) string {
	if ui.CheckBind(srv.Bind, false) == nil {
		return ""
	}
	return fmt.Sprintf("server.bind/server.host %q is not loopback: `symphony run` refuses it unless given --bind-unsafe (the dashboard has no authentication; anyone who reaches it controls the scheduler)", srv.Bind)
}
