package notifier

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/symphony-oss/symphony/bus"
)

// webhookScript is the README's example notify.command.
const webhookScript = "../../docs/notify-webhook.sh"

// posted is one request the test webhook received.
type posted struct {
	contentType string
	body        []byte
}

// TestWebhookExample runs docs/notify-webhook.sh, the file itself, as
// notify.command against a webhook on 127.0.0.1: the body is the
// notification, and a webhook that refuses makes a counted failure.
func TestWebhookExample(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the webhook example needs curl: install it (apt-get install curl, brew install curl)")
	}
	got := make(chan posted, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/hook/T0KEN" {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		got <- posted{r.Header.Get("Content-Type"), body}
	}))
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("the test server is not on 127.0.0.1: %s", srv.URL)
	}
	script, err := filepath.Abs(webhookScript)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	// A proxy from the machine's environment must not take the request.
	h.env = append(h.env, "NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1", "MY_HOOK_URL="+srv.URL+"/hook/T0KEN", "REFUSING_URL="+srv.URL+"/refuse")
	// The operator names the variable that holds the URL, as the script's
	// header shows.
	h.configure(`if [ "$SYMPHONY_REASON" = refuse ]; then NOTIFY_WEBHOOK_URL="$REFUSING_URL" `+script+`; else NOTIFY_WEBHOOK_URL="$MY_HOOK_URL" `+script+`; fi`, 60*time.Second)
	h.start()
	n := notification(bus.NotifyBudgetExceeded, "budget_exceeded/run-7")
	n.Reason = `budget.per_issue.usd: spent $2.75 of $2.5 — "quoted", ünïcode`
	h.publish(n)
	var p posted
	select {
	case p = <-got:
	case <-time.After(testTimeout):
		t.Fatalf("the webhook received nothing; logs:\n%s", h.logs)
	}
	var back bus.Notification
	if err := json.Unmarshal(p.body, &back); err != nil {
		t.Fatalf("the body is not the notification's JSON: %v\n%s", err, p.body)
	}
	if !back.At.Equal(n.At) {
		t.Errorf("at = %v", back.At)
	}
	back.At = n.At
	if back != n || p.contentType != "application/json" {
		t.Errorf("posted %s %+v, want %+v", p.contentType, back, n)
	}
	h.status("delivered", func(s bus.NotifyStatus) bool { return s.Delivered == 1 })

	refused := notification(bus.NotifyRunBlocked, "refused")
	refused.Reason = "refuse"
	h.publish(refused)
	st := h.status("a failure", func(s bus.NotifyStatus) bool { return s.Failed == 1 })
	if f := st.LastFailure; f == nil || f.ID != refused.ID || !strings.Contains(f.Error, "403") {
		t.Errorf("last failure: %+v", st.LastFailure)
	}
}
