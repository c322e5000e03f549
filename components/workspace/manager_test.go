package workspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/bus/safeid"
	"github.com/symphony-oss/symphony/internal/workflowfile"
)

const testTimeout = 30 * time.Second

// testEnviron is the parent environment for hooks in tests: the process's,
// with HOME pointing at an empty directory so that bash -l does not run the
// machine's login profile (which may be slow or locked by another shell).
func testEnviron(t *testing.T, extra ...string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "HOME="+t.TempDir()), extra...)
}

func cfgWith(root string, hooks bus.HooksConfig) bus.Config {
	if hooks.TimeoutMS == 0 {
		hooks.TimeoutMS = 10000
	}
	return bus.Config{Workspace: bus.WorkspaceConfig{Root: root}, Hooks: hooks,
		Tracker: bus.TrackerConfig{Provider: bus.TrackerProvider{APIKey: bus.NewSecret("LINEAR_API_KEY", "")}}}
}

// plainRunner runs hooks without a bus.
func plainRunner(cfg bus.Config, environ []string) hookRunner {
	return func(ctx context.Context, name, script string, issue bus.Issue, dir string) (bus.HookResult, error) {
		out, dur, err := runHook(ctx, name, script, dir, environ, secretDrop(bus.ConfigSnapshot{Config: cfg}, environ), issue, cfg.Hooks.Timeout())
		if err != nil {
			return bus.HookResult{}, err
		}
		return bus.HookResult{Hook: name, Ran: true, DurationMS: dur.Milliseconds(), Output: out}, nil
	}
}

func issue(id string) bus.Issue {
	return bus.Issue{ID: "id-" + id, Identifier: id, Title: "t", State: "Todo", Labels: []string{}}
}

func TestUnsafeIdentifiersNeverReachTheFileSystem(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	var m Manager
	touched := 0
	run := func(context.Context, string, string, bus.Issue, string) (bus.HookResult, error) {
		touched++
		return bus.HookResult{}, nil
	}
	cfg := cfgWith(root, bus.HooksConfig{AfterCreate: "true", BeforeRun: "true", BeforeRemove: "true"})
	for _, id := range []string{"../x", "a/b", ".", "..", "", "АBC-1", "a\x00b", "a\nb", strings.Repeat("x", 10240) + "/", "$(rm -rf ~)", "/etc", "x y"} {
		var ue *safeid.UnsafeIdentifierError
		if _, err := m.Prepare(t.Context(), cfg, issue(id), run); !errors.As(err, &ue) {
			t.Errorf("Prepare(%q) = %v", id, err)
		}
		if _, err := m.Hook(t.Context(), cfg, bus.HookBeforeRun, issue(id), run); !errors.As(err, &ue) {
			t.Errorf("Hook(%q) = %v", id, err)
		}
		if _, err := m.Remove(t.Context(), cfg, issue(id), run); !errors.As(err, &ue) {
			t.Errorf("Remove(%q) = %v", id, err)
		}
	}
	if touched != 0 {
		t.Errorf("%d hooks ran for unsafe identifiers", touched)
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 0 {
		t.Errorf("the file system was touched: %v", entries)
	}
}

func TestLifecycle(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	cfg := cfgWith(root, bus.HooksConfig{AfterCreate: `echo created >> "$SYMPHONY_WORKSPACE/log"`, BeforeRun: "echo before >> log", AfterRun: "echo after >> log", BeforeRemove: "echo removing > ../removed-" + `"$ISSUE_IDENTIFIER"`})
	var m Manager
	run := plainRunner(cfg, testEnviron(t))
	r, err := m.Prepare(t.Context(), cfg, issue("ABC-1"), run)
	if err != nil || !r.CreatedNow || r.Path != filepath.Join(root, "ABC-1") {
		t.Fatalf("first prepare: %+v %v", r, err)
	}
	r, err = m.Prepare(t.Context(), cfg, issue("ABC-1"), run)
	if err != nil || r.CreatedNow {
		t.Fatalf("second prepare: %+v %v", r, err)
	}
	if _, err := m.Hook(t.Context(), cfg, bus.HookBeforeRun, issue("ABC-1"), run); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Hook(t.Context(), cfg, bus.HookAfterRun, issue("ABC-1"), run); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(r.Path, "log"))
	if string(log) != "created\nbefore\nafter\n" {
		t.Errorf("after_create must run once, then the run hooks: %q", log)
	}
	if _, err := m.Hook(t.Context(), cfg, bus.HookAfterCreate, issue("ABC-1"), run); err == nil {
		t.Error("after_create must not be runnable on request")
	}
	rm, err := m.Remove(t.Context(), cfg, issue("ABC-1"), run)
	if err != nil || !rm.Existed {
		t.Fatalf("remove: %+v %v", rm, err)
	}
	if _, err := os.Stat(r.Path); !errors.Is(err, os.ErrNotExist) {
		t.Error("workspace still there")
	}
	if _, err := os.Stat(filepath.Join(root, "removed-ABC-1")); err != nil {
		t.Error("before_remove did not run")
	}
	if rm, err := m.Remove(t.Context(), cfg, issue("ABC-1"), run); err != nil || rm.Existed {
		t.Errorf("second remove: %+v %v", rm, err)
	}
}

