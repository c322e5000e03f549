// Package components holds the lifecycle contract every Symphony component
// implements and the supervisor that runs them. The components themselves
// live in sub-packages (workflow, tracker, scheduler, workspace, agentrunner,
// pruner, notifier); they import bus, internal/ and plain libraries, never
// each other.
//
// # Lifecycle
//
// A component goes through these steps, in this order:
//
//  1. Provision: its constructor (New in its package) checks its static
//     arguments and keeps its dependencies (the *bus.Bus, a logger).
//     It starts no goroutine and touches nothing outside itself, so building
//     a component that is never run costs nothing and leaks nothing.
//  2. Run: the supervisor calls Run(ctx) in a goroutine of its own. Run
//     opens the component's named bus client (bus.Client), subscribes,
//     serves and watches through it, and loops until ctx is done. Everything
//     it starts is owned by ctx (or by a context derived from it) and has
//     ended before Run returns: closing the client ends every subscription
//     and responder and waits for the handlers in flight.
//  3. Stop: when ctx is done Run returns nil. That is the only clean exit: a
//     Run that returns an error, returns nil while ctx is still live, or
//     panics has failed.
//  4. Restart: the supervisor logs a failure, publishes it, waits a backoff
//     (1s doubling to 1m; reset after a minute of healthy running) and calls
//     Run again on the same value. Run therefore rebuilds its working state
//     from the bus (KV, streams) on every call instead of trusting what a
//     failed call left behind.
//  5. Shutdown: the supervisor stops components in the reverse of their start
//     order, waiting for each Run to return (bounded by StopTimeout) before
//     stopping the next, so a component never outlives one it depends on.
//
// A component's own goroutine is the only place its state changes; other
// components reach it through messages. This is what makes the scheduler the
// single authority the specification asks for.
package components

import "context"

// Component is one independent part of Symphony, run by a Supervisor.
type Component interface {
	// Name is a short, stable name ("scheduler"), used in logs and on the
	// symphony.component.<name> subject.
	Name() string
	// Run does the component's work until ctx is done, then returns nil.
	// See the package documentation for the full contract.
	Run(ctx context.Context) error
}

// Func adapts a function into a Component.
type Func struct {
	ComponentName string
	RunFunc       func(ctx context.Context) error
}

// Name returns f.ComponentName.
func (f Func) Name() string { return f.ComponentName }

// Run calls f.RunFunc.
func (f Func) Run(ctx context.Context) error { return f.RunFunc(ctx) }

// Stopped turns an error that happened because ctx ended into the clean
// stop the lifecycle asks for (nil), and passes any other error through.
func Stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
