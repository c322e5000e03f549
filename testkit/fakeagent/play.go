package fakeagent

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// MaxPrompt bounds the prompt read from stdin.
const MaxPrompt = 64 << 20

// StderrFloodEnd ends every stderr flood, so a reader of the kept tail can
// tell the flood was read to its end.
const StderrFloodEnd = "fakeagent: end of stderr flood\n"

// Main runs the fake agent with args (without the program name), getenv
// and the standard streams, and returns the exit status. It owns the
// process: hang never returns, crash may end the process by a signal, and
// fork_daemon starts this same binary (os.Executable) as the daemon. Call
// it only from a main package.
func Main(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Taken first, so the stamp is as close to the exec as Go allows.
	began := time.Now()
	if dir := getenv(EnvStartDir); dir != "" {
		if err := writeStartStamp(dir, getenv("SYMPHONY_ISSUE_IDENTIFIER"), began); err != nil {
			fmt.Fprintln(stderr, "fakeagent:", err)
			return 1
		}
	}
	if len(args) > 0 && args[0] == "app-server" {
		return playCodex(getenv, stdin, stdout, stderr)
	}
	if len(args) == 1 && args[0] == daemonFlag {
		// The daemon fork_daemon leaves behind: it does nothing, forever,
		// until something kills it.
		for {
			time.Sleep(time.Hour)
		}
	}
	o, err := Parse(args, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "fakeagent:", err)
		return 1
	}
	// The real CLI's own refusals, so a wrong command line fails as it
	// would against claude.
	switch {
	case !o.Print:
		fmt.Fprintln(stderr, "fakeagent: only print mode (-p) is modelled")
		return 1
	case o.OutputFormat != "stream-json":
		fmt.Fprintln(stderr, "fakeagent: only --output-format stream-json is modelled")
		return 1
	case !o.Verbose:
		fmt.Fprintln(stderr, "Error: When using --print, --output-format=stream-json requires --verbose")
		return 1
	case o.InputFormat != "" && o.InputFormat != "text":
		fmt.Fprintln(stderr, "fakeagent: only --input-format text is modelled")
		return 1
	}
	if !o.PromptFromArgs {
		b, err := io.ReadAll(io.LimitReader(stdin, MaxPrompt))
		if err != nil {
			fmt.Fprintln(stderr, "fakeagent: read the prompt from stdin:", err)
			return 1
		}
		o.Prompt = string(b)
	}
	if strings.TrimSpace(o.Prompt) == "" {
		fmt.Fprintln(stderr, "Error: Input must be provided either through stdin or as a prompt argument when using --print")
		return 1
	}
	p := newPlayer(o, stdout, stderr)
	return p.play()
}

// writeStartStamp writes began (unix nanoseconds and a newline) to
// dir/name, or dir/pid-<pid> when name is empty. The file appears whole
// (written aside, then renamed), so a reader polling for it never sees a
// partial stamp.
func writeStartStamp(dir, name string, began time.Time) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		name = "pid-" + strconv.Itoa(os.Getpid())
	}
	path := filepath.Join(dir, name)
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(began.UnixNano(), 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("start stamp: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("start stamp: %w", err)
	}
	return nil
}

// player writes one invocation's stream.
type player struct {
	o   Options
	out *bufio.Writer
	// text is where payloads are cut from (see payload).
	text    []byte
	errw    io.Writer
	rng     *mrand.Rand
	session string
	cwd     string
	start   time.Time
}

func newPlayer(o Options, stdout, stderr io.Writer) *player {
	p := &player{o: o, out: bufio.NewWriterSize(stdout, 64<<10), errw: stderr,
		rng: mrand.New(mrand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)), start: time.Now()}
	switch {
	case o.Resume != "":
		p.session = o.Resume
	case o.Session != "":
		p.session = o.Session
	default:
		p.session = randomUUID()
	}
	p.cwd, _ = os.Getwd()
	return p
}

