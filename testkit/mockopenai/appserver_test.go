package mockopenai_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/testkit/mockopenai"
)

// msgTimeout bounds the wait for any one message from the app-server; a
// turn against the mock takes well under a second.
const msgTimeout = 60 * time.Second

// rpcMsg is one JSON-RPC message, as read from or written to the server.
type rpcMsg = map[string]any

// rpcError, returned by an onRequest handler, answers with a JSON-RPC
// error object instead of a result.
type rpcError map[string]any

// appServer is a minimal client of the real `codex app-server`, enough to
// observe the protocol.
type appServer struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan rpcMsg
	stderr *lockedBuffer
	nextID int

	// onRequest answers a server-to-client request (approval, tool call);
	// nil fails the test on any.
	onRequest func(method string, params rpcMsg) any

	stopOnce func()

	mu  sync.Mutex
	log []string // transcript lines {"dir":">"|"<","msg":...}
}

// stop closes the server's stdin and waits for it to exit (killing it
// after 10 s).
func (a *appServer) stop() { a.stopOnce() }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// codexCLI returns the codex binary or fails: these tests never skip.
func codexCLI(t *testing.T) string {
	t.Helper()
	bin, err := mockopenai.CLIPath()
	if err != nil {
		t.Fatalf("the real codex CLI is required: %v", err)
	}
	return bin
}

// startAppServer spawns `codex app-server` against srv with a fresh
// CODEX_HOME and sends initialize + initialized.
func startAppServer(t *testing.T, srv *mockopenai.Server, experimental bool) *appServer {
	t.Helper()
	return startAppServerIn(t, srv, experimental, filepath.Join(t.TempDir(), "codex-home"))
}

// startAppServerIn is startAppServer with CODEX_HOME at home (a second
// process on the same home can resume the first one's threads).
func startAppServerIn(t *testing.T, srv *mockopenai.Server, experimental bool, home string) *appServer {
	t.Helper()
	bin := codexCLI(t)
	env, err := mockopenai.CodexHome(home, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "app-server")
	cmd.Env = append(os.Environ(), env...)
	a := &appServer{t: t, cmd: cmd, lines: make(chan rpcMsg, 1024), stderr: &lockedBuffer{}}
	cmd.Stderr = a.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if a.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s app-server: %v", bin, err)
	}
	readerDone := make(chan struct{})
	go func() { // ends when the process's stdout closes
		defer close(readerDone)
		defer close(a.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			var m rpcMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("app-server wrote a non-JSON line %q: %v", sc.Text(), err)
				continue
			}
			a.record("<", sc.Bytes())
			a.lines <- m
		}
	}()
	a.stopOnce = sync.OnceFunc(func() {
		_ = a.stdin.Close()
		done := make(chan error, 1)
		go func() { <-readerDone; done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	t.Cleanup(func() {
		a.stop()
		if dir := os.Getenv("MOCKOPENAI_TRANSCRIPT_DIR"); dir != "" {
			a.writeTranscript(transcriptPath(dir, t.Name()))
		}
		if t.Failed() {
			t.Logf("app-server stderr:\n%s", a.stderr.String())
		}
	})
	a.call("initialize", rpcMsg{
		"clientInfo":   rpcMsg{"name": "symphony-test", "version": "0.0.1"},
		"capabilities": rpcMsg{"experimentalApi": experimental},
	})
	a.send(rpcMsg{"method": "initialized"})
	return a
}

func (a *appServer) record(dir string, raw []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, fmt.Sprintf(`{"dir":%q,"msg":%s}`, dir, raw))
}

// transcriptPath names a test's transcript file, numbered when the test
// runs more than one app-server.
func transcriptPath(dir, name string) string {
	base := filepath.Join(dir, strings.ReplaceAll(name, "/", "-"))
	path := base + ".jsonl"
	for i := 2; ; i++ {
		if _, err := os.Stat(path); err != nil {
			return path
		}
		path = fmt.Sprintf("%s-%d.jsonl", base, i)
	}
}

func (a *appServer) writeTranscript(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := os.WriteFile(path, []byte(strings.Join(a.log, "\n")+"\n"), 0o644); err != nil {
		a.t.Errorf("transcript: %v", err)
	}
}

func (a *appServer) send(m rpcMsg) {
	a.t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		a.t.Fatal(err)
	}
	a.record(">", raw)
	if _, err := a.stdin.Write(append(raw, '\n')); err != nil {
		a.t.Fatalf("write to app-server: %v", err)
	}
}

