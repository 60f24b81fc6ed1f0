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
#
# Safe to copy as a model:
# - Concurrent runs take turns on a lock that the kernel holds for us
#   (flock on an open file descriptor): if this script is killed, even with
#   kill -9, the lock goes with it; nothing is ever left behind to remove.
# - A closed stdout or stderr (accessbot restarted, a pipe into `head`) does
#   not kill it half-way: SIGPIPE is ignored and messages are best effort, so
#   the exit status says only whether the change was made.
# - SIGTERM (accessbot's timeout, a shutdown) stops it between steps, never
#   with a half-written file: the list is replaced by an atomic rename.
set -eu
trap '' PIPE

me=$(basename "$0")
say() { printf '%s: %s\n' "$me" "$*" 2>/dev/null || true; }
fail() {
    say "$*" >&2
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
command -v flock >/dev/null 2>&1 || fail "flock is not installed; install util-linux"

dir=${ACCESSBOT_STATE_DIR:-/tmp}
mkdir -p "$dir" || fail "cannot create $dir; set ACCESSBOT_STATE_DIR to a writable directory"
admins="$dir/billing-admins.txt"
log="$dir/billing-access.log"

# Two requests may finish at the same moment; take turns on the file. The
# lock lives as long as file descriptor 9, that is as long as this process.
exec 9>>"$admins.lock" || fail "cannot open $admins.lock; check that $dir is writable"
flock -w 20 9 || fail "another grant or revoke has held $admins.lock for 20s; is a billing.sh process stuck? (see: fuser $admins.lock)"

tmp=""
trap 'rm -f "$tmp"; exit 143' TERM
trap 'rm -f "$tmp"; exit 130' INT
trap 'rm -f "$tmp"; exit 129' HUP

# --- the actual change -----------------------------------------------------
# Both steps are safe to repeat: accessbot runs a grant or revoke again when
# it crashed before recording the outcome.
touch "$admins"
if [ "$action" = grant ]; then
    grep -qx "$user" "$admins" || printf '%s\n' "$user" >>"$admins"
else
    tmp=$(mktemp "$admins.XXXXXX")
    grep -vx "$user" "$admins" >"$tmp" || true
    mv -f "$tmp" "$admins"
    tmp=""
fi
# ---------------------------------------------------------------------------

# One line per entry: line breaks and other control characters in the
# reason become spaces, so a reason cannot forge a second log line.
reason=$(printf '%s' "${ACCESSBOT_REASON:-}" | tr '\000-\037\177' '[ *]')
printf '%s %s user=%s email=%s request=%s runbook=%s expires=%s reason="%s"\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$action" "$user" "${ACCESSBOT_USER_EMAIL:-}" \
    "${ACCESSBOT_REQUEST_ID:-}" "${ACCESSBOT_RUNBOOK:-billing-admin}" \
    "${ACCESSBOT_EXPIRES_AT:-}" "$reason" >>"$log" || true
say "$action billing admin for $user: done"
