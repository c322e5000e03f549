package agentrunner

import (
	"context"
	"errors"
	"sync"

	"github.com/symphony-oss/symphony/bus"
	"github.com/symphony-oss/symphony/runlog"
)

// owner is the goroutine that holds the runner's state: Run's loop. The
// request handlers (up to 16 at once) and the runs send it operations and
// wait for them to be done; only the loop applies them, one at a time, so
// the state needs no lock and every decision (is the issue already
// running? is this run still cancelable?) sees one consistent state.
type owner struct {
	c   *Component
	ops chan op
	set runSet
	// runCtx owns the runs (Run's context); runs counts their goroutines.
	runCtx context.Context
	runs   sync.WaitGroup
	// exited is closed once the loop has served its last operation (Run
	// is returning): an operation not taken by then is refused.
	exited chan struct{}
}

// op is an operation on the state; done is closed once it was applied.
type op struct {
	f    func(*runSet)
	done chan struct{}
}

func newOwner(c *Component, runCtx context.Context) *owner {
	return &owner{c: c, ops: make(chan op), set: newRunSet(), runCtx: runCtx, exited: make(chan struct{})}
}

// loop applies operations and configurations until ctx is done and no run
// is left (a run's last messages are always served, so shutdown waits for
// every run), or until the configuration watch ends on its own. configs
// may be nil (the loop of a Run that ends early).
func (o *owner) loop(ctx context.Context, configs <-chan bus.Entry[bus.ConfigSnapshot]) error {
	stopping := ctx.Done()
	for {
		if stopping == nil && o.set.empty() {
			return nil
		}
		select {
		case op := <-o.ops:
			op.f(&o.set)
			close(op.done)
		case e, ok := <-configs:
			if !ok {
				configs = nil
				if ctx.Err() == nil {
					return errors.New("agentrunner: the configuration watch ended")
				}
				continue
			}
			snap := e.Value
			o.set.cfg = &snap
		case <-stopping:
			stopping = nil
		}
	}
}

// do has the loop apply f and waits until it has. The loop serves
// operations until Run returns, shutdown included (a cancel or a listing
// asked while the runs end is answered, as it was under a lock), so do
// gives up only once the loop has exited; a taken f is applied at once.
func (o *owner) do(f func(*runSet)) error {
	x := op{f: f, done: make(chan struct{})}
	select {
	case o.ops <- x:
	case <-o.exited:
		return errRunnerStopped
	}
	<-x.done
	return nil
}

// errRunnerStopped refuses an operation that came after the runner's last.
var errRunnerStopped = errors.New("agentrunner: stopped")

// dispatch admits a dispatch and starts its run, owned by o.runCtx and
// counted in o.runs.
func (o *owner) dispatch(d bus.Dispatch) (bus.DispatchAccepted, error) {
	var refused error
	err := o.do(func(s *runSet) {
		var w *run
		if w, refused = s.admit(o.c, d); refused != nil {
			return
		}
		w.o = o
		o.runs.Go(func() {
			// However execute ends, the run leaves the state; its end is on
			// record by then.
			defer o.ended(d.RunID)
			w.execute(o.runCtx)
		})
	})
	if err != nil {
		return bus.DispatchAccepted{}, err
	}
	if refused != nil {
		return bus.DispatchAccepted{}, refused
	}
	return bus.DispatchAccepted{RunID: d.RunID}, nil
}

// cancel asks a run to stop (see runSet.cancel).
func (o *owner) cancel(req bus.CancelRun) (bool, error) {
	var found bool
	err := o.do(func(s *runSet) { found = s.cancel(req) })
	return found, err
}

// live lists the runs in flight (see runSet.live).
func (o *owner) live() (bus.LiveRuns, error) {
	var l bus.LiveRuns
	err := o.do(func(s *runSet) { l = s.live() })
	return l, err
}