// play runs the mode and returns the exit status.
func (p *player) play() int {
	o := p.o
	if o.IgnoreSIGTERM {
		signal.Ignore(syscall.SIGTERM)
	}
	if o.StderrBytes > 0 {
		if err := p.flood(o.StderrBytes); err != nil {
			return 1
		}
	}
	if o.Mode == ModeForkDaemon {
		if err := p.forkDaemon(); err != nil {
			fmt.Fprintln(p.errw, "fakeagent: fork daemon:", err)
			return 1
		}
	}
	p.init()
	if o.Gate != "" {
		if err := waitGate(o.Gate); err != nil {
			fmt.Fprintln(p.errw, "fakeagent: gate:", err)
			return 1
		}
	}
	if o.Mode == ModeHugeLine {
		p.hugeLine(o.LineBytes)
	}
	for i := range o.Events {
		if o.Interval > 0 {
			sleepThread(o.Interval)
		}
		p.event(i)
		switch o.Mode {
		case ModeGarbage:
			p.raw([]byte(garbageLine(i)))
		case ModeBinary:
			p.raw(p.binaryLine())
		}
	}
	switch o.Mode {
	case ModeHang:
		for {
			time.Sleep(time.Hour)
		}
	case ModeCrash:
		fmt.Fprintln(p.errw, "fakeagent: simulated crash (mode crash)")
		if o.CrashSignal != 0 {
			_ = syscall.Kill(os.Getpid(), o.CrashSignal)
			// A caught or ignored signal must still end the process.
			time.Sleep(time.Second)
		}
		return o.ExitCode
	case ModeExit0NoResult:
		return 0
	case ModeErrorResult:
		p.result(resultLine{Subtype: "success", IsError: true, APIErrorStatus: ptr(500), Result: "API Error: 500 fakeagent injected 500. This is a server-side issue, usually temporary — try again in a moment.",
			StopReason: "stop_sequence", CostUSD: 0, Usage: usage{}})
		return 1
	case ModeAskPermission:
		id := "toolu_fake_permission"
		path := p.cwd + "/fake-permission.txt"
		input := map[string]string{"file_path": path, "content": "needs permission\n"}
		p.assistant("msg_fake_permission", contentBlock{Type: "tool_use", ID: id, Name: "Write", Input: input})
		p.user(contentBlock{Type: "tool_result", ToolUseID: id, IsError: true,
			Content: "Claude requested permissions to write to " + path + ", but you haven't granted it yet."}, nil)
		p.assistant("msg_fake_permission_2", contentBlock{Type: "text", Text: "I need permission to write " + path + "."})
		p.result(resultLine{Subtype: "success", Result: "I need permission to write " + path + ".", StopReason: "end_turn",
			CostUSD: o.CostUSD, Usage: p.usage(), Denials: []denial{{ToolName: "Write", ToolUseID: id, ToolInput: input}}})
		return 0
	}
	p.result(resultLine{Subtype: "success", Result: fmt.Sprintf("fakeagent done: %d events, prompt %d bytes, resumed=%v", o.Events, len(o.Prompt), o.Resume != ""),
		StopReason: "end_turn", CostUSD: o.CostUSD, Usage: p.usage()})
	return 0
}

// The line shapes, after the real CLI's (fields Symphony does not read are
// kept where they make the line look like the real one).
type (
	initLine struct {
		Type           string   `json:"type"`
		Subtype        string   `json:"subtype"`
		Cwd            string   `json:"cwd"`
		SessionID      string   `json:"session_id"`
		Tools          []string `json:"tools"`
		MCPServers     []string `json:"mcp_servers"`
		Model          string   `json:"model"`
		PermissionMode string   `json:"permissionMode"`
		APIKeySource   string   `json:"apiKeySource"`
		Version        string   `json:"claude_code_version"`
		UUID           string   `json:"uuid"`
	}
	contentBlock struct {
		Type      string `json:"type"`
		Text      string `json:"text,omitempty"`
		ID        string `json:"id,omitempty"`
		Name      string `json:"name,omitempty"`
		Input     any    `json:"input,omitempty"`
		ToolUseID string `json:"tool_use_id,omitempty"`
		Content   any    `json:"content,omitempty"`
		IsError   bool   `json:"is_error,omitempty"`
	}
	usage struct {
		InputTokens         int `json:"input_tokens"`
		CacheCreationTokens int `json:"cache_creation_input_tokens"`
		CacheReadTokens     int `json:"cache_read_input_tokens"`
		OutputTokens        int `json:"output_tokens"`
	}
	message struct {
		ID           string         `json:"id,omitempty"`
		Type         string         `json:"type,omitempty"`
		Role         string         `json:"role"`
		Model        string         `json:"model,omitempty"`
		Content      []contentBlock `json:"content"`
		StopReason   *string        `json:"stop_reason,omitempty"`
		StopSequence *string        `json:"stop_sequence,omitempty"`
		Usage        *usage         `json:"usage,omitempty"`
	}
	eventLine struct {
		Type          string  `json:"type"`
		Message       message `json:"message"`
		ParentToolUse *string `json:"parent_tool_use_id"`
		SessionID     string  `json:"session_id"`
		UUID          string  `json:"uuid"`
		ToolUseResult any     `json:"tool_use_result,omitempty"`
	}
	denial struct {
		ToolName  string `json:"tool_name"`
		ToolUseID string `json:"tool_use_id"`
		ToolInput any    `json:"tool_input"`
	}
	modelUsage struct {
		InputTokens  int     `json:"inputTokens"`
		OutputTokens int     `json:"outputTokens"`
		CostUSD      float64 `json:"costUSD"`
	}
	resultLine struct {
		Type           string                `json:"type"`
		Subtype        string                `json:"subtype"`
		IsError        bool                  `json:"is_error"`
		APIErrorStatus *int                  `json:"api_error_status"`
		DurationMS     int64                 `json:"duration_ms"`
		NumTurns       int                   `json:"num_turns"`
		Result         string                `json:"result"`
		StopReason     string                `json:"stop_reason"`
		SessionID      string                `json:"session_id"`
		CostUSD        float64               `json:"total_cost_usd"`
		Usage          usage                 `json:"usage"`
		ModelUsage     map[string]modelUsage `json:"modelUsage"`
		Denials        []denial              `json:"permission_denials"`
		TerminalReason string                `json:"terminal_reason"`
		UUID           string                `json:"uuid"`
	}
)

