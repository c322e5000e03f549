package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/symphony-oss/symphony/bus/safeid"
)

// ErrKeyNotFound is returned by Get when the key has no value.
var ErrKeyNotFound = errors.New("key not found")

// Key is a typed key of a KV bucket: every value stored under it is a T.
type Key[T any] struct {
	bucket, key string
	typeName    string
	schema      int
}

// Bucket is the key's bucket.
func (k Key[T]) Bucket() string { return k.bucket }

// Name is the key within the bucket.
func (k Key[T]) Name() string { return k.key }

func kvKey[T any](bucket, key string) Key[T] {
	return Key[T]{bucket: bucket, key: key, typeName: typeName[T](), schema: 1}
}

// Typed keys of the buckets declared in Buckets.
var (
	// ConfigCurrent holds the last good configuration.
	ConfigCurrent = kvKey[ConfigSnapshot](BucketConfig, "current")
	// ConfigStatus holds the outcome of the latest load attempt.
	ConfigStatus = kvKey[WorkflowStatus](BucketConfig, "status")
	// DispatchPause holds whether the operator paused dispatch, so a pause
	// survives a restart and every dashboard shows it.
	DispatchPause = kvKey[PauseState](BucketState, "paused")
	// NotifyState holds where the notifier is in the NOTIFY stream, the
	// ids it handled lately and its counts.
	NotifyState = kvKey[NotifyStatus](BucketNotify, "status")
	// NotifyDropped counts the notifications the scheduler dropped before
	// they were stored (the dashboard shows it; the key is written only
	// when there is a drop, so none means none).
	NotifyDropped = kvKey[NotifyDrops](BucketState, "notify_dropped")
)

// kvEnvelope is how a typed value is stored: KV entries carry no headers, so
// the type and schema travel in the body, readable with `nats kv get`.
type kvEnvelope struct {
	Type   string          `json:"type"`
	Schema int             `json:"schema"`
	Data   json.RawMessage `json:"data"`
}

// Entry is a decoded KV value with its revision.
type Entry[T any] struct {
	Value    T
	Revision uint64
	Created  time.Time
}

func (k Key[T]) encode(v T) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s/%s: %w", k.bucket, k.key, err)
	}
	return json.Marshal(kvEnvelope{Type: k.typeName, Schema: k.schema, Data: data})
}

func (k Key[T]) decode(raw []byte) (T, error) {
	// One pass: the envelope and the value together (the type and schema
	// are checked after; a mismatch discards the value).
	var env struct {
		Type   string `json:"type"`
		Schema int    `json:"schema"`
		Data   *T     `json:"data"`
	}
	var v T
	env.Data = &v
	if err := jsonv1.Unmarshal(raw, &env); err != nil { // see decode
		var zero T
		return zero, fmt.Errorf("%w %s/%s: %v", ErrDecode, k.bucket, k.key, err)
	}
	if env.Type != k.typeName {
		var zero T
		return zero, fmt.Errorf("%w %s/%s: type %q, want %q", ErrDecode, k.bucket, k.key, env.Type, k.typeName)
	}
	if env.Schema < 1 || env.Schema > k.schema {
		var zero T
		return zero, fmt.Errorf("%w %s/%s: schema %d not understood (this build reads up to %d)", ErrDecode, k.bucket, k.key, env.Schema, k.schema)
	}
	return v, nil
}

// kv returns the bucket's handle, opening it on first use. Concurrent
// first uses (components and the dashboard start at once) share one
// opening instead of each asking the server; a failed opening is not kept.
func (b *Bus) kv(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	b.bucketsMu.Lock()
	h, ok := b.buckets[bucket]
	if !ok {
		if b.buckets == nil {
			b.buckets = map[string]*bucketHandle{}
		}
		h = &bucketHandle{}
		b.buckets[bucket] = h
	}
	b.bucketsMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kv != nil {
		return h.kv, nil
	}
	kv, err := b.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", bucket, err)
	}
	h.kv = kv
	return kv, nil
}

// bucketHandle is a bucket's handle once opened; mu is held while opening.
type bucketHandle struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

