#!/bin/sh
# Grants or revokes the "onboarding-admin" role in the HR tool for the hr-onboarding
# runbook, through the HR tool's REST API:
#   grant:  PUT    $HR_API_URL/v1/users/<email>/roles/onboarding-admin
#   revoke: DELETE $HR_API_URL/v1/users/<email>/roles/onboarding-admin
# Adjust the URL to your HR tool's API if it differs.
#
# accessbot runs it as `hr-tool.sh grant` or `hr-tool.sh revoke` with the ACCESSBOT_*
# variables set (see runbooks/README.md). Exit 0 means done; anything else
# means failed, and the message below is shown to the operators.
#
# Needs, in accessbot's environment and listed under `env` in hr-onboarding.toml:
#   HR_API_URL    the API's base address, e.g. https://api.example.com
#   HR_API_TOKEN  a token of a service account allowed to change roles
#
# Safe to run twice: accessbot runs a grant or revoke again when it crashed
# before recording the outcome. Adding a role the person has already has no
# effect, and removing one they do not have (HTTP 404) counts as done.
set -eu

role="onboarding-admin"
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

api=${HR_API_URL:-}
token=${HR_API_TOKEN:-}
[ -n "$api" ] || fail "HR_API_URL is not set; set it to the HR tool's API address in accessbot's environment and list it under env in hr-onboarding.toml"
[ -n "$token" ] || fail "HR_API_TOKEN is not set; create an API token for accessbot in the HR tool, set it in accessbot's environment and list it under env in hr-onboarding.toml"
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
    fail "could not reach ${api%/}; check HR_API_URL and the network"

case "$status" in
2??) echo "$me: $action $role for $email: done" ;;
404)
    [ "$action" = revoke ] || fail "the HR tool does not know $email (HTTP 404); create the user first"
    echo "$me: $email does not have $role (or does not exist): nothing to revoke"
    ;;
401 | 403) fail "the HR tool refused the token (HTTP $status); check HR_API_TOKEN and its permissions" ;;
*) fail "the HR tool answered HTTP $status to $method .../roles/$role" ;;
esac
