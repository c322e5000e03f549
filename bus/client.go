package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClientClosed is returned by a subscribe, serve or watch through a
// Client that has been closed.
var ErrClientClosed = errors.New("bus client closed")

// Endpoint is what the typed helpers (Publish, Subscribe, Serve, Ask, Watch,
// Get, Put…) are called on: the *Bus itself, or a component's *Client.
// Through a Client, everything opened belongs to the client and ends when it
// closes; through the Bus, it ends with its context (or the bus).
type Endpoint interface {
	bus() *Bus
	// open scopes ctx for something that stays open (a subscription, a
	// responder, a watcher): the returned context also ends when the
	// endpoint closes, and release must be called once the thing has
	// ended.
	open(ctx context.Context) (context.Context, func(), error)
}

func (b *Bus) bus() *Bus { return b }

func (b *Bus) open(ctx context.Context) (context.Context, func(), error) {
	return ctx, func() {}, nil
}

// Client is one component's connection to the bus, named after it. A
// component subscribes, serves, watches and publishes through its client;
// Close ends everything it opened and returns once all of it has stopped —
// subscriptions closed, responders' handlers returned, watchers gone — so
// a component does not collect done channels by hand, and a Run that
// returns after Close leaves nothing behind (the model is tailscale's
// util/eventbus clients).
type Client struct {
	b    *Bus
	name string

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	open_  sync.WaitGroup
}

// Client returns a new client named name (a component's name: "scheduler").
// It is open until Close; closing the bus ends it too.
func (b *Bus) Client(name string) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{b: b, name: name, ctx: ctx, cancel: cancel}
}

// Name is the client's name.
func (c *Client) Name() string { return c.name }

// Bus is the bus the client belongs to.
func (c *Client) Bus() *Bus { return c.b }

func (c *Client) bus() *Bus { return c.b }

func (c *Client) open(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, fmt.Errorf("%s: %w", c.name, ErrClientClosed)
	}
	c.open_.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			stop()
			cancel()
			c.open_.Done()
		})
	}, nil
}

// Close ends every subscription, responder and watcher opened through the
// client and waits until they have stopped (a responder's handlers in
// flight see their context end and are waited for). It is idempotent.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.open_.Wait()
}