// Get reads the key's current value; ErrKeyNotFound when there is none.
func Get[T any](ctx context.Context, ep Endpoint, k Key[T]) (Entry[T], error) {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return Entry[T]{}, err
	}
	e, err := kv.Get(ctx, k.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry[T]{}, fmt.Errorf("%s/%s: %w", k.bucket, k.key, ErrKeyNotFound)
	}
	if err != nil {
		return Entry[T]{}, fmt.Errorf("get %s/%s: %w", k.bucket, k.key, err)
	}
	v, err := k.decode(e.Value())
	if err != nil {
		return Entry[T]{}, err
	}
	return Entry[T]{Value: v, Revision: e.Revision(), Created: e.Created()}, nil
}

// Put stores v under the key and returns the new revision.
func Put[T any](ctx context.Context, ep Endpoint, k Key[T], v T) (uint64, error) {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return 0, err
	}
	raw, err := k.encode(v)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Put(ctx, k.key, raw)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", k.bucket, k.key, err)
	}
	return rev, nil
}

// Watch streams the key's current value (if any) and then every new one,
// until ctx ends or the stream is closed. A value that cannot be decoded is
// logged and skipped (counted in Invalid). Deletes are not delivered. Watch
// returns once the watcher is registered, so a Put after it returns is seen.
func Watch[T any](ctx context.Context, ep Endpoint, k Key[T]) (*Stream[Entry[T]], error) {
	return watchKV(ctx, ep, k.bucket, k.key, func(s *Stream[Entry[T]], send func(Entry[T]) bool, ent jetstream.KeyValueEntry) bool {
		if ent == nil || ent.Operation() != jetstream.KeyValuePut {
			return true // nil marks "initial values done"; deletes carry no value
		}
		v, err := k.decode(ent.Value())
		if err != nil {
			s.invalid.Add(1)
			ep.bus().log.Warn("skipped undecodable KV value", "bucket", k.bucket, "key", k.key, "err", err)
			return true
		}
		return send(Entry[T]{Value: v, Revision: ent.Revision(), Created: ent.Created()})
	}, 0)
}