// next returns the next message, answering server requests on the way
// (they are returned too, after the answer went out).
func (a *appServer) next() rpcMsg {
	a.t.Helper()
	select {
	case m, ok := <-a.lines:
		if !ok {
			a.t.Fatalf("app-server closed its stdout; stderr:\n%s", a.stderr.String())
		}
		if method, isReq := m["method"].(string); isReq && m["id"] != nil {
			if a.onRequest == nil {
				a.t.Fatalf("unexpected server request %v", m)
			}
			params, _ := m["params"].(rpcMsg)
			switch ans := a.onRequest(method, params).(type) {
			case rpcError:
				a.send(rpcMsg{"id": m["id"], "error": rpcMsg(ans)})
			default:
				a.send(rpcMsg{"id": m["id"], "result": ans})
			}
		}
		return m
	case <-time.After(msgTimeout):
		a.t.Fatalf("no message from the app-server in %s", msgTimeout)
		return nil
	}
}

// call sends a request and returns its result, failing on an error reply.
// Messages that arrive meanwhile are returned as seen.
func (a *appServer) call(method string, params rpcMsg) (result rpcMsg, seen []rpcMsg) {
	a.t.Helper()
	result, errObj, seen := a.try(method, params)
	if errObj != nil {
		a.t.Fatalf("%s: error reply %v", method, errObj)
	}
	return result, seen
}

// try sends a request and returns its result or error object.
func (a *appServer) try(method string, params rpcMsg) (result, errObj rpcMsg, seen []rpcMsg) {
	a.t.Helper()
	id := a.nextID
	a.nextID++
	a.send(rpcMsg{"method": method, "id": id, "params": params})
	for {
		m := a.next()
		if _, isNote := m["method"]; !isNote && m["id"] == float64(id) {
			result, _ = m["result"].(rpcMsg)
			errObj, _ = m["error"].(rpcMsg)
			return result, errObj, seen
		}
		seen = append(seen, m)
	}
}

// startThread sends thread/start and returns the thread id.
func (a *appServer) startThread(params rpcMsg) string {
	a.t.Helper()
	res, _ := a.call("thread/start", params)
	thread, _ := res["thread"].(rpcMsg)
	id, _ := thread["id"].(string)
	if id == "" {
		a.t.Fatalf("thread/start result without thread.id: %v", res)
	}
	return id
}

// turn runs turn/start with text and returns every message up to and
// including turn/completed.
func (a *appServer) turn(threadID, text string) []rpcMsg {
	a.t.Helper()
	_, seen := a.call("turn/start", rpcMsg{"threadId": threadID, "input": []any{rpcMsg{"type": "text", "text": text}}})
	for {
		if n := len(seen); n > 0 && seen[n-1]["method"] == "turn/completed" {
			return seen
		}
		seen = append(seen, a.next())
	}
}

// byMethod returns the params of the messages with that method.
func byMethod(msgs []rpcMsg, method string) []rpcMsg {
	var out []rpcMsg
	for _, m := range msgs {
		if m["method"] == method {
			p, _ := m["params"].(rpcMsg)
			out = append(out, p)
		}
	}
	return out
}

// dig walks nested maps by keys.
func dig(m rpcMsg, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(rpcMsg)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

// completedTurn returns turn/completed's turn, failing without one.
func completedTurn(t *testing.T, msgs []rpcMsg) rpcMsg {
	t.Helper()
	done := byMethod(msgs, "turn/completed")
	if len(done) != 1 {
		t.Fatalf("want one turn/completed, got %d", len(done))
	}
	turn, _ := done[0]["turn"].(rpcMsg)
	return turn
}

// lastTotal is tokenUsage.total of the last thread/tokenUsage/updated.
func lastTotal(t *testing.T, msgs []rpcMsg) rpcMsg {
	t.Helper()
	ups := byMethod(msgs, "thread/tokenUsage/updated")
	if len(ups) == 0 {
		t.Fatal("no thread/tokenUsage/updated notification")
	}
	total, _ := dig(ups[len(ups)-1], "tokenUsage", "total").(rpcMsg)
	return total
}

// completedItems returns the items of item/completed with that type.
func completedItems(msgs []rpcMsg, typ string) []rpcMsg {
	var out []rpcMsg
	for _, p := range byMethod(msgs, "item/completed") {
		if item, _ := p["item"].(rpcMsg); item["type"] == typ {
			out = append(out, item)
		}
	}
	return out
}

func threadParams(cwd, approval string) rpcMsg {
	return rpcMsg{"cwd": cwd, "approvalPolicy": approval, "sandbox": "danger-full-access"}
}
