#!/bin/sh
# Grants or revokes the "breakglass-admin" role in the production access service for the incident-break-glass
# runbook, through the production access service's REST API:
#   grant:  PUT    $PROD_ACCESS_API_URL/v1/users/<email>/roles/breakglass-admin
#   revoke: DELETE $PROD_ACCESS_API_URL/v1/users/<email>/roles/breakglass-admin
# Adjust the URL to your production access service's API if it differs.
#
# accessbot runs it as `prod-breakglass.sh grant` or `prod-breakglass.sh revoke` with the ACCESSBOT_*
# variables set (see runbooks/README.md). Exit 0 means done; anything else
# means failed, and the message below is shown to the operators.
#
# Needs, in accessbot's environment and listed under `env` in incident-break-glass.toml:
#   PROD_ACCESS_API_URL    the API's base address, e.g. https://api.example.com
#   PROD_ACCESS_API_TOKEN  a token of a service account allowed to change roles
#
# Safe to run twice: accessbot runs a grant or revoke again when it crashed
# before recording the outcome. Adding a role the person has already has no
# effect, and removing one they do not have (HTTP 404) counts as done.
set -eu

role="breakglass-admin"
me=$(basename "$0")
fail() {
    echo "$me: $*" >&2
    exit 1
}

action=${1:-${ACCESSBOT_ACTION:-}}
case "$action" in
grant) method=PUT ;;
revoke) method=DELETE ;;
*) fail "say grant or revoke (as the first argument or in ACCESSBOT_ACTION), got '$action'" ;;
esac

api=${PROD_ACCESS_API_URL:-}
token=${PROD_ACCESS_API_TOKEN:-}
[ -n "$api" ] || fail "PROD_ACCESS_API_URL is not set; set it to the production access service's API address in accessbot's environment and list it under env in incident-break-glass.toml"
[ -n "$token" ] || fail "PROD_ACCESS_API_TOKEN is not set; create an API token for accessbot in the production access service, set it in accessbot's environment and list it under env in incident-break-glass.toml"
command -v curl >/dev/null || fail "curl is not installed on this host; install it or change this script"

# The email goes into the URL, so only plain addresses are accepted.
email=${ACCESSBOT_USER_EMAIL:-}
case "$email" in
"" | *[!A-Za-z0-9@._+-]* | *@*@* | @* | *@) fail "ACCESSBOT_USER_EMAIL is missing or not a plain email address: '$email'" ;;
*@*) ;;
*) fail "ACCESSBOT_USER_EMAIL is not an email address: '$email'" ;;
esac
request=$(printf '%s' "${ACCESSBOT_REQUEST_ID:-}" | tr -cd 'A-Za-z0-9_-')

# The token goes to curl on stdin so it never shows in the process list.
status=$(printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl --config - --silent --show-error --max-time 20 \
        --output /dev/null --write-out '%{http_code}' \
        --header "X-Request-Id: $request" \
        --request "$method" "${api%/}/v1/users/$email/roles/$role") ||
    fail "could not reach ${api%/}; check PROD_ACCESS_API_URL and the network"

case "$status" in
2??) echo "$me: $action $role for $email: done" ;;
404)
    [ "$action" = revoke ] || fail "the production access service does not know $email (HTTP 404); create the user first"
    echo "$me: $email does not have $role (or does not exist): nothing to revoke"
    ;;
401 | 403) fail "the production access service refused the token (HTTP $status); check PROD_ACCESS_API_TOKEN and its permissions" ;;
*) fail "the production access service answered HTTP $status to $method .../roles/$role" ;;
esac