func TestFailuresAndRefusals(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	var m Manager
	cfg := cfgWith(root, bus.HooksConfig{AfterCreate: "echo partial > f; echo broken >&2; exit 3"})
	_, err := m.Prepare(t.Context(), cfg, issue("ABC-2"), plainRunner(cfg, testEnviron(t)))
	var he *HookError
	if !errors.As(err, &he) || he.ExitCode != 3 || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("after_create failure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "ABC-2")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the half-made workspace was not removed")
	}
	if _, err := os.Lstat(markerPath(root, "ABC-2")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the failed creation's marker was left behind")
	}
	// after_create timing out also aborts and removes.
	cfg = cfgWith(root, bus.HooksConfig{AfterCreate: "sleep 30", TimeoutMS: 200})
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-3"), plainRunner(cfg, testEnviron(t))); !errors.As(err, &he) || !he.TimedOut {
		t.Fatalf("after_create timeout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "ABC-3")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the timed-out workspace was not removed")
	}
	// A file where the workspace should be.
	if err := os.WriteFile(filepath.Join(root, "ABC-4"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = cfgWith(root, bus.HooksConfig{})
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-4"), plainRunner(cfg, testEnviron(t))); !errors.Is(err, ErrNotDirectory) {
		t.Errorf("non-directory: %v", err)
	}
	// A symlink planted at <root>/<id> pointing outside the root.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "ABC-5")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-5"), plainRunner(cfg, testEnviron(t))); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("planted symlink: %v", err)
	}
	// A symlink to another issue's workspace, inside the root, is refused
	// too: one issue never works in another's directory.
	if err := os.Mkdir(filepath.Join(root, "ABC-10"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "ABC-10"), filepath.Join(root, "ABC-11")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-11"), plainRunner(cfg, testEnviron(t))); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("symlink to a sibling workspace: %v", err)
	}
	ran := false
	cfg.Hooks.BeforeRemove = "true"
	spy := func(context.Context, string, string, bus.Issue, string) (bus.HookResult, error) {
		ran = true
		return bus.HookResult{}, nil
	}
	if _, err := m.Remove(t.Context(), cfg, issue("ABC-5"), spy); err != nil || ran {
		t.Errorf("removing a planted symlink: %v, hook ran=%v", err, ran)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Error("the symlink's target was touched")
	}
	// before_run failure is returned (it aborts the attempt).
	cfg = cfgWith(root, bus.HooksConfig{BeforeRun: "exit 7"})
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-6"), plainRunner(cfg, testEnviron(t))); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Hook(t.Context(), cfg, bus.HookBeforeRun, issue("ABC-6"), plainRunner(cfg, testEnviron(t))); !errors.As(err, &he) || he.ExitCode != 7 {
		t.Errorf("before_run failure: %v", err)
	}
	// before_remove failure: logged by the runner, removal goes on.
	cfg = cfgWith(root, bus.HooksConfig{BeforeRemove: "exit 1"})
	if rm, err := m.Remove(t.Context(), cfg, issue("ABC-6"), plainRunner(cfg, testEnviron(t))); err != nil || !rm.Existed {
		t.Errorf("before_remove failure must not stop removal: %+v %v", rm, err)
	}
}

