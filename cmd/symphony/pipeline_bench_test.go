package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/components"
	"github.com/symphony-oss/symphony/components/agentrunner"
	"github.com/symphony-oss/symphony/components/workflow"
	"github.com/symphony-oss/symphony/components/workspace"
	"github.com/symphony-oss/symphony/internal/workflowfile"
	"github.com/symphony-oss/symphony/testkit/fakeagent"
	"github.com/symphony-oss/symphony/ui"
)

// pipeline is the event path of a running Symphony, in process: the
// workflow, workspace and agent runner components and the dashboard on a
// real bus, with fake agents as claude.
type pipeline struct {
	b   *bus.Bus
	url string
	// gate is held open on the fake agents' FAKEAGENT_GATE pipe: they
	// print their init line, then wait for a byte from it, so a round
	// measures the agents streaming together and not their one-by-one
	// start (the workload and dispatch benchmarks measure that).
	gate *os.File
	// split, when set, receives each stamped event's latency in two parts
	// (agent → runner, runner → client).
	split chan [2]time.Duration
	stop  func()
}

func startPipeline(b *testing.B, agent string, env []string) *pipeline {
	b.Helper()
	dir := b.TempDir()
	wf := filepath.Join(dir, "WORKFLOW.md")
	gatePath, gate := fakeagent.OpenGate(b)
	env = append(env, fakeagent.EnvGate+"="+gatePath)
	// The fake agent reads its options from the environment; a wrapper
	// script gives it this benchmark's.
	wrapper := filepath.Join(dir, "agent.sh")
	script := "#!/bin/sh\nexport " + strings.Join(env, " ") + "\nexec " + agent + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(wf, []byte(fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}}
workspace: {root: ws}
agent: {max_concurrent_agents: 200, max_turns: 1}
claude: {command: %q, turn_timeout_ms: 600000, stall_timeout_ms: 600000}
---
Work on {{ issue.identifier }}.
`, wrapper)), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "issues"), 0o755); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bs, err := bus.Open(ctx, bus.Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		b.Fatal(err)
	}
	wfc, err := workflow.New(workflow.Options{Path: wf, Bus: bs, Env: workflowfile.OSEnv()})
	if err != nil {
		b.Fatal(err)
	}
	wsc, err := workspace.New(workspace.Options{Bus: bs})
	if err != nil {
		b.Fatal(err)
	}
	arc, err := agentrunner.New(agentrunner.Options{Bus: bs})
	if err != nil {
		b.Fatal(err)
	}
	urls := make(chan string, 1)
	// 100 agents means 100 event streams at once, past the default cap.
	dash, err := ui.New(ui.Options{Bus: bs, Port: 0, OnListen: func(u string) { urls <- u }, MaxStreams: 256})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range []components.Component{wfc, wsc, arc, dash} {
		wg.Go(func() { _ = c.Run(ctx) })
	}
	p := &pipeline{b: bs, url: <-urls, gate: gate}
	p.stop = func() {
		cancel()
		wg.Wait()
		_ = bs.Close(context.Background())
	}
	// Ready once the config is in KV.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := bus.Get(ctx, bs, bus.ConfigCurrent); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no config")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

var stampRE = regexp.MustCompile(`t=(\d{19});`)

// atRE reads the time the runner recorded an agent event (its "at").
var atRE = regexp.MustCompile(`"event":\{"run_id":"[^"]*","turn":\d+,"seq":\d+,"at":"([^"]+)"`)

// follow reads one run's event stream from the dashboard's API until the
// stream ends, counting agent events and recording each stamped event's
// latency (the agent wrote the line → this client read it).
func (p *pipeline) follow(ctx context.Context, runID string, events, lastAt *atomic.Int64, lat chan<- time.Duration) error {
	var resp *http.Response
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/api/v1/runs/"+runID+"/events", nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		if r.StatusCode == http.StatusOK {
			resp = r
			break
		}
		r.Body.Close()
		// Not known yet (dispatch is being recorded): try again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.HasPrefix(string(line[:min(len(line), 20)]), `data: {"stream":"TU`) {
			continue
		}
		now := time.Now().UnixNano()
		events.Add(1)
		for {
			prev := lastAt.Load()
			if now <= prev || lastAt.CompareAndSwap(prev, now) {
				break
			}
		}
		if lat == nil {
			continue
		}
		if m := stampRE.FindSubmatch(line); m != nil {
			if t, err := strconv.ParseInt(string(m[1]), 10, 64); err == nil {
				if am := atRE.FindSubmatch(line); am != nil && p.split != nil {
					if at, err := time.Parse(time.RFC3339Nano, string(am[1])); err == nil {
						select {
						case p.split <- [2]time.Duration{at.Sub(time.Unix(0, t)), time.Unix(0, now).Sub(at)}:
						default:
						}
					}
				}
				select {
				case lat <- time.Duration(now - t):
				default:
				}
			}
		}
	}
	return sc.Err()
}

// runAgents dispatches n runs and follows each through the dashboard
// until every run's stream ended. Once every agent has started (its prompt
// and init line reached the client) it opens the gate, and it returns the
// agent events read after that and how long from the gate to the last one
// (the streams' own ending, a moment later, is not part of the pipeline).
func (p *pipeline) runAgents(b *testing.B, round, n int, lat chan<- time.Duration) (int64, time.Duration, roundCPU) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var events, lastAt atomic.Int64
	var gateOpen atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 2*n) // a follow error and an early end, each
	for i := range n {
		runID := fmt.Sprintf("bench-%d-%d", round, i)
		ident := fmt.Sprintf("BENCH-%d", i)
		for {
			_, err := bus.Ask(ctx, p.b, bus.AgentDispatch, bus.Dispatch{RunID: runID,
				Issue: bus.Issue{ID: "id-" + ident, Identifier: ident, Title: "bench", State: "Todo"}})
			var remote *bus.RemoteError
			if errors.As(err, &remote) && remote.Code == "no_config" && ctx.Err() == nil {
				// The runner's own watch has not delivered the
				// configuration yet (the store already holds it).
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			break
		}
		wg.Go(func() {
			if err := p.follow(ctx, runID, &events, &lastAt, lat); err != nil {
				errs <- fmt.Errorf("%s: %w", runID, err)
			}
			if !gateOpen.Load() {
				// Its stream ended before the gate opened: the run ended
				// without streaming, and the round would wait for it.
				errs <- fmt.Errorf("%s ended before the gate opened: %s", runID, p.runStatus(runID))
			}
		})
	}
	// Two events per run before the gate: its prompt and the init line.
	for events.Load() < int64(2*n) {
		select {
		case err := <-errs:
			b.Fatal(err)
		case <-ctx.Done():
			b.Fatalf("only %d of %d agents started", events.Load()/2, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
	before := events.Load()
	if path := os.Getenv(streamProfileEnv); path != "" && round == 0 {
		stop := startCPUProfile(b, path)
		defer stop()
	}
	selfBefore, agentsBefore := cpuTimes(b)
	start := time.Now()
	// One byte per agent: each reads one.
	gateOpen.Store(true)
	if _, err := p.gate.Write(make([]byte, n)); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	// Every run has ended (its stream did), so its agent was waited for
	// and its CPU time counted among this process's children.
	selfAfter, agentsAfter := cpuTimes(b)
	return events.Load() - before, time.Unix(0, lastAt.Load()).Sub(start), roundCPU{self: selfAfter - selfBefore, agents: agentsAfter - agentsBefore}
}

// streamProfileEnv names a file for a CPU profile of the first round's
// streaming only (from the gate to the end), without the agents' start or
// the raw JetStream ceiling (go tool task bench:profile sets it).
const streamProfileEnv = "SYMPHONY_BENCH_STREAM_CPUPROFILE"

func startCPUProfile(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

// runStatus says how a run ended, from its summary.
func (p *pipeline) runStatus(runID string) string {
	k, err := bus.RunSummaries.Key(runID)
	if err != nil {
		return err.Error()
	}
	e, err := bus.Get(context.Background(), p.b, k)
	if err != nil {
		return err.Error()
	}
	return string(e.Value.Status) + ": " + e.Value.Error
}

// roundCPU is the CPU time one round used: self is this process (Symphony's
// components and the benchmark's own event-stream clients) from the gate
// to the end; agents the fake agents, over their whole lives.
type roundCPU struct{ self, agents time.Duration }

// cpuTimes reads the CPU time (user and system) of this process and of its
// children that were waited for.
func cpuTimes(b *testing.B) (self, children time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return self, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPipeline measures the whole event path: a fake agent's stdout
// line → parsed → stored in JetStream (acknowledged) → read by a client of
// the dashboard's event stream, with 1, 10 and 100 agents flooding at
// once. Beside it, in the same run, raw JetStream async publishing of
// messages of the same size is the ceiling (events/s and the ratio).
func BenchmarkPipeline(b *testing.B) {
	agent := fakeagent.Build(b)
	// Events over all agents of a round: enough that the agents stream for
	// seconds, so the figure is the pipeline's rate and not the cost of
	// starting 100 processes (measured apart by the workload benchmark).
	const perAgentTotal = 100000
	raw := rawJetStream(b, 512, 100000)
	for _, agents := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			events := perAgentTotal / agents
			p := startPipeline(b, agent, []string{"FAKEAGENT_EVENTS=" + strconv.Itoa(events), "FAKEAGENT_SIZE=256", "GOMAXPROCS=1"})
			defer p.stop()
			var total int64
			var busy time.Duration
			var cpu roundCPU
			round := 0
			b.ResetTimer()
			for b.Loop() {
				n, d, c := p.runAgents(b, round, agents, nil)
				total, busy = total+n, busy+d
				cpu.self, cpu.agents = cpu.self+c.self, cpu.agents+c.agents
				round++
			}
			rate := float64(total) / busy.Seconds()
			b.ReportMetric(rate, "events/s")
			// Where the two cores went, per event: this process (Symphony
			// and the benchmark's clients) and the fake agents.
			b.ReportMetric(float64(cpu.self.Microseconds())/float64(total), "self-cpu-µs/event")
			b.ReportMetric(float64(cpu.agents.Microseconds())/float64(total), "agents-cpu-µs/event")
			// How many agent events one stored message carries on average
			// (the runner stores what it read in one go as one message).
			if s, err := p.b.JetStream().Stream(context.Background(), bus.StreamTurns); err == nil {
				if info, err := s.Info(context.Background()); err == nil && info.State.Msgs > 0 {
					b.ReportMetric(float64(total)/float64(info.State.Msgs), "events/msg")
				}
			}
			b.ReportMetric(raw, "raw-js-msgs/s")
			b.ReportMetric(100*rate/raw, "%-of-raw")
		})
	}
}

// BenchmarkPipelineLatency: 100 agents each writing 200 events a second
// (one every 5 ms); p50 and p99 of agent line written → dashboard client
// read.
func BenchmarkPipelineLatency(b *testing.B) {
	agent := fakeagent.Build(b)
	p := startPipeline(b, agent, []string{"FAKEAGENT_EVENTS=400", "FAKEAGENT_INTERVAL=5ms", "FAKEAGENT_SIZE=256", "FAKEAGENT_STAMP=1", "GOMAXPROCS=1"})
	defer p.stop()
	lat := make(chan time.Duration, 1<<20)
	p.split = make(chan [2]time.Duration, 1<<20)
	round := 0
	var busy, self time.Duration
	b.ResetTimer()
	for b.Loop() {
		_, d, cpu := p.runAgents(b, round, 100, lat)
		busy, self = busy+d, self+cpu.self
		round++
	}
	close(lat)
	// How much of the two cores this process (Symphony and the clients)
	// used while the agents streamed; the agents and the kernel took the
	// rest.
	b.ReportMetric(self.Seconds()/busy.Seconds(), "self-cores")
	var all []time.Duration
	for d := range lat {
		all = append(all, d)
	}
	close(p.split)
	var toRunner, toClient []time.Duration
	for d := range p.split {
		toRunner, toClient = append(toRunner, d[0]), append(toClient, d[1])
	}
	// The two parts of the latency: the agent writing the line → the runner
	// recording the event (its "at"), and that → the client reading it.
	b.ReportMetric(ms(percentile(toRunner, 50)), "to-runner-p50-ms")
	b.ReportMetric(ms(percentile(toRunner, 99)), "to-runner-p99-ms")
	b.ReportMetric(ms(percentile(toClient, 50)), "to-client-p50-ms")
	b.ReportMetric(ms(percentile(toClient, 99)), "to-client-p99-ms")
	b.ReportMetric(float64(percentile(all, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(all)), "samples")
}

// rawJetStream is the ceiling: async publishes of size-byte messages to a
// stream on a fresh embedded server, acknowledged, in messages a second.
func rawJetStream(b *testing.B, size, n int) float64 {
	b.Helper()
	bs, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close(context.Background())
	js := bs.JetStream()
	payload := make([]byte, size)
	start := time.Now()
	for i := range n {
		subject, err := bus.TurnEvents.Subject(fmt.Sprintf("raw-%d", i%100), "1")
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(subject)
		m.Data = payload
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publishes not acknowledged")
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkPipelineLatencyAgentsAlone runs BenchmarkPipelineLatency's 100
// fake agents (400 events each, one every 5 ms, behind the same gate) with
// no Symphony at all: each agent's stdout is read by a goroutine that only
// reads the lines and the time stamped in them. It is the floor under the
// latency figure on this machine: the lateness of a reader that does
// nothing, how long the agents took against the 2 s their schedule asks
// for, and how busy the cores were.
func BenchmarkPipelineLatencyAgentsAlone(b *testing.B) {
	agentsAlone(b, 400, 5*time.Millisecond)
}

// BenchmarkPipelineAgentsAlone is the same for BenchmarkPipeline's 100
// flooding agents (1,000 events each): the rate at which a reader that
// does nothing gets their lines, the ceiling of the pipeline's figure on
// this machine, and what the agents cost per event.
func BenchmarkPipelineAgentsAlone(b *testing.B) {
	agentsAlone(b, 1000, 0)
}

func agentsAlone(b *testing.B, perAgent int, interval time.Duration) {
	agent := fakeagent.Build(b)
	const n = 100
	gatePath, gate := fakeagent.OpenGate(b)
	env := append(os.Environ(), "FAKEAGENT_EVENTS="+strconv.Itoa(perAgent), "FAKEAGENT_SIZE=256",
		"GOMAXPROCS=1", fakeagent.EnvGate+"="+gatePath)
	if interval > 0 {
		env = append(env, "FAKEAGENT_INTERVAL="+interval.String(), "FAKEAGENT_STAMP=1")
	}
	var lat []time.Duration
	var wall, agentsCPU time.Duration
	var busy, total float64
	var read int64
	for b.Loop() {
		var mu sync.Mutex
		var inits, wg sync.WaitGroup
		var lines atomic.Int64
		var last int64 // the latest read, under mu
		errs := make(chan error, n)
		cmds := make([]*exec.Cmd, n)
		for i := range n {
			cmd := exec.Command(agent, "-p", "--output-format", "stream-json", "--verbose")
			cmd.Env, cmd.Stdin = env, strings.NewReader("bench")
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			cmds[i] = cmd
			inits.Add(1)
			wg.Go(func() {
				sc := bufio.NewScanner(out)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				first := true
				var mine []time.Duration
				var mineLast int64
				for sc.Scan() {
					now := time.Now()
					if first {
						first = false
						inits.Done()
						continue
					}
					lines.Add(1)
					mineLast = now.UnixNano()
					if ns, ok := stampOf(sc.Bytes()); ok {
						mine = append(mine, now.Sub(time.Unix(0, ns)))
					}
				}
				if first {
					inits.Done() // ended without a line: reported below
				}
				if err := sc.Err(); err != nil || first {
					errs <- fmt.Errorf("agent %d: no init line or a read error: %v", i, err)
					_ = cmd.Process.Kill()
					_, _ = io.Copy(io.Discard, out)
				}
				mu.Lock()
				lat = append(lat, mine...)
				last = max(last, mineLast)
				mu.Unlock()
			})
		}
		inits.Wait()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		_, before := cpuTimes(b)
		busyBefore, totalBefore := machineCPU(b)
		start := time.Now()
		if _, err := gate.Write(make([]byte, n)); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		busyAfter, totalAfter := machineCPU(b)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
		}
		_, after := cpuTimes(b)
		wall += time.Unix(0, last).Sub(start)
		agentsCPU += after - before
		busy, total = busy+busyAfter-busyBefore, total+totalAfter-totalBefore
		read += lines.Load()
	}
	b.ReportMetric(float64(read)/wall.Seconds(), "events/s")
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s")
	// Whole lives: the agents' start and exit are in it.
	b.ReportMetric(float64(agentsCPU.Microseconds())/float64(read), "agents-cpu-µs/event")
	b.ReportMetric(100*busy/total, "%-cores-busy")
	if interval > 0 {
		b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
		b.ReportMetric((time.Duration(perAgent) * interval).Seconds(), "scheduled-s")
		b.ReportMetric(float64(len(lat)), "samples")
	}
}

// stampOf reads the agent's write time from a stamped line: FAKEAGENT_STAMP
// starts every payload with "t=<unix ns>;".
func stampOf(line []byte) (int64, bool) {
	i := bytes.Index(line, []byte(`"t=`))
	if i < 0 {
		return 0, false
	}
	rest := line[i+3:]
	j := bytes.IndexByte(rest, ';')
	if j < 0 {
		return 0, false
	}
	ns, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return ns, err == nil
}

// machineCPU reads the whole machine's busy and total CPU time, in clock
// ticks, from /proc/stat: user, nice, system, idle, iowait, irq, softirq
// and steal (guest time is already in user and nice); busy is all but idle
// and iowait.
func machineCPU(b *testing.B) (busy, total float64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: %q", line)
	}
	for i, v := range f[1:min(len(f), 9)] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatal(err)
		}
		total += x
		if i != 3 && i != 4 { // idle, iowait
			busy += x
		}
	}
	return busy, total
}
