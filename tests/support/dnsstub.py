"""A DNS server stand-in on 127.0.0.1:53 inside a network namespace of the test's own, so
that resolver tests send no query off the machine.

It speaks real DNS over UDP (RFC 1035 headers, questions, A records): the system resolver
(glibc's getaddrinfo, through /etc/resolv.conf) queries it as it would any server. Names in
`--record NAME=IPV4` answer with that address; every other name answers NXDOMAIN, and a
name in `--servfail` answers SERVFAIL.

    unshare -n -m -- sh -c 'ip link set lo up && mount --bind RESOLV /etc/resolv.conf &&
        exec python -m tests.support.dnsstub --record a.test=192.0.2.1 -- NAME...'

prints, for each NAME, one JSON line: what `diagnostics.httpchecks`' `http.dns` check said.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import threading

A, IN = 1, 1
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


def _question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, end offset) of the first question."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", packet[offset + 1:offset + 5])
    return ".".join(labels).lower(), qtype, offset + 5


def answer(packet: bytes, records: dict[str, str], servfail: set[str]) -> bytes:
    """The response to one query packet."""
    query_id, flags = struct.unpack("!HH", packet[:4])
    name, qtype, end = _question(packet)
    rcode, answers = NOERROR, b""
    if name in servfail:
        rcode = SERVFAIL
    elif name not in records:
        rcode = NXDOMAIN
    elif qtype == A:  # a known name asked for AAAA gets no answer (NODATA), as real ones do
        rdata = ipaddress.IPv4Address(records[name]).packed
        answers = struct.pack("!HHHIH", 0xC00C, A, IN, 60, len(rdata)) + rdata
    response_flags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode  # QR, RD copied, RA
    header = struct.pack("!HHHHHH", query_id, response_flags, 1, 1 if answers else 0, 0, 0)
    return header + packet[12:end] + answers


def serve(records: dict[str, str], servfail: set[str]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))

    def loop() -> None:
        while True:
            packet, peer = sock.recvfrom(512)
            sock.sendto(answer(packet, records, servfail), peer)

    threading.Thread(target=loop, name="dns-stub", daemon=True).start()
    return sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record", action="append", default=[], metavar="NAME=IPV4")
    parser.add_argument("--servfail", action="append", default=[], metavar="NAME")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    records = dict(item.split("=", 1) for item in args.record)
    serve({k.lower(): v for k, v in records.items()}, {n.lower() for n in args.servfail})

    from diagnostics import http, httpchecks
    from runner.context import StepContext
    from runner.inventory import Target
    from runner.registry import Registry

    registry = Registry()
    http.register(registry)
    httpchecks.register(registry)
    kind = registry.kind("http.dns")
    target = Target("api", "http", http.HttpSettings(url="http://127.0.0.1/", timeout="5s"))
    for name in args.names:
        with registry.backend(kind.target_kind).connector.probe(
                target, StepContext.outside_a_run(kind.timeout)) as handle:
            result = kind.func(handle, kind.params.model_validate({"name": name,
                                                                    "timeout": "3s"}))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
