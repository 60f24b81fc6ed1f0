#!/bin/sh
# Demo grant program for the billing-admin runbook. Instead of calling a real
# billing portal it keeps the list of current billing admins in a file, so
# accessbot can be tried end to end with nothing else set up. To connect the
# real portal, replace the block marked "the actual change" with a call to
# its API (see rest-role.sh for an example with curl).
#
# accessbot runs it as `billing.sh grant` or `billing.sh revoke`, with
# ACCESSBOT_ACTION, ACCESSBOT_REQUEST_ID, ACCESSBOT_RUNBOOK, ACCESSBOT_USER_ID,
# ACCESSBOT_USER_EMAIL, ACCESSBOT_EXPIRES_AT and ACCESSBOT_REASON set.
# Exit 0 means done; anything else means failed (accessbot retries and tells
# the requester).
#
# Files, in ACCESSBOT_STATE_DIR (default /tmp):
#   billing-admins.txt  one Slack user ID per line: who is billing admin now
#   billing-access.log  one line per grant or revoke
set -eu

me=$(basename "$0")
fail() {
    echo "$me: $*" >&2
    exit 1
}

action=${1:-${ACCESSBOT_ACTION:-}}
user=${ACCESSBOT_USER_ID:-}
case "$action" in
grant | revoke) ;;
*) fail "say grant or revoke (as the first argument or in ACCESSBOT_ACTION), got '$action'" ;;
esac
case "$user" in
"" | *[!A-Z0-9]*) fail "ACCESSBOT_USER_ID must be a Slack user ID such as U0123ABCD, got '$user'" ;;
esac

dir=${ACCESSBOT_STATE_DIR:-/tmp}
mkdir -p "$dir" || fail "cannot create $dir; set ACCESSBOT_STATE_DIR to a writable directory"
admins="$dir/billing-admins.txt"
log="$dir/billing-access.log"

# Two requests may finish at the same moment; take turns on the file.
lock="$admins.lock"
tries=0
until mkdir "$lock" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 10 ] || fail "$lock has been locked for 10s; remove it if no other grant is running"
    sleep 1
done
trap 'rmdir "$lock"' EXIT

# --- the actual change -----------------------------------------------------
# Both steps are safe to repeat: accessbot runs a grant or revoke again when
# it crashed before recording the outcome.
touch "$admins"
if [ "$action" = grant ]; then
    grep -qx "$user" "$admins" || echo "$user" >>"$admins"
else
    grep -vx "$user" "$admins" >"$admins.new" || true
    mv "$admins.new" "$admins"
fi
# ---------------------------------------------------------------------------

reason=$(printf '%s' "${ACCESSBOT_REASON:-}" | tr '\n\r\t' '   ')
printf '%s %s user=%s email=%s request=%s runbook=%s expires=%s reason="%s"\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$action" "$user" "${ACCESSBOT_USER_EMAIL:-}" \
    "${ACCESSBOT_REQUEST_ID:-}" "${ACCESSBOT_RUNBOOK:-billing-admin}" \
    "${ACCESSBOT_EXPIRES_AT:-}" "$reason" >>"$log"
echo "$me: $action billing admin for $user: done"
