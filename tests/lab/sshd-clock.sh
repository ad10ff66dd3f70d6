#!/bin/bash
# lab-clock: start chrony in the lab's sshd-chrony host, in one of three real clock states.
# Run as root with `docker exec` once the container is up (sshd stays PID 1 and reaps).
#
#   lab-clock unsynchronised   chronyd's only server is 127.0.0.1 port 1, where nothing
#                              answers: `chronyc tracking` reads "Not synchronised".
#   lab-clock synchronised     a second chronyd serves its own clock (`local stratum 8`) on
#                              127.0.0.1:11123 and the host's chronyd syncs to it over NTP.
#   lab-clock offset SECONDS   the same, but that server runs under libfaketime SECONDS ahead:
#                              the host's clock is SECONDS slow of its NTP time.
#
# Every chronyd runs with -x: it never steps or slews the clock (the container shares the
# machine's kernel clock and has no CAP_SYS_TIME), it only measures and reports. All NTP
# traffic stays on the container's loopback. Returns once tracking shows the state.
set -euo pipefail

MODE=${1:?usage: lab-clock unsynchronised|synchronised|offset SECONDS}
SERVER_PORT=11123

install -d -o _chrony -g _chrony /run/chrony
case $MODE in
    unsynchronised)
        echo "server 127.0.0.1 port 1 iburst" >/etc/chrony/chrony.conf
        want="Leap status     : Not synchronised"
        ;;
    synchronised | offset)
        cat >/etc/chrony/server.conf <<CONF
local stratum 8
port $SERVER_PORT
bindaddress 127.0.0.1
allow 127.0.0.1
cmdport 0
pidfile /run/chrony/server.pid
CONF
        # Polls every 1/4 s: the client selects the server within a second or two.
        echo "server 127.0.0.1 port $SERVER_PORT iburst minpoll -2 maxpoll -2" \
            >/etc/chrony/chrony.conf
        if [ "$MODE" = offset ]; then
            ahead=${2:?usage: lab-clock offset SECONDS}
            faketime -f "+${ahead}s" chronyd -x -f /etc/chrony/server.conf
        else
            chronyd -x -f /etc/chrony/server.conf
        fi
        want="Reference ID    : 7F000001 (127.0.0.1)"
        ;;
    *)
        echo "lab-clock: unknown mode $MODE" >&2
        exit 2
        ;;
esac
chronyd -x

for _ in $(seq 600); do  # up to a minute on a busy machine
    tracking=$(chronyc -n tracking 2>&1) || true
    if grep -qF "$want" <<<"$tracking"; then
        exit 0
    fi
    sleep 0.1
done
echo "lab-clock: chrony did not reach '$want'; tracking reads:" >&2
echo "$tracking" >&2
exit 1