// watchKV runs a KV watcher of pattern in bucket as a Stream: each update
// (nil marks the end of the initial values) goes to apply, which sends what
// it makes of it; the stream ends when ctx ends, the client closes, Close
// is called, or the watcher's channel closes (the connection went away).
func watchKV[V any](ctx context.Context, ep Endpoint, bucket, pattern string, apply func(*Stream[V], func(V) bool, jetstream.KeyValueEntry) bool, buffer int) (*Stream[V], error) {
	ctx, release, err := ep.open(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := ep.bus().kv(ctx, bucket)
	if err != nil {
		release()
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := kv.Watch(wctx, pattern)
	if err != nil {
		cancel()
		release()
		return nil, fmt.Errorf("watch %s/%s: %w", bucket, pattern, err)
	}
	s := newStream[V](buffer, cancel)
	send := func(v V) bool {
		select {
		case s.c <- v:
			return true
		case <-wctx.Done():
			return false
		}
	}
	go func() {
		defer release()
		defer cancel()
		var err error
		defer func() { s.end(err) }()
		defer w.Stop() //nolint:errcheck // stopping a watcher of a closing connection
		for {
			select {
			case <-wctx.Done():
				return
			case ent, ok := <-w.Updates():
				if !ok {
					if wctx.Err() == nil {
						err = fmt.Errorf("watch %s/%s ended", bucket, pattern)
					}
					return
				}
				if !apply(s, send, ent) {
					return
				}
			}
		}
	}()
	return s, nil
}

// KeySet is a typed family of keys sharing a prefix in one bucket
// ("claim.<issue_id>"); every value under it is a T.
type KeySet[T any] struct {
	bucket, prefix string
}

func keySet[T any](bucket, prefix string) KeySet[T] { return KeySet[T]{bucket: bucket, prefix: prefix} }

// Key returns the key for one id (which must pass the identifier rule, as a
// subject token does).
func (s KeySet[T]) Key(id string) (Key[T], error) {
	if !safeid.Valid(id) {
		return Key[T]{}, fmt.Errorf("%w: key %s.%s must match %s", ErrBadToken, s.prefix, safeid.Quote(id), safeid.Rule)
	}
	return kvKey[T](s.bucket, s.prefix+"."+id), nil
}

// Typed key families of the scheduler's durable state.
var (
	Claims  = keySet[Claim](BucketState, "claim")
	Retries = keySet[RetryEntry](BucketState, "retry")
	Blocks  = keySet[BlockedEntry](BucketState, "blocked")
	// RunCounts holds each issue's runs while it stays active
	// (agent.max_runs_per_issue).
	RunCounts = keySet[RunCount](BucketState, "runs")
	// IssueSpends holds each issue's lifetime spend (budget.per_issue),
	// never reset by the scheduler.
	IssueSpends = keySet[IssueSpend](BucketState, "spend")
	// DaySpends holds the fleet's spend per calendar day (budget.per_day,
	// the overview's chart), keyed by the day (YYYY-MM-DD).
	DaySpends = keySet[DaySpend](BucketState, "day")
	// RunSummaries holds one compact summary per run (symphony runs).
	RunSummaries = keySet[RunSummary](BucketRuns, "run")
)

// ErrKeyExists is returned by Create when the key already has a value.
var ErrKeyExists = errors.New("key exists")

// Create stores v only if the key has no value (compare-and-set on
// absence): the way a claim is taken, so two schedulers can never both
// claim one issue.
func Create[T any](ctx context.Context, ep Endpoint, k Key[T], v T) (uint64, error) {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return 0, err
	}
	raw, err := k.encode(v)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Create(ctx, k.key, raw)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("%s/%s: %w", k.bucket, k.key, ErrKeyExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", k.bucket, k.key, err)
	}
	return rev, nil
}

// Delete removes the key's value (a no-op when there is none).
func Delete[T any](ctx context.Context, ep Endpoint, k Key[T]) error {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, k.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s/%s: %w", k.bucket, k.key, err)
	}
	return nil
}

