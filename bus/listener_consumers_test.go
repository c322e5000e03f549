package bus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzCheckListenerCreate: the check of a listener client's consumer
// creation reads outside input (subject and body, the body bounded by the
// server's MaxPayload). It never panics, and whatever it accepts is, as the
// server will read the same bytes with encoding/json, a consumer that
// expires once unused and delivers, if pushed, only to an _INBOX subject.
func FuzzCheckListenerCreate(f *testing.F) {
	f.Add("$JS.API.CONSUMER.CREATE.RUNS", []byte(`{"stream_name":"RUNS","config":{"ack_policy":"none"}}`))
	f.Add("$JS.API.CONSUMER.CREATE.RUNS.d1", []byte(`{"stream_name":"RUNS","config":{"durable_name":"d1"}}`))
	f.Add("$JS.API.CONSUMER.CREATE.RUNS.p.symphony.run.>", []byte(`{"stream_name":"RUNS","config":{"durable_name":"p","inactive_threshold":3600000000000}}`))
	f.Add("$JS.API.CONSUMER.CREATE.RUNS.o", []byte(`{"stream_name":"RUNS","config":{"deliver_subject":"$KV.symphony_config.current"}}`))
	f.Add("$JS.API.CONSUMER.CREATE.RUNS.o", []byte(`{"config":{"Durable_Name":"x","durable_name":"","DELIVER_SUBJECT":"_INBOX.a"}}`))
	f.Add("$JS.API.CONSUMER.CREATE.", []byte(`null`))
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		stream, err := checkListenerCreate(subject, body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty refusal")
			}
			return
		}
		if !strings.HasPrefix(subject, jsConsumerCreate) || stream == "" || strings.Contains(stream, ".") {
			t.Fatalf("accepted subject %q (stream %q)", subject, stream)
		}
		var cfg struct {
			Config struct {
				Durable           string        `json:"durable_name"`
				DeliverSubject    string        `json:"deliver_subject"`
				InactiveThreshold time.Duration `json:"inactive_threshold"`
			} `json:"config"`
		}
		if err := json.Unmarshal(body, &cfg); err != nil {
			t.Fatalf("accepted a body the server cannot read: %v", err)
		}
		c := cfg.Config
		if c.Durable != "" && c.InactiveThreshold <= 0 {
			t.Fatalf("accepted a durable that never expires: %+v", c)
		}
		if c.InactiveThreshold > MaxListenerInactivity || c.InactiveThreshold < 0 {
			t.Fatalf("accepted inactive threshold %s", c.InactiveThreshold)
		}
		if c.DeliverSubject != "" && !strings.HasPrefix(c.DeliverSubject, listenerInboxPrefix) {
			t.Fatalf("accepted deliver subject %q", c.DeliverSubject)
		}
	})
}