func ptr[T any](v T) *T { return &v }

// line writes v as one JSON line and flushes it, as the real CLI does per
// event. A write error (the reader went away) ends the process: there is
// nobody left to talk to.
func (p *player) line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeagent: marshal %T: %v", v, err))
	}
	p.raw(b)
}

// raw writes b and a newline, flushed.
func (p *player) raw(b []byte) {
	if _, err := p.out.Write(b); err == nil {
		_ = p.out.WriteByte('\n')
	}
	if err := p.out.Flush(); err != nil {
		fmt.Fprintln(p.errw, "fakeagent: write stdout:", err)
		os.Exit(1)
	}
}

func (p *player) init() {
	p.line(initLine{Type: "system", Subtype: "init", Cwd: p.cwd, SessionID: p.session,
		Tools: []string{"Bash", "Edit", "Read", "Write"}, MCPServers: []string{}, Model: p.o.Model,
		PermissionMode: p.o.PermissionMode, APIKeySource: "none", Version: "fakeagent", UUID: p.uuid()})
}

// event writes event i of the main sequence: assistant text, assistant
// tool_use, user tool_result (for the tool_use before it), in turn.
func (p *player) event(i int) {
	msgID := fmt.Sprintf("msg_fake_%d", i/3)
	switch i % 3 {
	case 0:
		p.assistant(msgID, contentBlock{Type: "text", Text: p.payload()})
	case 1:
		p.assistant(msgID, contentBlock{Type: "tool_use", ID: fmt.Sprintf("toolu_fake_%d", i), Name: "Write",
			Input: map[string]string{"file_path": fmt.Sprintf("%s/fake-%d.txt", p.cwd, i), "content": p.payload()}})
	case 2:
		content := p.payload()
		p.user(contentBlock{Type: "tool_result", ToolUseID: fmt.Sprintf("toolu_fake_%d", i-1), Content: content},
			map[string]any{"type": "create", "filePath": fmt.Sprintf("%s/fake-%d.txt", p.cwd, i-1), "content": content})
	}
}

func (p *player) assistant(msgID string, b contentBlock) {
	p.line(eventLine{Type: "assistant", SessionID: p.session, UUID: p.uuid(), Message: message{ID: msgID, Type: "message",
		Role: "assistant", Model: p.o.Model, Content: []contentBlock{b}, Usage: &usage{InputTokens: 100, OutputTokens: 1}}})
}

func (p *player) user(b contentBlock, toolUseResult any) {
	p.line(eventLine{Type: "user", SessionID: p.session, UUID: p.uuid(), Message: message{Role: "user", Content: []contentBlock{b}},
		ToolUseResult: toolUseResult})
}

// usage is the result's usage: 100 input tokens, 10 output tokens a event.
func (p *player) usage() usage {
	return usage{InputTokens: 100, OutputTokens: 10 * p.o.Events}
}

func (p *player) result(r resultLine) {
	r.Type, r.SessionID, r.UUID = "result", p.session, p.uuid()
	r.DurationMS = time.Since(p.start).Milliseconds()
	r.NumTurns = 1 + p.o.Events/3
	r.ModelUsage = map[string]modelUsage{p.o.Model: {InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens, CostUSD: r.CostUSD}}
	if r.Denials == nil {
		r.Denials = []denial{}
	}
	r.TerminalReason = "completed"
	p.line(r)
}

// payload is Size bytes of deterministic lower-case words: a slice, at a
// random place, of text generated once (generating every byte of every
// payload was a sixth of the fake's time, which a benchmark's flood of
// fakes takes from the process it measures).
func (p *player) payload() string {
	if len(p.text) < 2*p.o.Size+1 {
		const letters = "abcdefghijklmnopqrstuvwxyz     "
		p.text = make([]byte, max(64<<10, 2*p.o.Size+1))
		for i := range p.text {
			p.text[i] = letters[p.rng.IntN(len(letters))]
		}
	}
	off := p.rng.IntN(len(p.text) - p.o.Size)
	b := p.text[off : off+p.o.Size]
	if p.o.Stamp {
		stamp := "t=" + strconv.FormatInt(time.Now().UnixNano(), 10) + ";"
		return stamp + string(b[min(len(stamp), len(b)):])
	}
	return string(b)
}

