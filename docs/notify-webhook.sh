#!/usr/bin/env bash
# notify-webhook.sh: a notify.command for Symphony that posts each
# notification to a webhook with curl.
#
# Symphony writes the notification as one JSON object on standard input
# (and in SYMPHONY_* variables); this script posts that object, as is, to
# the URL in $NOTIFY_WEBHOOK_URL. The URL is the operator's: set it in
# Symphony's environment, or name another variable in WORKFLOW.md:
#
#   notify:
#     command: NOTIFY_WEBHOOK_URL="$MY_HOOK_URL" ./notify-webhook.sh
#
# The URL reaches curl through a config on a pipe, not its command line,
# so a token in it does not show in the process list. A non-2xx answer or
# a network error makes the script exit non-zero, and Symphony logs and
# counts the failure. curl gives up after two retries of a transient
# error, within Symphony's default notify.timeout_ms (60 s).
set -euo pipefail

url=${NOTIFY_WEBHOOK_URL:?set NOTIFY_WEBHOOK_URL to the webhook address}
# curl's config syntax: a quoted value with backslash and quote escaped.
esc=${url//\\/\\\\}
esc=${esc//\"/\\\"}

exec curl --silent --show-error --fail --proto '=http,https' \
	--max-time 15 --retry 2 \
	--header 'Content-Type: application/json' \
	--data-binary @- \
	--config <(printf 'url = "%s"\n' "$esc")
