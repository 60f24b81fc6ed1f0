#!/bin/sh
# Grants or revokes a role in a system that has a REST API for roles:
#   grant:  PUT    $<PREFIX>_API_URL/v1/users/<email>/roles/<role>
#   revoke: DELETE $<PREFIX>_API_URL/v1/users/<email>/roles/<role>
# Adjust the two URLs below if your system's API differs.
#
# Runbooks use it like this (crm-support.toml):
#   grant  = ["./scripts/rest-role.sh", "grant",  "CRM", "support-records", "the CRM"]
#   revoke = ["./scripts/rest-role.sh", "revoke", "CRM", "support-records", "the CRM"]
#   env    = ["CRM_API_URL", "CRM_API_TOKEN"]
# Arguments: the action, the prefix of the two variables below, the role, and
# the system's name for messages. accessbot also sets the ACCESSBOT_*
# variables (see runbooks/README.md). Exit 0 means done; anything else means
# failed, and the message below is shown to the operators. Exit 78 says that
# trying again will not help until a person changes something (a setting is
# missing or wrong, the token is refused): accessbot then stops retrying and
# asks the runbook's owner; after any other failure it tries again.
#
# Needs, in accessbot's environment and listed under `env` in the runbook:
#   <PREFIX>_API_URL    the API's base address, e.g. https://api.example.com
#   <PREFIX>_API_TOKEN  a token of a service account allowed to change roles
#
# Safe to run twice: accessbot runs a grant or revoke again when it crashed
# before recording the outcome. Adding a role the person has already has no
# effect, and removing one they do not have (HTTP 404) counts as done.
#
# Safe under a closed stdout (SIGPIPE is ignored and messages are best
# effort, so the exit status says only whether the change was made), under
# SIGTERM (the one request in flight is idempotent; curl dies with us), and
# under concurrent runs (each run is one idempotent HTTP call).
set -eu
trap '' PIPE

me=$(basename "$0")
say() { printf '%s: %s\n' "$me" "$*" 2>/dev/null || true; }
fail() {
    say "$*" >&2
    exit 1
}
give_up() {
    printf '%s: %s\n' "$me" "$*" >&2 2>/dev/null || true
    exit 78
}

[ $# -ge 3 ] || give_up "usage: $me grant|revoke <VARIABLE_PREFIX> <role> [system name]"
action=$1
prefix=$2
role=$3
system=${4:-the system}

case "$action" in
grant) method=PUT ;;
revoke) method=DELETE ;;
*) give_up "say grant or revoke as the first argument, got '$action'" ;;
esac
case "$prefix" in
"" | *[!A-Z0-9_]*) give_up "the variable prefix must be capital letters, digits and _ (like CRM), got '$prefix'" ;;
esac
case "$role" in
"" | *[!A-Za-z0-9._-]*) give_up "the role must be letters, digits, '.', '_' or '-', got '$role'" ;;
esac

# The prefix was checked above, so these only ever read <PREFIX>_API_URL and
# <PREFIX>_API_TOKEN.
eval "api=\${${prefix}_API_URL:-}"
eval "token=\${${prefix}_API_TOKEN:-}"
[ -n "$api" ] || give_up "${prefix}_API_URL is not set; set it to the API address of $system in accessbot's environment and list it under env in the runbook"
[ -n "$token" ] || give_up "${prefix}_API_TOKEN is not set; create an API token for accessbot in $system, set it in accessbot's environment and list it under env in the runbook"
command -v curl >/dev/null || give_up "curl is not installed on this host; install it or change this script"

# The email goes into the URL, so only plain addresses are accepted.
email=${ACCESSBOT_USER_EMAIL:-}
case "$email" in
"" | *[!A-Za-z0-9@._+-]* | *@*@* | @* | *@) give_up "ACCESSBOT_USER_EMAIL is missing or not a plain email address: '$email'" ;;
*@*) ;;
*) give_up "ACCESSBOT_USER_EMAIL is not an email address: '$email'" ;;
esac
request=$(printf '%s' "${ACCESSBOT_REQUEST_ID:-}" | tr -cd 'A-Za-z0-9_-')

# The token goes to curl on stdin so it never shows in the process list.
status=$(printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl --config - --silent --show-error --max-time 20 \
        --output /dev/null --write-out '%{http_code}' \
        --header "X-Request-Id: $request" \
        --request "$method" "${api%/}/v1/users/$email/roles/$role") ||
    fail "could not reach ${api%/}; check ${prefix}_API_URL and the network"

case "$status" in
2??) say "$action $role for $email: done" ;;
404)
    [ "$action" = revoke ] || give_up "$system does not know $email (HTTP 404); create the user first"
    say "$email does not have $role (or does not exist): nothing to revoke"
    ;;
401 | 403) give_up "$system refused the token (HTTP $status); check ${prefix}_API_TOKEN and its permissions" ;;
*) fail "$system answered HTTP $status to $method .../roles/$role" ;;
esac
