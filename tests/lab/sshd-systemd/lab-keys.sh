#!/bin/bash
# lab-keys (run by lab-keys.service before ssh.service): the sshd-systemd host's
# authorized_keys from the container's AUTHORIZED_KEYS, which docker gave PID 1 (systemd
# passes no environment of its own to services, so it is read from /proc/1/environ).
set -euo pipefail

home=/home/runbook
keys=$(tr '\0' '\n' </proc/1/environ | sed -n 's/^AUTHORIZED_KEYS=//p')
if [ -z "$keys" ]; then
    echo "lab-keys: the container has no AUTHORIZED_KEYS" >&2
    exit 2
fi
install -d -m 700 -o runbook -g runbook "$home/.ssh"
printf '%s\n' "$keys" >"$home/.ssh/authorized_keys"
chown runbook:runbook "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
