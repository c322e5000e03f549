package agentrunner

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake claude CLI: with FAKE_CLAUDE set it
// behaves as the mode says and never runs tests.
const fakeEnv = "FAKE_CLAUDE"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeClaude(mode))
	}
	// Agents run under `bash -lc` (codex) and hooks too: with the
	// developer's HOME a login shell runs their profile, which can be slow
	// or take a lock (pyenv's rehash) that a test killing the group early
	// leaves behind, stalling every later login shell on the machine. The
	// tests' children get a HOME of their own, with no profile.
	home, err := os.MkdirTemp("", "symphony-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

// spawnSleeper starts a background "sleep 600" sharing stdout and records
// its pid in $SLEEPER_PID_FILE.
func spawnSleeper() {
	cmd := exec.Command("sleep", "600")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	_ = os.WriteFile(os.Getenv("SLEEPER_PID_FILE"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

func fakeClaude(mode string) int {
	if path := os.Getenv("FAKE_PID_FILE"); path != "" {
		// One line per invocation: the runner's record of each turn's
		// agent process is checked against it.
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, os.Getpid())
			f.Close()
		}
	}
	session := "11111111-2222-4333-8444-555555555555"
	resumed := false
	for i, a := range os.Args {
		if a == "--resume" && i+1 < len(os.Args) {
			session, resumed = os.Args[i+1], true
		}
	}
	line := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	initLine := func() {
		cwd, _ := os.Getwd()
		line(`{"type":"system","subtype":"init","cwd":%q,"session_id":%q,"model":"fake"}`, cwd, session)
	}
	okResult := func(cost float64) {
		line(`{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"done","session_id":%q,"total_cost_usd":%v,"usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":1,"cache_read_input_tokens":2}}`, session, cost)
	}
	switch mode {
	case "ok":
		initLine()
		line(`{"type":"assistant","message":{"content":[{"type":"text","text":"working (resumed=%v)"}]},"session_id":%q}`, resumed, session)
		line(`not json at all`)
		okResult(0.25)
	case "cost-env":
		// Each turn reports the cost and input tokens the environment
		// says: COST1/TOK1 on the first, COST2/TOK2 on resumed ones.
		initLine()
		cost, tok := os.Getenv("COST1"), os.Getenv("TOK1")
		if resumed {
			cost, tok = os.Getenv("COST2"), os.Getenv("TOK2")
		}
		line(`{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"done","session_id":%q,"total_cost_usd":%s,"usage":{"input_tokens":%s,"output_tokens":5}}`, session, cost, tok)
	case "stream-hang":
		// One API message streamed as two content-block lines (the same
		// id, its usage repeated, the output count grown), then nothing:
		// the turn ends only by a timeout, a cancel or a cap.
		initLine()
		line(`{"type":"assistant","message":{"id":"msg_1","model":"fake","usage":{"input_tokens":400000,"output_tokens":10,"cache_read_input_tokens":100},"content":[{"type":"text","text":"thinking hard"}]},"session_id":%q}`, session)
		line(`{"type":"assistant","message":{"id":"msg_1","model":"fake","usage":{"input_tokens":400000,"output_tokens":30000,"cache_read_input_tokens":100},"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{}}]},"session_id":%q}`, session)
		time.Sleep(time.Hour)
	case "env":
		initLine()
		for _, kv := range os.Environ() {
			// Every tracker credential name, and any variable holding a
			// test secret under another name.
			if strings.HasPrefix(kv, "LINEAR_API_KEY=") || strings.HasPrefix(kv, "MY_TRACKER_KEY=") || strings.HasPrefix(kv, "KEEP_ME=") ||
				strings.HasPrefix(kv, "GH_") || strings.HasPrefix(kv, "GITHUB_") || strings.HasSuffix(kv, "_secret") {
				line(`{"type":"assistant","message":{"content":[{"type":"text","text":%q}]},"session_id":%q}`, kv, session)
			}
		}
		okResult(0)
	case "silent":
		initLine()
		time.Sleep(time.Hour)
	case "hang":
		// Ignore SIGTERM: only SIGKILL ends it; leave a child behind too.
		signal.Ignore(syscall.SIGTERM)
		spawnSleeper()
		initLine()
		time.Sleep(time.Hour)
	case "straggler":
		// A good result, then exit, leaving a background job that holds
		// stdout open.
		spawnSleeper()
		initLine()
		okResult(0.1)
	case "exit3":
		fmt.Fprintln(os.Stderr, "fatal: something broke")
		return 3
	case "nothing":
		return 0
	case "stderr-flood":
		chunk := strings.Repeat("e", 1<<20)
		for range 100 {
			fmt.Fprint(os.Stderr, chunk)
		}
		initLine()
		okResult(0)
	case "api-error":
		initLine()
		line(`{"type":"result","subtype":"success","is_error":true,"api_error_status":500,"result":"API Error: 500 boom","session_id":%q,"total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}`, session)
		return 1
	case "denied":
		initLine()
		line(`{"type":"result","subtype":"success","is_error":false,"result":"could not write","session_id":%q,"permission_denials":[{"tool_name":"Write","tool_use_id":"t1"}],"usage":{"input_tokens":1,"output_tokens":1}}`, session)
	case "result-then-exit1":
		initLine()
		okResult(0.1)
		return 1
	}
	return 0
}
