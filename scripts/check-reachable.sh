#!/usr/bin/env bash
# Started as root, the gate runs each process as its own system user, and those
# users read the data (manifests/, policies/, providers/, sandbox-profiles/) and
# state (.gate/) from this checkout. A checkout under a private directory
# (/root is 0700 on Debian) is out of their reach; say so before a long build
# instead of after it. The processes check again themselves (code path_unreachable).
set -euo pipefail
checkout="${1:?usage: check-reachable.sh CHECKOUT}"
[ "$(id -u)" = 0 ] || exit 0
if ! command -v setpriv >/dev/null; then
    echo "check-reachable: setpriv (util-linux) not found; not checking that $checkout is reachable" >&2
    exit 0
fi
# nobody: a user with no group in common with the directories above the checkout, like the gate's users.
if setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$checkout/sandbox-profiles"; then
    exit 0
fi
blocked="/"
path=""
IFS=/ read -ra parts <<< "${checkout#/}"
for part in "${parts[@]}"; do
    path="$path/$part"
    if ! setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$path"; then
        blocked="$path"
        break
    fi
done
cat >&2 <<MSG
$checkout is out of reach of the gate's process users: $blocked does not let them through.
Started as root, each gate process runs as its own user and reads its data from this checkout.
Clone it somewhere they can reach (e.g. /opt or /srv), or allow them through: chmod o+x $blocked
MSG
exit 1
