package ui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// sseKeepAlive is how often an idle stream sends a comment, so proxies and
// the browser keep it open and a dead client is noticed.
const sseKeepAlive = 15 * time.Second

// DefaultWriteTimeout bounds one write to a client: a client that stops
// reading is dropped within it (once the socket's buffers are full)
// instead of pinning the handler, its stream slot and its consumers. What
// a stream holds meanwhile is bounded: the events it is writing, a
// follower's few pulled messages and the events waiting in its stream
// (runlog.Follow) and a timeline reader's few pieces (runlog.Each) —
// never the run.
const DefaultWriteTimeout = 30 * time.Second

// sseStream writes Server-Sent Events. send is safe from several
// goroutines.
type sseStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	done    chan struct{}
	stopped sync.WaitGroup
	onClose func()
	// buf is reused for each event's bytes.
	buf []byte
	// deadlineAt is when the write deadline was last moved: queued events
	// move it at most once a second (moving it costs a timer update, once
	// per event under a flood), which leaves every write at least
	// timeout less a second.
	deadlineAt time.Time
	timeout    time.Duration
}

// extendDeadline moves the write deadline timeout ahead, unless it
// was moved within the last second and force is false. The caller holds mu.
func (st *sseStream) extendDeadline(force bool) {
	moveDeadline(st.rc, st.timeout, &st.deadlineAt, force)
}

// startSSE answers with an event stream and starts its keep-alive, which
// ends with the request.
func (s *Server) startSSE(w http.ResponseWriter, r *http.Request) (*sseStream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	// The write deadline stays on the connection after the stream: it is
	// not reused for another request.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	st := &sseStream{w: w, rc: http.NewResponseController(w), done: make(chan struct{}), timeout: s.opts.WriteTimeout}
	st.extendDeadline(true)
	if _, err := fmt.Fprint(w, ": symphony\nretry: 2000\n\n"); err != nil {
		return nil, err
	}
	if err := st.rc.Flush(); err != nil {
		return nil, err
	}
	s.metrics.sseClients.Inc()
	st.onClose = s.metrics.sseClients.Dec
	st.stopped.Add(1)
	go func() {
		defer st.stopped.Done()
		t := time.NewTicker(sseKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-st.done:
				return
			case <-t.C:
				st.mu.Lock()
				st.extendDeadline(true)
				_, err := fmt.Fprint(w, ": keep-alive\n\n")
				if err == nil {
					err = st.rc.Flush()
				}
				st.mu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	return st, nil
}

// errStreamClosed is returned by send after close.
var errStreamClosed = errors.New("event stream closed")

// send writes one event and flushes it to the client; data may span lines.
// Every line break in data — CRLF, LF and a lone CR, which SSE also reads
// as one — becomes its own data: line, so text from an agent or an issue
// can never start a field (an event: or id: of its own). event and id are
// ours and never hold one.
func (st *sseStream) send(event, id, data string) error {
	return writeEvent(st, event, id, data, true)
}

// queue writes one event like send but leaves it in the response buffer
// until flush (or until the buffer fills): a burst of events goes out in a
// few writes instead of one each.
func (st *sseStream) queue(event, id, data string) error {
	return writeEvent(st, event, id, data, false)
}

// queueBytes is queue with data in bytes (not kept after it returns).
func (st *sseStream) queueBytes(event, id string, data []byte) error {
	return writeEvent(st, event, id, data, false)
}

// lockOpen takes mu while the stream is open; after close it returns
// errStreamClosed without holding mu.
func (st *sseStream) lockOpen() error {
	st.mu.Lock()
	select {
	case <-st.done:
		st.mu.Unlock()
		return errStreamClosed
	default:
		return nil
	}
}

// flush sends what queue left buffered.
func (st *sseStream) flush() error {
	if err := st.lockOpen(); err != nil {
		return err
	}
	defer st.mu.Unlock()
	st.extendDeadline(true)
	return st.rc.Flush()
}

func writeEvent[D string | []byte](st *sseStream, event, id string, data D, flush bool) error {
	if strings.ContainsAny(event, "\r\n") || strings.ContainsAny(id, "\r\n") {
		return fmt.Errorf("sse: line break in event %q or id %q", event, id)
	}
	if err := st.lockOpen(); err != nil {
		return err
	}
	defer st.mu.Unlock()
	b := st.buf[:0]
	if event != "" {
		b = append(append(append(b, "event: "...), event...), '\n')
	}
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	for {
		i := indexLineBreak(data)
		if i < 0 {
			b = append(append(append(b, "data: "...), data...), '\n')
			break
		}
		b = append(append(append(b, "data: "...), data[:i]...), '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b = append(b, '\n')
	if cap(b) <= 64<<10 {
		st.buf = b
	}
	st.extendDeadline(flush)
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	if !flush {
		return nil
	}
	return st.rc.Flush()
}

// indexLineBreak is the index of the first CR or LF in data, or -1.
func indexLineBreak[D string | []byte](data D) int {
	for i := 0; i < len(data); i++ {
		if data[i] == '\r' || data[i] == '\n' {
			return i
		}
	}
	return -1
}

// close stops the keep-alive and waits for it; the handler returns after.
func (st *sseStream) close() {
	st.mu.Lock()
	select {
	case <-st.done:
	default:
		close(st.done)
	}
	st.mu.Unlock()
	st.stopped.Wait()
	if st.onClose != nil {
		st.onClose()
	}
}
