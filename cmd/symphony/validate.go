package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/symphony-oss/symphony/internal/prompt"
	"github.com/symphony-oss/symphony/internal/termsafe"
	"github.com/symphony-oss/symphony/internal/workflowfile"
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
	sample := prompt.SampleIssue()
	first, err := res.Template.Render(sample, nil)
	if err != nil {
		return err
	}
	two := 2
	retry, err := res.Template.Render(sample, &two)
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(e.stdout, validateJSON{
			Valid: true, Path: res.Path, Checksum: res.Checksum, Settings: workflowfile.Effective(res),
			Warnings: res.Warnings, PromptFirstRun: first, PromptAttempt2: retry,
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
	if len(res.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, warn := range res.Warnings {
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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
