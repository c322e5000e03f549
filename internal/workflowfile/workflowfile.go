// Package workflowfile reads a WORKFLOW.md: optional YAML front matter
// between --- lines, then the Liquid prompt body. It turns the front matter
// into a typed bus.Config with every default applied, resolves $NAME
// indirection and paths, validates every key, and parses and trial-renders
// the prompt, so that anything wrong is reported once, at load time, with
// its error class, key and line — never later, in the middle of a run.
//
// It is a pure library (read bytes, return a result or a classed error): the
// workflow component watches the file and publishes what this returns, and
// `symphony validate` prints it.
package workflowfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/internal/frontmatter"
	"github.com/symphony-oss/symphony/internal/prompt"
)

// MaxSize bounds a WORKFLOW.md; a larger file is refused unread.
const MaxSize = 1 << 20

// Error classes (the first five are the reference specification's).
const (
	ClassMissingFile       = "missing_workflow_file"
	ClassParse             = "workflow_parse_error"
	ClassFrontMatterNotMap = "workflow_front_matter_not_a_map"
	ClassTemplateParse     = prompt.ClassParse
	ClassTemplateRender    = prompt.ClassRender
	ClassConfig            = "config_validation_error"
)

// Error is a classed load failure. Message never contains a secret value.
type Error struct {
	Class string `json:"class"`
	Path  string `json:"path"`
	// Key is the front matter key at fault ("agent.max_turns"), if any.
	Key string `json:"key,omitempty"`
	// Line and Column are 1-based positions in the file; 0 when unknown.
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	loc := e.Path
	if e.Line > 0 {
		loc += fmt.Sprintf(":%d", e.Line)
		if e.Column > 0 {
			loc += fmt.Sprintf(":%d", e.Column)
		}
	}
	msg := e.Message
	if e.Key != "" {
		msg = e.Key + ": " + msg
	}
	return fmt.Sprintf("%s: %s: %s", e.Class, loc, msg)
}

// Payload converts the error for the bus.
func (e *Error) Payload() bus.WorkflowError {
	return bus.WorkflowError{Class: e.Class, Message: e.Message, Path: e.Path, Key: e.Key, Line: e.Line, Column: e.Column}
}

// Env is what loading reads from the process: environment variables, the
// home directory and the temporary directory. Tests inject their own.
type Env struct {
	LookupEnv func(string) (string, bool)
	Home      string
	TempDir   string
}

// OSEnv is the real process environment.
func OSEnv() Env {
	home, _ := os.UserHomeDir()
	return Env{LookupEnv: os.LookupEnv, Home: home, TempDir: os.TempDir()}
}

// Result is a successfully loaded workflow.
type Result struct {
	// Path is absolute.
	Path string
	// Checksum is the hex SHA-256 of the file bytes.
	Checksum string
	Config   bus.Config
	// PromptTemplate is the trimmed body ("" means the default prompt).
	PromptTemplate string
	// Template is the parsed prompt, already trial-rendered.
	Template *prompt.Template
	// Defaults lists the keys that took their default value.
	Defaults []string
	// Inferred lists the keys whose value the loader inferred from the
	// rest of the file (agent.kind from the sections present).
	Inferred []string
	// Warnings are non-fatal problems (ignored invalid entries).
	Warnings []string
}

// Snapshot is the bus form of the result.
func (r *Result) Snapshot() bus.ConfigSnapshot {
	return bus.ConfigSnapshot{
		Checksum:       r.Checksum,
		Path:           r.Path,
		Config:         r.Config,
		PromptTemplate: r.PromptTemplate,
		Warnings:       r.Warnings,
	}
}

// Load reads and parses the workflow file at path.
func Load(path string, env Env) (*Result, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{Class: ClassMissingFile, Path: path, Message: err.Error()}
	}
	f, err := os.Open(abs)
	if err != nil {
		msg := "cannot be read: " + unwrapPathError(err)
		if errors.Is(err, os.ErrNotExist) {
			msg = "does not exist (pass the path to your WORKFLOW.md, or run from its directory)"
		}
		return nil, &Error{Class: ClassMissingFile, Path: abs, Message: msg}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &Error{Class: ClassMissingFile, Path: abs, Message: "cannot be read: " + unwrapPathError(err)}
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Class: ClassMissingFile, Path: abs, Message: "is not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{Class: ClassMissingFile, Path: abs, Message: "cannot be read: " + unwrapPathError(err)}
	}
	return Parse(abs, data, env)
}

func unwrapPathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse parses the bytes of the workflow file at path (used for messages
// and to resolve relative paths).
func Parse(path string, data []byte, env Env) (*Result, error) {
	if len(data) > MaxSize {
		return nil, &Error{Class: ClassParse, Path: path, Message: fmt.Sprintf("file is larger than %d bytes", MaxSize)}
	}
	sum := sha256.Sum256(data)
	front, body, bodyLine, serr := frontmatter.Split(data)
	if serr != nil {
		return nil, &Error{Class: ClassParse, Path: path, Line: 1, Message: serr.Error()}
	}
	root, file, perr := parseFrontMatter(front)
	if perr != nil {
		perr.Path = path
		return nil, perr
	}
	d := &decoder{env: env, dir: filepath.Dir(path), file: file}
	cfg := d.config(root)
	if d.err != nil {
		d.err.Path = path
		return nil, d.err
	}

	trimmed := strings.TrimSpace(string(body))
	// The trimmed body starts after the leading blank lines.
	lead := strings.TrimLeft(string(body), " \t\r\n")
	firstLine := bodyLine + strings.Count(string(body)[:len(body)-len(lead)], "\n")
	tpl, terr := prompt.Parse(trimmed, firstLine)
	if terr == nil {
		// Trial-render with a sample issue, first run and a retry, so an
		// unknown variable or filter blocks the load instead of every run.
		two := 2
		sample := prompt.SampleIssueFor(cfg.Tracker.Kind)
		if _, terr = tpl.Render(sample, nil); terr == nil {
			_, terr = tpl.Render(sample, &two)
		}
	}
	if terr != nil {
		var pe *prompt.Error
		if errors.As(terr, &pe) {
			line := pe.Line
			if trimmed == "" {
				line = 0
			}
			return nil, &Error{Class: pe.Class, Path: path, Line: line, Message: pe.Message}
		}
		return nil, &Error{Class: ClassTemplateParse, Path: path, Message: terr.Error()}
	}
	return &Result{
		Path:           path,
		Checksum:       hex.EncodeToString(sum[:]),
		Config:         cfg,
		PromptTemplate: trimmed,
		Template:       tpl,
		Defaults:       d.defaults,
		Inferred:       d.inferred,
		Warnings:       d.warnings,
	}, nil
}
