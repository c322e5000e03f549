package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The listener's consumer creations do not reach the JetStream API
// directly: the listener account's $JS.API.CONSUMER.CREATE.> is imported
// from listenerCreatePrefix in Symphony's account, where the bus checks
// each request and forwards the ones it accepts. A consumer lives in
// Symphony's account, in a stream Symphony reads itself; unchecked, a read
// token could create durable consumers up to the server's limit (and
// Symphony's own reads would then fail, across restarts), or aim a push
// consumer's deliveries at a subject Symphony's streams store.
const (
	jsConsumerCreate     = "$JS.API.CONSUMER.CREATE."
	listenerCreatePrefix = "_SYMPHONY_LISTENER.CONSUMER.CREATE."
	// listenerInboxPrefix is the only deliver subject a listener client's
	// push consumer may have: the _INBOX.> deliveries are what the listener
	// account imports back.
	listenerInboxPrefix = "_INBOX."
)

// Bounds on the listener's consumers.
const (
	// MaxListenerConsumers is how many consumers the listener's clients
	// may hold at once, across streams. The nats CLI and symphony
	// runs/replay use one or two per command; the bound leaves the
	// server's per-account limit to Symphony.
	MaxListenerConsumers = 64
	// MaxListenerInactivity is the longest inactivity threshold a listener
	// client's consumer may ask for (ordered consumers ask for 5 minutes,
	// `nats stream view` for an hour); a consumer left behind frees its
	// place within it.
	MaxListenerInactivity = time.Hour
	// listenerCreateTimeout bounds the forwarded create.
	listenerCreateTimeout = 10 * time.Second
	// listenerCreatePending bounds the creations waiting to be checked;
	// more are dropped (the client's request times out).
	listenerCreatePending = 256
)

// listenerCreateRequest is the part of a JetStream consumer create request
// the check reads. It is decoded with encoding/json, as the server decodes
// the same bytes, so both read the same fields.
type listenerCreateRequest struct {
	Stream string `json:"stream_name"`
	Config struct {
		Durable           string        `json:"durable_name"`
		DeliverSubject    string        `json:"deliver_subject"`
		InactiveThreshold time.Duration `json:"inactive_threshold"`
	} `json:"config"`
}

// checkListenerCreate decides whether a listener client may create the
// consumer the request describes; subject is the API subject it was sent
// on ($JS.API.CONSUMER.CREATE.<stream>[.<name>[.<filter>]]). A consumer
// must vanish once unused: an ephemeral one with at most
// MaxListenerInactivity (0 is the server's 5s), a durable one (`nats stream
// view` pages with a durable of 1h) with an inactive threshold set and
// within the same bound, so none outlives its use by more than an hour,
// restarts included. A push consumer delivers only to an _INBOX subject.
func checkListenerCreate(subject string, body []byte) (stream string, err error) {
	rest, ok := strings.CutPrefix(subject, jsConsumerCreate)
	if !ok || rest == "" {
		return "", fmt.Errorf("not a consumer create subject: %q", subject)
	}
	stream, _, _ = strings.Cut(rest, ".")
	if stream == "" {
		return "", fmt.Errorf("no stream in consumer create subject %q", subject)
	}
	var req listenerCreateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf("consumer create request: %w", err)
	}
	c := req.Config
	switch {
	case c.Durable != "" && c.InactiveThreshold == 0:
		return "", fmt.Errorf("durable consumer %q refused: a listener client's durable consumer needs an inactive threshold (at most %s)", c.Durable, MaxListenerInactivity)
	case c.DeliverSubject != "" && !strings.HasPrefix(c.DeliverSubject, listenerInboxPrefix):
		return "", fmt.Errorf("deliver subject %q refused: a listener client's consumer delivers only to %s subjects", c.DeliverSubject, listenerInboxPrefix+">")
	case c.InactiveThreshold < 0 || c.InactiveThreshold > MaxListenerInactivity:
		return "", fmt.Errorf("inactive threshold %s refused: at most %s", c.InactiveThreshold, MaxListenerInactivity)
	}
	return stream, nil
}

// listenerConsumers forwards the listener's accepted consumer creations
// and counts the consumers they made. It runs in one subscription
// callback, so the count and the creation are never interleaved.
type listenerConsumers struct {
	b *Bus
	// made holds stream/name of the consumers created for listener
	// clients that may still exist; at the bound, those gone (deleted,
	// expired) are dropped by asking the server.
	made map[[2]string]struct{}
}

// serveListenerConsumers subscribes the internal connection to the
// listener's consumer creations; the subscription ends with the connection.
func (b *Bus) serveListenerConsumers() error {
	lc := &listenerConsumers{b: b, made: make(map[[2]string]struct{})}
	sub, err := b.nc.Subscribe(listenerCreatePrefix+">", lc.handle)
	if err != nil {
		return fmt.Errorf("bus: serve the listener's consumer creations: %w", err)
	}
	if err := sub.SetPendingLimits(listenerCreatePending, listenerCreatePending*int(b.nc.MaxPayload())); err != nil {
		return fmt.Errorf("bus: serve the listener's consumer creations: %w", err)
	}
	return nil
}

func (lc *listenerConsumers) handle(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	subject := jsConsumerCreate + strings.TrimPrefix(m.Subject, listenerCreatePrefix)
	stream, err := checkListenerCreate(subject, m.Data)
	if err == nil {
		err = lc.room()
	}
	if err != nil {
		// Debug, not Warn: the client is told, and a token holder could
		// otherwise flood the log with refusals.
		lc.b.log.Debug("bus: listener consumer refused", "subject", subject, "err", err)
		lc.refuse(m, err)
		return
	}
	resp, err := lc.b.nc.RequestMsg(&nats.Msg{Subject: subject, Data: m.Data, Header: m.Header}, listenerCreateTimeout)
	if err != nil {
		lc.refuse(m, fmt.Errorf("create the consumer: %w", err))
		return
	}
	var made struct {
		Name  string `json:"name"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.Data, &made) == nil && made.Error == nil && made.Name != "" {
		lc.made[[2]string{stream, made.Name}] = struct{}{}
	}
	if err := m.RespondMsg(&nats.Msg{Data: resp.Data, Header: resp.Header}); err != nil {
		lc.b.log.Warn("bus: answer a listener consumer creation", "err", err)
	}
}

// room reports an error when the listener's clients hold
// MaxListenerConsumers consumers, after forgetting those the server no
// longer has.
func (lc *listenerConsumers) room() error {
	if len(lc.made) < MaxListenerConsumers {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), listenerCreateTimeout)
	defer cancel()
	for k := range lc.made {
		_, err := lc.b.js.Consumer(ctx, k[0], k[1])
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			delete(lc.made, k)
		} else if err != nil {
			return fmt.Errorf("count the listener's consumers: %w", err)
		}
	}
	if len(lc.made) >= MaxListenerConsumers {
		return fmt.Errorf("listener clients hold %d consumers, the most allowed; delete one or wait for an unused one to expire", len(lc.made))
	}
	return nil
}

// refuse answers a creation with a JetStream API error, which clients show.
func (lc *listenerConsumers) refuse(m *nats.Msg, err error) {
	type apiError struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	}
	data, _ := json.Marshal(struct {
		Type  string   `json:"type"`
		Error apiError `json:"error"`
	}{"io.nats.jetstream.api.v1.consumer_create_response", apiError{Code: 400, ErrCode: 10000, Description: "symphony: " + err.Error()}})
	if err := m.Respond(data); err != nil {
		lc.b.log.Warn("bus: answer a listener consumer creation", "err", err)
	}
}
