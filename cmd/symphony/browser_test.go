package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds the whole browser test; each wait inside is
// generous because a cold chromium on a 2-core machine is slow.
const browserTimeout = 3 * time.Minute

// chromiumPath finds Debian's chromium. A missing browser fails the test:
// .ci/run and `go tool task browser` install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: install it (`go tool task system`, which `go tool task test` runs) — the dashboard's browser test does not skip")
	return ""
}

// artifactDir is where the screenshots go: $SYMPHONY_ARTIFACTS, else a
// directory under the system temp dir that outlives the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SYMPHONY_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "symphony-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInBrowser drives the live dashboard of a real `symphony run`
// in chromium: the overview shows a run start without a reload, the run
// page's transcript grows live, the run is canceled from the page and its
// status changes; no script injected through an issue title ever runs.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	issues := filepath.Join(dir, "issues")
	if err := os.MkdirAll(issues, 0o755); err != nil {
		t.Fatal(err)
	}
	issueFile := filepath.Join(issues, "UI-1.md")
	writeIssue := func(state string) {
		writeFile(t, issueFile, fmt.Sprintf("---\ntitle: \"Fix <script>alert(1)</script> in the <b>title</b>\"\nstate: %s\npriority: 1\nlabels: [ui]\n---\nThe dashboard must stay inert.\n", state))
	}
	writeIssue("Backlog")
	writeFile(t, filepath.Join(issues, "UI-2.md"), "---\ntitle: A finished neighbour\nstate: Done\n---\n")
	wf := filepath.Join(dir, "WORKFLOW.md")
	writeFile(t, wf, fmt.Sprintf(`---
tracker: {kind: files, provider: {path: issues}, active_states: [Todo], terminal_states: [Done]}
polling: {interval_ms: 300}
workspace: {root: ws}
agent: {max_concurrent_agents: 2, max_turns: 1}
claude: {command: %q, turn_timeout_ms: 600000, stall_timeout_ms: 600000}
---
Work on {{ issue.identifier }}: {{ issue.title }}.
`, os.Args[0]))
	t.Setenv(fakeAgentEnv, "chatty")
	p := start(t, "--data-dir", filepath.Join(dir, "data"), "run", wf)
	line := p.waitFor(t, "symphony: dashboard on ")
	base := strings.TrimSpace(line[strings.Index(line, "http://"):])

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 800),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	// The first Run starts the browser and must not carry a timeout (it
	// would bound the browser's life); the steps after it do.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, browserTimeout)
	defer cancel()

	// Any dialog means a script from the issue title ran.
	var dialogs sync.Map
	if err := chromedp.Listen(bctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Store(d.Message, true)
		}
	}); err != nil {
		t.Fatal(err)
	}
	fail := func(what string, err error) {
		t.Helper()
		var seen []string
		dialogs.Range(func(k, _ any) bool { seen = append(seen, fmt.Sprint(k)); return true })
		t.Fatalf("%s: %v (dialogs opened: %q)\nsymphony output:\n%s", what, err, seen, p.all)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			fail(what, err)
		}
	}
	eval := func(what, expr string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			fail(what, err)
		}
		return v
	}
	text := func(what, sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail(what, err)
		}
		return v
	}
	// poll evaluates a JS predicate until it holds.
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second))); err != nil {
			fail(what, err)
		}
	}
	screenshot := func(name string) string {
		t.Helper()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			fail("screenshot "+name, err)
		}
		path := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// The overview, before anything runs; a marker that a reload would lose.
	run("load the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#counts")))
	poll("live stream connected", `document.querySelector('[sse-connect]') !== null && window.htmx !== undefined`)
	eval("mark the page", `window.__noReload = 42`)
	if got := text("read running", "#running"); !strings.Contains(got, "No agent is running") {
		t.Fatalf("running section before dispatch: %q", got)
	}

	// The issue becomes active: the next poll dispatches it, and the row
	// appears through the live stream.
	writeIssue("Todo")
	poll("running row appears live", `(document.querySelector('#running-table') || {innerText: ''}).innerText.includes('UI-1')`)
	if eval("check no reload", `window.__noReload`) != 42 {
		t.Fatal("the overview reloaded instead of updating live")
	}
	poll("last event moves", `/assistant_text|tool_/.test(document.querySelector('#running-table').innerText)`)
	overviewPNG := screenshot("overview.png")

	// The run page: its transcript grows while we watch.
	// The table is re-rendered every second (ages move): follow its link
	// by address rather than clicking a node that may be replaced.
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#running-table a[href^="/runs/"]').getAttribute('href')`))
	if err != nil || !strings.HasPrefix(href, "/runs/") {
		fail("read the run link", fmt.Errorf("%q: %v", href, err))
	}
	run("open the run page", chromedp.Navigate(base+href), chromedp.WaitVisible(chromedp.CSS("#transcript")))
	eval("mark the run page", `window.__noReload = 43`)
	before := eval("count entries", `document.querySelectorAll('#transcript li.ev').length`)
	poll("transcript grows live", fmt.Sprintf(`document.querySelectorAll('#transcript li.ev').length > %d + 4`, before))
	if eval("check no reload", `window.__noReload`) != 43 {
		t.Fatal("the run page reloaded instead of updating live")
	}
	poll("tool calls shown", `document.querySelector('#transcript').innerText.includes('Bash')`)
	// At the end of the transcript the page follows it; scrolled up, it
	// stops and offers to follow again.
	poll("follows the transcript", `document.getElementById('follow').hidden && window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 200`)
	poll("transcript taller than the window", `document.documentElement.scrollHeight > window.innerHeight + 300`)
	// The operator scrolls up with the mouse wheel.
	if _, err := chromedp.Call(ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseWheel, X: 400, Y: 300, DeltaX: 1, DeltaY: -100000}); err != nil {
		fail("wheel up", err)
	}
	poll("stops following", `!document.getElementById('follow').hidden`)
	before = eval("count entries", `document.querySelectorAll('#transcript li.ev').length`)
	poll("more entries", fmt.Sprintf(`document.querySelectorAll('#transcript li.ev').length > %d`, before))
	// Still where the operator left it, near the top: not following the
	// transcript's end. The run's controls above the transcript are
	// swapped live, and the browser's scroll anchoring may move the view
	// by their change in height (63 px seen once in CI under load).
	if y := eval("scroll position", `Math.round(window.scrollY)`); y > 300 || eval("at the end", `window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 200 ? 1 : 0`) == 1 {
		t.Errorf("the page scrolled to %dpx although the operator scrolled up", y)
	}
	run("follow again", chromedp.Click(chromedp.CSS("#follow")))
	poll("follows again", `document.getElementById('follow').hidden`)
	if got := text("read the transcript", "#transcript"); !strings.Contains(got, "<b>the code</b>") {
		t.Errorf("agent markup not shown as text: %q", clip(got, 400))
	}
	if got := text("read the header", "#run-header"); !strings.Contains(got, "<script>alert(1)</script>") {
		t.Errorf("issue title not shown as text in the header: %q", got)
	}
	runPNG := screenshot("run.png")

	// Cancel from the page: confirm, then the status changes.
	run("ask to cancel", chromedp.Click(chromedp.CSS("#cancel-link")), chromedp.WaitVisible(chromedp.CSS("#confirm-cancel")))
	run("confirm", chromedp.Click(chromedp.CSS("#confirm-cancel")), chromedp.WaitVisible(chromedp.CSS("#run-status")))
	poll("status becomes canceled", `document.querySelector('#run-status').innerText.trim() === 'canceled'`)
	run("overview after cancel", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#blocked")))
	poll("issue held as blocked", `document.querySelector('#blocked').innerText.includes('UI-1')`)

	// With JavaScript off the pages still read in full (and refresh
	// themselves while something runs).
	runPath := eval("run link", `document.querySelector('#recent a[href^="/runs/"]') ? 1 : 0`)
	if runPath != 1 {
		t.Fatal("the canceled run is not among the recent runs")
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		fail("turn scripts off", err)
	}
	run("overview without JS", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#recent")))
	if got := text("overview without JS", "#recent"); !strings.Contains(got, "UI-1") || !strings.Contains(got, "canceled") {
		t.Errorf("overview without JavaScript: %q", clip(got, 300))
	}
	// The spend chart is SVG drawn by the server: with scripts off it is
	// there and laid out, a bar for each of the 30 days in each panel.
	run("spend chart without JS", chromedp.WaitVisible(chromedp.CSS("#chart-usd")), chromedp.WaitVisible(chromedp.CSS("#chart-outcomes")))
	box, err := chromedp.Run(ctx, chromedp.Dimensions(chromedp.CSS("#chart-usd")))
	if err != nil || box.Width < 100 || box.Height < 20 {
		fail("spend chart laid out", fmt.Errorf("box %+v: %v", box, err))
	}
	bars, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#chart-usd rect")))
	if err != nil || len(bars) != 30 {
		fail("spend chart bars", fmt.Errorf("%d bars: %v", len(bars), err))
	}
	if got := text("spend without JS", "#spend-today-usd"); !strings.Contains(got, "spent today") {
		t.Errorf("today's spend without JavaScript: %q", clip(got, 300))
	}
	spendPNG := screenshot("spend.png")
	run("run page without JS", chromedp.Click(chromedp.CSS(`#recent a[href^="/runs/"]`)), chromedp.WaitVisible(chromedp.CSS("#transcript")))
	if got := text("transcript without JS", "#transcript"); !strings.Contains(got, "Step 1") || !strings.Contains(got, "run finished") {
		t.Errorf("run page without JavaScript: %q", clip(got, 300))
	}

	dialogs.Range(func(k, _ any) bool {
		t.Errorf("a script from outside data ran: dialog %q", k)
		return true
	})
	t.Logf("screenshots: %s, %s, %s", overviewPNG, runPNG, spendPNG)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