// TestUnfinishedCreationIsRedone: a workspace whose after_create was cut
// short (Symphony killed mid-clone) is discarded and created again, hook
// included, not reused half-made; a finished one is reused untouched.
func TestUnfinishedCreationIsRedone(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	removed := filepath.Join(base, "before-remove-ran")
	// after_create checks its marker is there while it runs, beside the
	// workspace and not inside it.
	cfg := cfgWith(root, bus.HooksConfig{
		AfterCreate:  `test -f "../.$ISSUE_IDENTIFIER.creating" && ! test -e .creating && echo created >> log`,
		BeforeRemove: "touch " + removed,
	})
	var m Manager
	run := plainRunner(cfg, testEnviron(t))

	// What a crash during after_create leaves: the directory, part of a
	// clone in it, and the marker.
	half := filepath.Join(root, "ABC-20")
	if err := os.MkdirAll(filepath.Join(half, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(half, "partial"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(markerPath(root, "ABC-20"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := m.Prepare(t.Context(), cfg, issue("ABC-20"), run)
	if err != nil || !r.CreatedNow || r.Path != half {
		t.Fatalf("prepare after an unfinished creation: %+v %v", r, err)
	}
	if log, _ := os.ReadFile(filepath.Join(half, "log")); string(log) != "created\n" {
		t.Errorf("after_create must run once on the recreated workspace: %q", log)
	}
	for _, old := range []string{"partial", ".git"} {
		if _, err := os.Lstat(filepath.Join(half, old)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s from the unfinished creation survived", old)
		}
	}
	if _, err := os.Lstat(markerPath(root, "ABC-20")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the marker outlived a successful creation")
	}
	if _, err := os.Stat(removed); err == nil {
		t.Error("before_remove ran on a workspace that was never finished")
	}
	// Now finished: reused as it is, no hook.
	if r, err := m.Prepare(t.Context(), cfg, issue("ABC-20"), run); err != nil || r.CreatedNow {
		t.Fatalf("second prepare: %+v %v", r, err)
	}
	if log, _ := os.ReadFile(filepath.Join(half, "log")); string(log) != "created\n" {
		t.Errorf("after_create ran on reuse: %q", log)
	}

	// A workspace without a marker (finished before this version, or made
	// by hand) is reused without the hook, its content kept.
	done := filepath.Join(root, "ABC-21")
	if err := os.Mkdir(done, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(done, "work"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := m.Prepare(t.Context(), cfg, issue("ABC-21"), run); err != nil || r.CreatedNow {
		t.Fatalf("prepare of a finished workspace: %+v %v", r, err)
	}
	if got, _ := os.ReadFile(filepath.Join(done, "work")); string(got) != "kept" {
		t.Error("a finished workspace's content was lost")
	}
	if _, err := os.Stat(filepath.Join(done, "log")); err == nil {
		t.Error("after_create ran on a finished workspace")
	}

	// A marker beside a symlink: the link is refused like any other, and
	// neither it nor its target is removed.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "ABC-22")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(markerPath(root, "ABC-22"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prepare(t.Context(), cfg, issue("ABC-22"), run); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("marker beside a symlink: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Error("the symlink's target was touched")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Error("the symlink was removed by Prepare")
	}
	// A marker that is itself a planted symlink is never written through.
	if err := os.Symlink(filepath.Join(outside, "precious"), markerPath(root, "ABC-23")); err != nil {
		t.Fatal(err)
	}
	if r, err := m.Prepare(t.Context(), cfg, issue("ABC-23"), run); err != nil || !r.CreatedNow {
		t.Fatalf("prepare with a symlinked marker: %+v %v", r, err)
	}
	if got, err := os.ReadFile(filepath.Join(outside, "precious")); err != nil || len(got) != 0 {
		t.Errorf("the marker link's target was written or removed: %q %v", got, err)
	}

	// Removing an unfinished workspace removes it and its marker, without
	// before_remove.
	if err := os.MkdirAll(filepath.Join(root, "ABC-24"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(markerPath(root, "ABC-24"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if rm, err := m.Remove(t.Context(), cfg, issue("ABC-24"), run); err != nil || !rm.Existed {
		t.Fatalf("remove of an unfinished workspace: %+v %v", rm, err)
	}
	if _, err := os.Stat(removed); err == nil {
		t.Error("before_remove ran on a workspace that was never finished")
	}
	for _, p := range []string{filepath.Join(root, "ABC-24"), markerPath(root, "ABC-24")} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived removal", p)
		}
	}
}

// TestHookInputsAreOnlyEnvironment: hostile issue text reaches a hook as
// exact bytes in environment variables and is never executed.
func TestHookInputsAreOnlyEnvironment(t *testing.T) {
	base := t.TempDir()
	pwned := filepath.Join(base, "pwned")
	root := filepath.Join(base, "ws")
	iss := issue("ABC-7")
	iss.Title = `"; touch ` + pwned + `; "`
	iss.Labels = []string{"$(id)", "`touch " + pwned + "`"}
	u := "https://x/$(touch " + pwned + ")"
	iss.URL = &u
	iss.State = "In Progress'; touch " + pwned + "; '"
	cfg := cfgWith(root, bus.HooksConfig{AfterCreate: `printf '%s' "$ISSUE_TITLE" > title; printf '%s' "$ISSUE_LABELS" > labels; printf '%s' "$ISSUE_URL" > url; printf '%s' "$ISSUE_STATE" > state; printf '%s|%s' "$ISSUE_ID" "$ISSUE_IDENTIFIER" > ids`})
	var m Manager
	r, err := m.Prepare(t.Context(), cfg, iss, plainRunner(cfg, testEnviron(t)))
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"title": iss.Title, "labels": "$(id),`touch " + pwned + "`", "url": u, "state": iss.State, "ids": "id-ABC-7|ABC-7"} {
		got, _ := os.ReadFile(filepath.Join(r.Path, file))
		if string(got) != want {
			t.Errorf("%s = %q, want the exact bytes %q", file, got, want)
		}
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("issue text was executed")
	}
}

// TestSecretRemovedFromHookEnv: unless hooks.inherit_secrets, a hook gets
// no tracker credential: not LINEAR_API_KEY, not the configured variable,
// not GitHub's token names under the github tracker, not a copy of the
// key under another name.
func TestSecretRemovedFromHookEnv(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ws")
	parent := testEnviron(t, "LINEAR_API_KEY=lin_api_hook_secret", "OTHER=kept", "MY_KEY=my_hook_secret", "COPY=my_hook_secret",
		"GH_TOKEN=gh_hook_secret", "GITHUB_TOKEN=gh_hook_secret", "GH_ENTERPRISE_TOKEN=gh_hook_secret", "GITHUB_ENTERPRISE_TOKEN=gh_hook_secret")
	// The config resolves the key from another variable; LINEAR_API_KEY is
	// still removed.
	for _, kind := range []string{bus.TrackerLinear, bus.TrackerGitHub} {
		for _, inherit := range []bool{false, true} {
			cfg := cfgWith(root, bus.HooksConfig{AfterCreate: `env > env.txt`, InheritSecrets: inherit})
			cfg.Tracker.Kind = kind
			cfg.Tracker.Provider.APIKey = bus.NewSecret("MY_KEY", "")
			id := "ABC-8" + strconv.FormatBool(inherit) + kind
			var m Manager
			r, err := m.Prepare(t.Context(), cfg, issue(id), plainRunner(cfg, parent))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(filepath.Join(r.Path, "env.txt"))
			env := string(raw)
			leaked := strings.Contains(env, "lin_api_hook_secret") || strings.Contains(env, "my_hook_secret")
			if kind == bus.TrackerGitHub {
				leaked = leaked || strings.Contains(env, "gh_hook_secret")
			} else if !strings.Contains(env, "GH_TOKEN=gh_hook_secret") {
				t.Errorf("%s: GH_TOKEN is not the Linear tracker's and stays:\n%s", kind, env)
			}
			if leaked != inherit || !strings.Contains(env, "OTHER=kept") || !strings.Contains(env, "SYMPHONY_WORKSPACE="+r.Path) {
				t.Errorf("%s inherit=%v: env:\n%s", kind, inherit, env)
			}
		}
	}
}

// TestHookTimeoutKillsTheGroup: a hook that leaves a background job behind
// and then hangs is killed with its whole process group.
func TestHookTimeoutKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "bg.pid")
	script := `sleep 600 & echo $! > ` + pidFile + `; sleep 600`
	start := time.Now()
	_, _, err := runScript(t.Context(), "before_run", script, dir, testEnviron(t), 2*time.Second)
	var he *HookError
	if !errors.As(err, &he) || !he.TimedOut || he.Code() != "hook_timed_out" {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the timeout took %v to take effect", time.Since(start))
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	deadline := time.Now().Add(testTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background job %d survived the hook's timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A hook that exits normally leaves no background job either.
	_, _, err = runScript(t.Context(), "after_run", `sleep 600 & echo $! > `+pidFile, dir, testEnviron(t), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(pidFile)
	pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	deadline = time.Now().Add(testTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background job %d outlived its hook", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat))
	return len(fields) > 2 && fields[2] != "Z"
}

func TestOutputIsCapped(t *testing.T) {
	out, _, err := runScript(t.Context(), "after_run", `head -c 200000 /dev/zero | tr '\0' x`, t.TempDir(), testEnviron(t), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > MaxHookOutput+100 || !strings.Contains(out, "bytes not kept]") {
		t.Errorf("output %d bytes", len(out))
	}
	if tr := truncate(out, LogHookOutput); len(tr) > LogHookOutput+40 {
		t.Errorf("log excerpt %d bytes", len(tr))
	}
}

// TestGitWorktreeHooks runs the example workflow's hooks for real against a
// throwaway repository.
func TestGitWorktreeHooks(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required for this test")
	}
	base := t.TempDir()
	src := filepath.Join(base, "src")
	gitEnv := testEnviron(t, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test", "GIT_CONFIG_GLOBAL=/dev/null")
	for _, args := range [][]string{{"init", "-q", "-b", "main", src}, {"-C", src, "commit", "-q", "--allow-empty", "-m", "init"}} {
		cmd := exec.Command("git", args...)
		cmd.Env = gitEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	env := map[string]string{"WORKSPACES": filepath.Join(base, "ws")}
	res, err := workflowfile.Load("../../testdata/workflows/git-worktree.WORKFLOW.md", workflowfile.Env{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, TempDir: base})
	if err != nil {
		t.Fatal(err)
	}
	cfg := res.Config
	parent := append(gitEnv, "SOURCE_REPO="+src)
	var m Manager
	r, err := m.Prepare(t.Context(), cfg, issue("DEMO-1"), plainRunner(cfg, parent))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-C", r.Path, "rev-parse", "--abbrev-ref", "HEAD")
	cmd.Env = gitEnv
	if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "symphony/DEMO-1" {
		t.Fatalf("worktree branch: %q %v", out, err)
	}
	if _, err := m.Remove(t.Context(), cfg, issue("DEMO-1"), plainRunner(cfg, parent)); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("git", "-C", src, "worktree", "list", "--porcelain")
	cmd.Env = gitEnv
	out, _ := cmd.Output()
	if strings.Contains(string(out), "DEMO-1") {
		t.Errorf("worktree still registered:\n%s", out)
	}
	cmd = exec.Command("git", "-C", src, "branch", "--list", "symphony/DEMO-1")
	cmd.Env = gitEnv
	if out, _ := cmd.Output(); len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("branch still there: %s", out)
	}
	if _, err := os.Stat(r.Path); !errors.Is(err, os.ErrNotExist) {
		t.Error("workspace still on disk")
	}
}

// TestInterruptedRemovalIsRedone: a removal cut short after before_remove
// (a crash, or a failure, part way through the delete) leaves a marked
// tree: the next Prepare makes the workspace afresh (after_create again)
// instead of reusing what is left of it, and the next Remove finishes the
// delete without running before_remove a second time.
func TestInterruptedRemovalIsRedone(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	hooks := filepath.Join(base, "before-remove-runs")
	cfg := cfgWith(root, bus.HooksConfig{
		AfterCreate:  "echo created >> log && echo work > work && echo more > more",
		BeforeRemove: "echo ran >> " + hooks,
	})
	run := plainRunner(cfg, testEnviron(t))
	cut := func(path string) error {
		// Part of the tree goes, then the process "dies".
		if err := os.Remove(filepath.Join(path, "work")); err != nil {
			return err
		}
		return errors.New("killed during the delete")
	}
	hookRuns := func() int {
		b, _ := os.ReadFile(hooks)
		return strings.Count(string(b), "ran")
	}
	for _, then := range []string{"prepare", "remove"} {
		var m Manager
		id := "ABC-3" + then[:1]
		ws := filepath.Join(root, id)
		if _, err := m.Prepare(t.Context(), cfg, issue(id), run); err != nil {
			t.Fatal(err)
		}
		before := hookRuns()
		m.removeAll = cut
		if _, err := m.Remove(t.Context(), cfg, issue(id), run); err == nil {
			t.Fatal("the cut-short delete reported no error")
		}
		if hookRuns() != before+1 {
			t.Fatalf("before_remove ran %d times", hookRuns()-before)
		}
		m.removeAll = nil
		switch then {
		case "prepare":
			r, err := m.Prepare(t.Context(), cfg, issue(id), run)
			if err != nil || !r.CreatedNow {
				t.Fatalf("prepare after a removal cut short: %+v %v: the half-deleted tree was reused", r, err)
			}
			if got, _ := os.ReadFile(filepath.Join(ws, "work")); string(got) != "work\n" {
				t.Errorf("the workspace was not made afresh: work=%q", got)
			}
		case "remove":
			if _, err := m.Remove(t.Context(), cfg, issue(id), run); err != nil {
				t.Fatal(err)
			}
			if hookRuns() != before+1 {
				t.Error("before_remove ran again on a half-deleted workspace")
			}
			for _, p := range []string{ws, markerPath(root, id)} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s survived the second removal", p)
				}
			}
		}
	}
}