// uuid is a deterministic v4-shaped id from the seed (the session is the
// only random one, as with the real CLI).
func (p *player) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(p.rng.Uint32())
	}
	return formatUUID(b)
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// garbageLine is line i of a fixed list of lines a stream-json reader must
// reject: not JSON, truncated JSON, JSON that is not an object, an object
// without a type, a type that is not a string, events missing what their
// type requires.
func garbageLine(i int) string {
	lines := [...]string{
		`not json at all`,
		`{"type":`,
		`{"no_type":true}`,
		`[1,2,3]`,
		`{"type":"assistant"}`,
		`{"type":"result","subtype":"success"}`,
		`{"type":42}`,
		`{"type":"user","message":{"content":"not a list"}}`,
		`null`,
		`{"type":"assistant","message":{"content":[{"type":"text","text":"unterminated}]}}`,
		"\x1b[31mERROR\x1b[0m something went wrong",
		`Traceback (most recent call last):`,
	}
	return lines[i%len(lines)]
}

// binaryLine is Size random bytes without a newline, starting with 0xFF so
// it can never be read as JSON or as blank.
func (p *player) binaryLine() []byte {
	b := make([]byte, max(p.o.Size, 1))
	for i := range b {
		b[i] = byte(p.rng.Uint32())
		if b[i] == '\n' {
			b[i] = 0
		}
	}
	b[0] = 0xFF
	return b
}

// hugeLine writes one assistant text line of n bytes (newline included),
// valid JSON had it been read whole, in 64 KiB pieces so the fake itself
// never holds it.
func (p *player) hugeLine(n int64) {
	head := `{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"`
	tail := `"}]},"session_id":"` + p.session + `"}`
	fill := n - int64(len(head)+len(tail)) - 1
	if fill < 0 {
		fill = 0
	}
	chunk := []byte(strings.Repeat("x", 64<<10))
	if _, err := p.out.WriteString(head); err != nil {
		return
	}
	for fill > 0 {
		k := min(fill, int64(len(chunk)))
		if _, err := p.out.Write(chunk[:k]); err != nil {
			return
		}
		fill -= k
	}
	p.raw([]byte(tail))
}

// flood writes exactly n bytes to stderr, in 1 MiB pieces, ending with
// StderrFloodEnd when n leaves room for it.
func (p *player) flood(n int64) error {
	line := "fakeagent: stderr noise 0123456789 abcdefghijklmnopqrstuvwxyz\n"
	chunk := []byte(strings.Repeat(line, (1<<20)/len(line)))
	body := n
	if n >= int64(len(StderrFloodEnd)) {
		body -= int64(len(StderrFloodEnd))
	}
	for body > 0 {
		k := min(body, int64(len(chunk)))
		if _, err := p.errw.Write(chunk[:k]); err != nil {
			return fmt.Errorf("write stderr: %w", err)
		}
		body -= k
	}
	if n >= int64(len(StderrFloodEnd)) {
		if _, err := io.WriteString(p.errw, StderrFloodEnd); err != nil {
			return fmt.Errorf("write stderr: %w", err)
		}
	}
	return nil
}

// forkDaemon starts this binary as a daemon that outlives the agent and
// writes its pid to the pid file (before the agent prints anything, so a
// test that saw the init line can read it).
func (p *player) forkDaemon() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.Command(exe, daemonFlag)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: p.o.DaemonSetsid}
	if p.o.DaemonScrub {
		cmd.Env = []string{}
	}
	if p.o.DaemonInherit {
		// The very descriptors, not a copy through this process.
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", exe, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if p.o.PIDFile != "" {
		if err := os.WriteFile(p.o.PIDFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
	}
	return nil
}

// waitGate reads one byte from the named pipe gate.
func waitGate(gate string) error {
	f, err := os.Open(gate)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	_, err = io.ReadFull(f, b[:])
	return err
}

// sleepThread sleeps d in one nanosleep system call, made raw so that the
// Go runtime does not see a thread blocked in a system call. time.Sleep
// goes through the scheduler (timers, an idle thread spinning, a poll with
// a timeout), and a plain syscall.Nanosleep makes the runtime's monitor
// thread take the processor back every time and then check again every
// 20 µs; either way, 100 fakes sleeping 5 ms between events took a whole
// 2-core machine (BenchmarkPipelineLatencyAgentsAlone). The fake runs one
// goroutine, so nothing waits for the processor meanwhile.
func sleepThread(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for {
		var rem syscall.Timespec
		_, _, errno := syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), uintptr(unsafe.Pointer(&rem)), 0)
		if errno != syscall.EINTR {
			return
		}
		ts = rem
	}
}
