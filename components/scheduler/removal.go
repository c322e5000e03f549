package scheduler

import (
	"context"

	"github.com/symphony-oss/symphony/bus"
)

// maxRemovals is how many workspace removals the scheduler has in flight
// at once, the workspace component's own concurrency (workspace.Concurrency):
// more would only queue there, under a request timeout that does not know
// it is queued. The rest wait here, in order.
const maxRemovals = 16

// removals are the workspace removals asked for and not yet answered. An
// issue in busy is not dispatched, neither from a poll nor from its retry:
// its new workspace would be prepared beside (or deleted by) the removal.
type removals struct {
	// busy holds the issues whose removal is queued or in flight, by id.
	busy map[string]bool
	// queue is the removals waiting for one of maxRemovals slots.
	queue []bus.Issue
	// inFlight counts the removals asked of the workspace component.
	inFlight int
	// held holds the issues a poll or a retry passed over because their
	// removal was in flight: its end asks for a refresh, so they need not
	// wait for the next poll.
	held map[string]bool
}

func newRemovals() removals { return removals{busy: map[string]bool{}, held: map[string]bool{}} }

// removing reports whether the issue's workspace removal is in flight.
func (a *actor) removing(id string) bool { return a.removes.busy[id] }

// removeWorkspace asks the workspace component to remove the issue's
// workspace (before_remove first) without waiting for the answer: that
// comes back into the loop (removed). A removal already asked for is not
// asked twice.
func (a *actor) removeWorkspace(ctx context.Context, iss bus.Issue) {
	if a.removes.busy[iss.ID] {
		return
	}
	a.removes.busy[iss.ID] = true
	a.removes.queue = append(a.removes.queue, iss)
	a.startRemovals(ctx)
}

// startRemovals asks for queued removals while slots are free. The ask is
// bounded by the hook timeout plus the usual request time: a removal's
// before_remove may take all of hooks.timeout_ms, and giving up before the
// workspace component does would free the issue while its removal goes on.
func (a *actor) startRemovals(ctx context.Context) {
	for a.removes.inFlight < maxRemovals && len(a.removes.queue) > 0 {
		iss := a.removes.queue[0]
		a.removes.queue[0] = bus.Issue{}
		a.removes.queue = a.removes.queue[1:]
		a.removes.inFlight++
		a.issueLog(iss).Debug("removing workspace")
		goAsk(ctx, a, a.cfg.Config.Hooks.Timeout()+requestTimeout,
			func(rctx context.Context) (bus.WorkspaceRemoved, error) {
				return bus.Ask(rctx, a.b, bus.WorkspaceRemove, bus.RemoveWorkspace{Issue: iss})
			},
			func(ctx context.Context, res bus.WorkspaceRemoved, err error) { a.removed(ctx, iss, res, err) })
	}
}

// removed follows up a removal's answer: the issue may be dispatched again.
// A failed removal is logged and not asked again by this process: the
// issue is freed all the same (a next run reuses what is left, as for any
// workspace; one half deleted carries its marker and is made afresh), and
// the next start-up sweep removes it if the issue is still terminal.
func (a *actor) removed(ctx context.Context, iss bus.Issue, res bus.WorkspaceRemoved, err error) {
	a.removes.inFlight--
	delete(a.removes.busy, iss.ID)
	held := a.removes.held[iss.ID]
	delete(a.removes.held, iss.ID)
	log := a.issueLog(iss)
	if err != nil {
		log.Warn("remove workspace failed; the issue may be dispatched again, and the next start-up sweep removes the workspace if the issue is still terminal", "err", err)
	} else if res.Existed {
		log.Info("workspace removed", "path", res.Path)
	} else {
		// The start-up sweep asks for every terminal issue's workspace;
		// most never existed, and a line each would flood the log.
		log.Debug("no workspace to remove", "path", res.Path)
	}
	a.startRemovals(ctx)
	// A retry held back by the removal fires now if it is due; a poll
	// that passed the issue over is made again at once.
	a.armRetryTimer()
	if held {
		a.queueRefresh()
	}
}

// holdForRemoval records that the issue was passed over for its removal,
// logging it the first time.
func (a *actor) holdForRemoval(id string) {
	if !a.removes.held[id] {
		a.removes.held[id] = true
		a.log.Info("dispatch waits for the issue's workspace removal", "issue_id", id)
	}
}