// forget and ended are a run's steps out of the state (see
// runSet.forget). The loop serves them even while stopping: it runs until
// no run is left, so they never wait on a loop that is gone.
func (o *owner) forget(runID string) {
	_ = o.do(func(s *runSet) { s.forget(runID) })
}

func (o *owner) ended(runID string) {
	_ = o.do(func(s *runSet) { s.ended(runID) })
}

// runSet is the runner's state; only the owner's loop touches it.
type runSet struct {
	cfg  *bus.ConfigSnapshot
	runs map[string]*run
	// ending are runs whose agent is done and whose end is being
	// recorded: no longer cancelable or blocking a new dispatch, but a
	// cancel for one is answered "found" (it is ending anyway), and the
	// live-runs list includes them, so the scheduler (a restarted one too)
	// never records a second, "interrupted" end for one.
	ending map[string]bus.Dispatch
}

func newRunSet() runSet {
	return runSet{runs: map[string]*run{}, ending: map[string]bus.Dispatch{}}
}

func (s *runSet) empty() bool { return len(s.runs) == 0 && len(s.ending) == 0 }

// admit checks a dispatch against the configuration and the runs in
// flight (one run per issue, run ids unique) and adds its run.
func (s *runSet) admit(c *Component, d bus.Dispatch) (*run, error) {
	if s.cfg == nil {
		return nil, bus.WithCode(bus.CodeNoConfig, errNoConfig)
	}
	if err := unsafeDispatch(d); err != nil {
		return nil, err
	}
	for _, r := range s.runs {
		if r.d.Issue.ID == d.Issue.ID {
			return nil, bus.WithCode(bus.CodeAlreadyRunning, errors.New("issue "+d.Issue.Identifier+" already has run "+r.d.RunID))
		}
	}
	if _, dup := s.runs[d.RunID]; dup {
		return nil, bus.WithCode(bus.CodeDuplicateRun, errors.New("run "+d.RunID+" exists"))
	}
	w := &run{r: c, d: d, snap: *s.cfg, cancel: make(chan canceled, 1), out: runlog.NewWriter(c.opts.Bus, 0)}
	s.runs[d.RunID] = w
	return w, nil
}

// forget takes a run out of the live set while its end is recorded;
// ended drops it for good once the end is on record.
func (s *runSet) forget(runID string) {
	if w, ok := s.runs[runID]; ok {
		s.ending[runID] = w.d
		delete(s.runs, runID)
	}
}

func (s *runSet) ended(runID string) {
	delete(s.runs, runID)
	delete(s.ending, runID)
}

// cancel hands a cancel to a live run (a run already being canceled
// keeps its first); a run whose end is being recorded counts as found.
func (s *runSet) cancel(req bus.CancelRun) bool {
	if _, ending := s.ending[req.RunID]; ending {
		return true // its end is being recorded
	}
	w, ok := s.runs[req.RunID]
	if !ok {
		return false
	}
	status := req.Status
	if status == "" {
		status = bus.RunCanceled
	}
	if status == bus.RunBudgetExceeded && req.BudgetCap != "" {
		w.cancelHit.CompareAndSwap(nil, &capHit{cap: req.BudgetCap, limit: req.BudgetLimit, day: req.BudgetDay, why: req.Reason})
	}
	select {
	case w.cancel <- canceled{status: status, reason: req.Reason}:
	default: // already being canceled
	}
	return true
}

// live lists the runs in flight, those whose end is being recorded
// included: a scheduler that starts meanwhile adopts them and gets their
// end, instead of recording them as interrupted beside it. Their issues
// are outlines (what the scheduler keeps of a running issue), so the
// answer stays small however long the issues are.
func (s *runSet) live() bus.LiveRuns {
	out := bus.LiveRuns{Runs: []bus.Dispatch{}}
	for _, r := range s.runs {
		d := r.d
		d.Issue = d.Issue.Outline()
		out.Runs = append(out.Runs, d)
	}
	for _, d := range s.ending {
		d.Issue = d.Issue.Outline()
		out.Runs = append(out.Runs, d)
	}
	return out
}