// All returns every current value of the family, keyed by id.
func All[T any](ctx context.Context, ep Endpoint, s KeySet[T]) (map[string]T, error) {
	b := ep.bus()
	kv, err := b.kv(ctx, s.bucket)
	if err != nil {
		return nil, err
	}
	out := map[string]T{}
	lister, err := kv.ListKeysFiltered(ctx, s.prefix+".*")
	if err != nil {
		return nil, fmt.Errorf("list %s/%s.*: %w", s.bucket, s.prefix, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, name := range keys {
		id := strings.TrimPrefix(name, s.prefix+".")
		k, err := s.Key(id)
		if err != nil {
			continue
		}
		e, err := Get(ctx, b, k)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = e.Value
	}
	return out, nil
}

// SetEvent is one change to a key family seen by WatchSet.
type SetEvent[T any] struct {
	// ID is the key's id (the part after the prefix).
	ID string
	// Value is the new value; zero when Deleted.
	Value    T
	Deleted  bool
	Revision uint64
	// Ready marks the end of the initial values: everything stored when
	// the watch started has been delivered. It carries no key.
	Ready bool
}

// WatchSet streams every current value of the family, then a Ready
// marker, then every change (puts, deletes and purges) until ctx ends or the
// stream is closed. Undecodable values are logged and skipped.
func WatchSet[T any](ctx context.Context, ep Endpoint, ks KeySet[T]) (*Stream[SetEvent[T]], error) {
	return watchKV(ctx, ep, ks.bucket, ks.prefix+".*", func(s *Stream[SetEvent[T]], send func(SetEvent[T]) bool, ent jetstream.KeyValueEntry) bool {
		if ent == nil {
			return send(SetEvent[T]{Ready: true})
		}
		ev := SetEvent[T]{ID: strings.TrimPrefix(ent.Key(), ks.prefix+"."), Revision: ent.Revision()}
		if ent.Operation() != jetstream.KeyValuePut {
			ev.Deleted = true
			return send(ev)
		}
		v, err := kvKey[T](ks.bucket, ent.Key()).decode(ent.Value())
		if err != nil {
			s.invalid.Add(1)
			ep.bus().log.Warn("skipped undecodable KV value", "bucket", ks.bucket, "key", ent.Key(), "err", err)
			return true
		}
		ev.Value = v
		return send(ev)
	}, 64)
}

// ErrRevisionChanged is returned by Update when the key is no longer at
// the revision the caller read: someone else wrote it meanwhile.
var ErrRevisionChanged = errors.New("key changed since the revision read")

// Update stores v only if the key is still at revision rev
// (compare-and-set): a caller folding an update into a value reads it
// (Get), changes it and writes it back, and tries again on
// ErrRevisionChanged, so two writers never lose each other's update.
func Update[T any](ctx context.Context, ep Endpoint, k Key[T], v T, rev uint64) (uint64, error) {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return 0, err
	}
	raw, err := k.encode(v)
	if err != nil {
		return 0, err
	}
	stored, err := kv.Update(ctx, k.key, raw, rev)
	if isWrongLastSequence(err) {
		return 0, fmt.Errorf("%s/%s: %w", k.bucket, k.key, ErrRevisionChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("update %s/%s: %w", k.bucket, k.key, err)
	}
	return stored, nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Purge removes the key's value and its history (a no-op when there is
// none): what a deletion that must leave nothing behind uses.
func Purge[T any](ctx context.Context, ep Endpoint, k Key[T]) error {
	b := ep.bus()
	kv, err := b.kv(ctx, k.bucket)
	if err != nil {
		return err
	}
	if err := kv.Purge(ctx, k.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("purge %s/%s: %w", k.bucket, k.key, err)
	}
	return nil
}

// Values reads every current value of the family, in the order they were
// last written: the last value of each key, read straight from the
// bucket's stream in large batches with ReadStored (a KV watcher, and so
// All, would deliver them one flow-controlled push at a time). It reads
// the whole stream, unfiltered, and skips keys of other families: a
// subject filter makes the server match every message against the
// subjects of its block (a third of the time for 10,000 run summaries in
// a bucket that holds nothing else). A later value of a key replaces an
// earlier one, and a delete or purge marker drops the key, so this stays
// right for any bucket history setting. A value that cannot be decoded is
// logged and skipped.
func Values[T any](ctx context.Context, ep Endpoint, s KeySet[T]) ([]T, error) {
	b := ep.bus()
	prefix := "$KV." + s.bucket + "." + s.prefix + "."
	var (
		out  []T
		gone []bool         // out[i] was replaced or deleted later
		at   map[string]int // key -> its entry in out
		k    = kvKey[T](s.bucket, "")
	)
	err := ReadStored(ctx, b, "KV_"+s.bucket, "", func(m *nats.Msg, meta StoredMeta) error {
		if at == nil {
			n := int(min(meta.Pending+1, 1<<20)) // a size hint, not a promise
			out, gone, at = make([]T, 0, n), make([]bool, 0, n), make(map[string]int, n)
		}
		id, ok := strings.CutPrefix(m.Subject, prefix)
		if !ok {
			return nil
		}
		if i, seen := at[id]; seen {
			gone[i] = true
			delete(at, id)
		}
		// A delete or purge leaves a marker without a value.
		if len(m.Data) == 0 || m.Header.Get("KV-Operation") != "" {
			return nil
		}
		k.key = s.prefix + "." + id
		v, err := k.decode(m.Data)
		if err != nil {
			b.log.Warn("skipped undecodable value", "bucket", s.bucket, "key", k.key, "err", err)
			return nil
		}
		at[id] = len(out)
		out, gone = append(out, v), append(gone, false)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", s.bucket, s.prefix, err)
	}
	if len(at) == len(out) {
		return out, nil
	}
	kept := out[:0]
	for i := range out {
		if !gone[i] {
			kept = append(kept, out[i])
		}
	}
	return kept, nil
}
