package fakeagent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	o, err := Parse([]string{"-p", "--output-format", "stream-json", "--verbose", "--model", "m1", "--permission-mode", "acceptEdits",
		"--allowedTools", "Read,Write", "--resume", "sess-1", "--fake-events=3", "--fake-size", "10", "--dangerously-skip-permissions", "do", "it"},
		env(EnvMode, "garbage", EnvEvents, "50", EnvInterval, "10ms", EnvStderrBytes, "2K", EnvDaemonStdio, "inherit"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Mode != ModeGarbage || o.Events != 3 || o.Size != 10 || o.Interval != 10*time.Millisecond || o.StderrBytes != 2048 ||
		o.Model != "m1" || o.PermissionMode != "acceptEdits" || o.Resume != "sess-1" || o.Prompt != "do it" || !o.PromptFromArgs ||
		!o.Print || !o.Verbose || o.OutputFormat != "stream-json" || !o.DaemonInherit || !o.DaemonSetsid {
		t.Errorf("options %+v", o)
	}
	if o, _ := Parse(nil, env(EnvMode, "stderr_flood")); o.StderrBytes != 1<<30 {
		t.Errorf("stderr_flood default %d", o.StderrBytes)
	}
	if o, _ := Parse(nil, env()); o.Mode != ModeOK || o.StderrBytes != 0 || o.PromptFromArgs || o.Events != 9 {
		t.Errorf("defaults %+v", o)
	}
	for _, bad := range []func(string) string{
		env(EnvMode, "nope"), env(EnvEvents, "-1"), env(EnvInterval, "soon"), env(EnvSize, "x"),
		env(EnvStderrBytes, "1T"), env(EnvCrashSignal, "HUP"), env(EnvDaemonStdio, "pipe"), env(EnvDaemonEnv, "half"),
	} {
		if _, err := Parse(nil, bad); err == nil {
			t.Errorf("accepted a bad environment")
		}
	}
	if _, err := Parse([]string{"--resume"}, env()); err == nil {
		t.Error("--resume without a value accepted")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "17": 17, "2K": 2048, "64M": 64 << 20, "64MiB": 64 << 20, "1G": 1 << 30, "1gb": 1 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "-1", "1T", "x"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// run starts the fake with the environment kv and returns its stdout,
// stderr and exit error.
func run(t *testing.T, bin string, kv ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), kv...)
	cmd.Stdin = strings.NewReader("the prompt")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// jsonLines splits out into lines and reports, for each, its type or "!"
// when it is not a JSON object with a string type.
func jsonLines(out []byte) []string {
	var types []string
	for _, l := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		var v struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(l, &v) != nil || v.Type == "" {
			types = append(types, "!")
			continue
		}
		types = append(types, v.Type)
	}
	return types
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestModesAsAProcess(t *testing.T) {
	bin := Build(t)
	cases := []struct {
		mode  Mode
		env   []string
		types string
		code  int
	}{
		{ModeOK, nil, "system assistant assistant user result", 0},
		{ModeCrash, nil, "system assistant assistant user", 2},
		{ModeCrash, []string{EnvExitCode + "=7"}, "system assistant assistant user", 7},
		{ModeExit0NoResult, nil, "system assistant assistant user", 0},
		{ModeGarbage, nil, "system assistant ! assistant ! user ! result", 0},
		{ModeBinary, nil, "system assistant ! assistant ! user ! result", 0},
		{ModeErrorResult, nil, "system assistant assistant user result", 1},
		{ModeAskPermission, nil, "system assistant assistant user assistant user assistant result", 0},
		{ModeHugeLine, []string{EnvLineBytes + "=1M"}, "system assistant assistant assistant user result", 0},
		{ModeStderrFlood, []string{EnvStderrBytes + "=3M"}, "system assistant assistant user result", 0},
	}
	for _, c := range cases {
		t.Run(string(c.mode), func(t *testing.T) {
			out, errOut, err := run(t, bin, append([]string{EnvMode + "=" + string(c.mode), EnvEvents + "=3"}, c.env...)...)
			if got := strings.Join(jsonLines(out), " "); got != c.types {
				t.Errorf("lines %s, want %s (stderr %.300s)", got, c.types, errOut)
			}
			if code := exitCode(err); code != c.code {
				t.Errorf("exit %d (%v), want %d", code, err, c.code)
			}
		})
	}
	t.Run("huge_line size", func(t *testing.T) {
		out, _, _ := run(t, bin, EnvMode+"=huge_line", EnvEvents+"=0", EnvLineBytes+"=3M")
		lines := bytes.SplitAfter(out, []byte("\n"))
		if len(lines[1]) != 3<<20 || !json.Valid(lines[1]) {
			t.Errorf("the huge line has %d bytes (valid JSON %v)", len(lines[1]), json.Valid(lines[1]))
		}
	})
	t.Run("stderr_flood size", func(t *testing.T) {
		_, errOut, _ := run(t, bin, EnvMode+"=stderr_flood", EnvStderrBytes+"=3M")
		if len(errOut) != 3<<20 || !bytes.HasSuffix(errOut, []byte(StderrFloodEnd)) {
			t.Errorf("stderr %d bytes, ends %q", len(errOut), errOut[max(0, len(errOut)-40):])
		}
	})
	t.Run("crash by signal", func(t *testing.T) {
		_, _, err := run(t, bin, EnvMode+"=crash", EnvCrashSignal+"=KILL")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("exit %v, want killed", err)
		}
	})
	t.Run("resume and session", func(t *testing.T) {
		cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose", "--resume", "sess-9", "go on")
		cmd.Env = append(os.Environ(), EnvEvents+"=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var v struct {
				SessionID string `json:"session_id"`
				Result    string `json:"result"`
			}
			if err := json.Unmarshal(l, &v); err != nil || v.SessionID != "sess-9" {
				t.Errorf("line %s: session %q %v", l, v.SessionID, err)
			}
			if v.Result != "" && !strings.Contains(v.Result, "prompt 5 bytes, resumed=true") {
				t.Errorf("result %q", v.Result)
			}
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, args := range [][]string{{"-p", "--output-format", "stream-json", "x"}, {"--output-format", "stream-json", "--verbose", "x"}, {"-p", "--verbose", "x"}} {
			if err := exec.Command(bin, args...).Run(); exitCode(err) != 1 {
				t.Errorf("%q: %v, want exit 1", args, err)
			}
		}
		cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose")
		cmd.Stdin = strings.NewReader("  \n")
		if err := cmd.Run(); exitCode(err) != 1 {
			t.Errorf("empty prompt: %v, want exit 1", err)
		}
	})
	t.Run("hang", func(t *testing.T) {
		cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose", "x")
		cmd.Env = append(os.Environ(), EnvMode+"=hang", EnvEvents+"=2")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for range 3 {
			if !sc.Scan() {
				t.Fatalf("fewer than 3 lines before hanging: %v", sc.Err())
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("a hanging fake ended by %v, want SIGTERM", err)
		}
	})
	t.Run("fork_daemon", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "pid")
		// Registered first: the daemon dies however the test ends.
		t.Cleanup(func() {
			if raw, err := os.ReadFile(pidFile); err == nil {
				if pid, _ := strconv.Atoi(string(raw)); pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
		out, _, err := run(t, bin, EnvMode+"=fork_daemon", EnvEvents+"=0", EnvPIDFile+"="+pidFile)
		if err != nil || strings.Join(jsonLines(out), " ") != "system result" {
			t.Fatalf("%v: %s", err, out)
		}
		raw, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(string(raw))
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatalf("the daemon %d is not alive after the agent exited: %v", pid, err)
		}
		// After "pid (comm)": state, ppid, pgrp, session.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if sid, _ := strconv.Atoi(f[3]); f[0] == "Z" || sid != pid {
			t.Errorf("the daemon: state %s, session %s, want alive in its own session (%d)", f[0], f[3], pid)
		}
	})
}

// TestStartStamp: with FAKEAGENT_START_DIR the fake writes the moment it
// began to DIR/<issue identifier>, between the exec and its first line.
func TestStartStamp(t *testing.T) {
	bin := Build(t)
	dir := t.TempDir()
	before := time.Now()
	out, errOut, err := run(t, bin, EnvStartDir+"="+dir, EnvEvents+"=0", "SYMPHONY_ISSUE_IDENTIFIER=ABC-1")
	after := time.Now()
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	if got := strings.Join(jsonLines(out), " "); got != "system result" {
		t.Errorf("lines %s", got)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "ABC-1"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSuffix(string(raw), "\n"), 10, 64)
	if err != nil || !strings.HasSuffix(string(raw), "\n") {
		t.Fatalf("stamp %q: %v", raw, err)
	}
	if at := time.Unix(0, ns); at.Before(before) || at.After(after) {
		t.Errorf("stamp %v not between the exec (%v) and the exit (%v)", at, before, after)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the stamp directory, want just the stamp", len(entries))
	}
	// Without an identifier the stamp is named after the pid.
	if _, errOut, err := run(t, bin, EnvStartDir+"="+dir, EnvEvents+"=0", "SYMPHONY_ISSUE_IDENTIFIER="); err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 || !strings.HasPrefix(entries[1].Name(), "pid-") {
		t.Errorf("stamp files %v, want ABC-1 and pid-<pid>", entries)
	}
}

// TestGate: with FAKEAGENT_GATE the fake prints its init line, then waits
// for a byte from the gate pipe before its events and result.
func TestGate(t *testing.T) {
	bin := Build(t)
	gate, g := OpenGate(t)
	cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), EnvGate+"="+gate, EnvEvents+"=3")
	cmd.Stdin = strings.NewReader("the prompt")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(out)
	first, err := r.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonLines(first); len(got) != 1 || got[0] != "system" {
		t.Fatalf("first line %q", first)
	}
	// Nothing more while the gate is shut: the fake is still running.
	more := make(chan []byte, 1)
	go func() {
		rest, _ := io.ReadAll(r)
		more <- rest
	}()
	select {
	case rest := <-more:
		t.Fatalf("the fake went on before the gate opened: %q", rest)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := g.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	rest := <-more
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(jsonLines(rest), " "); !strings.HasSuffix(got, " result") {
		t.Fatalf("after the gate: %s", got)
	}
	if n := len(jsonLines(rest)); n != 4 {
		t.Fatalf("after the gate %d lines (%s), want 3 events and the result", n, strings.Join(jsonLines(rest), " "))
	}
}
