#!/bin/bash
# Entrypoint of the lab sshd image.
#
#   lab-entrypoint --build   run once by the image build: host keys, the `runbook` user and
#                            sshd's settings. The host keys are baked into the image, so every
#                            container of one build presents the same keys and a test can
#                            record them in a known_hosts file.
#   lab-entrypoint [ARGS]    at container start: install the client's public key from
#                            AUTHORIZED_KEYS (the key lines) or a file mounted at
#                            /authorized_keys, then exec sshd in the foreground (PID 1, so that
#                            `docker stop` reaches it), logging to stderr. ARGS go to sshd.
set -euo pipefail

USER_NAME=runbook
HOME_DIR=/home/$USER_NAME

if [ "${1:-}" = --build ]; then
    # The keys Debian's postinst made during debootstrap go: this step is the one place the
    # image's host keys come from.
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A
    useradd --create-home --shell /bin/bash "$USER_NAME"
    # '*': no password login, but not '!' (locked), which sshd refuses even for a key.
    usermod -p '*' "$USER_NAME"
    cat >/etc/ssh/sshd_config.d/lab.conf <<'CONF'
# pam_loginuid fails in unprivileged containers; keys are the only way in.
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers runbook
CONF
    exit 0
fi

mkdir -p /run/sshd
install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$HOME_DIR/.ssh"
keys=$HOME_DIR/.ssh/authorized_keys
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
    printf '%s\n' "$AUTHORIZED_KEYS" >"$keys"
elif [ -r /authorized_keys ]; then
    cat /authorized_keys >"$keys"
else
    echo "lab-entrypoint: set AUTHORIZED_KEYS or mount a file at /authorized_keys" >&2
    exit 2
fi
chown "$USER_NAME:$USER_NAME" "$keys"
chmod 600 "$keys"

exec /usr/sbin/sshd -D -e "$@"
