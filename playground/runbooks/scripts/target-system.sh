#!/bin/sh
# The playground's stand-in for a target system: `target-system.sh NAME grant`
# or `target-system.sh NAME revoke` adds or removes ACCESSBOT_USER_ID in
# $ACCESSBOT_STATE_DIR/NAME.txt (one Slack user ID per line), which the
# playground's page shows as what the target system holds now. Both are
# safe to repeat, runs take turns on a lock, and the list is replaced by an
# atomic rename, like scripts/billing.sh in the shipped runbooks.
set -eu
trap '' PIPE

name=${1:-}
action=${2:-}
user=${ACCESSBOT_USER_ID:-}
fail() {
    printf 'target-system.sh: %s\n' "$*" >&2 2>/dev/null || true
    exit 1
}
case "$name" in
"" | *[!a-z0-9-]*) fail "the first argument names the system (a-z, 0-9, -), got '$name'" ;;
esac
case "$action" in
grant | revoke) ;;
*) fail "the second argument is grant or revoke, got '$action'" ;;
esac
case "$user" in
"" | *[!A-Z0-9]*) fail "ACCESSBOT_USER_ID must be a Slack user ID such as U0123ABCD, got '$user'" ;;
esac
command -v flock >/dev/null 2>&1 || fail "flock is not installed; install util-linux"

dir=${ACCESSBOT_STATE_DIR:?set ACCESSBOT_STATE_DIR to the playground state directory}
mkdir -p "$dir"
list="$dir/$name.txt"
exec 9>>"$list.lock"
flock -w 20 9 || fail "another run has held $list.lock for 20s"

touch "$list"
tmp=$(mktemp "$list.XXXXXX")
trap 'rm -f "$tmp"' EXIT
if [ "$action" = grant ]; then
    grep -vx "$user" "$list" >"$tmp" || true
    printf '%s\n' "$user" >>"$tmp"
else
    grep -vx "$user" "$list" >"$tmp" || true
fi
mv -f "$tmp" "$list"
printf 'target-system.sh: %s %s for %s: done\n' "$name" "$action" "$user" 2>/dev/null || true
