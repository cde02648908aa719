"""Record real Linux TCP behaviour on loopback: the `samples/loopback_*.pcap` captures.

    sudo python3 samples/record_loopback.py [--out samples/]

Run as root. The script re-executes itself under `unshare --net`, so everything happens in a
network namespace it has just created, which holds nothing but `lo`; it checks that before
sending a packet, and every socket binds or connects to 127.0.0.1 only. For each scenario it
starts `tcpdump -i lo -s 128` (the SLL2 one uses `-i any`, which in this namespace is `lo`
again), drives real sockets, and stops tcpdump. About 30 seconds in all.

Two scenarios need a packet dropped after tcpdump has seen it: a tc `clsact` ingress filter on
`lo` runs a classic BPF program (compiled by `tcpdump -ddd`, its return values turned into
TC_ACT_SHOT / TC_ACT_UNSPEC) in direct-action mode. Packet taps run before tc ingress, so the
capture shows the packet, and the kernel then drops it.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

LO = "127.0.0.1"
SNAPLEN = 128


# --------------------------------------------------------------------------- the namespace

def enter_namespace(argv) -> None:
    """Re-run this script inside a new network namespace (never returns)."""
    if os.geteuid() != 0:
        sys.exit("record_loopback: run as root (it creates a network namespace)")
    for tool in ("unshare", "ip", "tc", "tcpdump"):
        if shutil.which(tool) is None:
            sys.exit("record_loopback: %s not found" % tool)
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, os.path.abspath(__file__),
                          "--in-namespace"] + list(argv))


def check_namespace() -> None:
    """Refuse to run anywhere but in a fresh namespace whose only interface is lo."""
    if os.readlink("/proc/self/ns/net") == os.readlink("/proc/%d/ns/net" % os.getppid()):
        sys.exit("record_loopback: not in a new network namespace")
    links = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    names = [line.split(":")[1].strip() for line in links]
    if names != ["lo"]:
        sys.exit("record_loopback: namespace has interfaces %s, expected only lo" % names)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


@contextmanager
def tcpdump(path: Path, interface: str = "lo"):
    """Capture on `interface` into `path` while the block runs."""
    proc = subprocess.Popen(["tcpdump", "-Z", "root", "-i", interface, "-s", str(SNAPLEN), "-U",
                             "--immediate-mode", "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:                                  # wait until tcpdump is really listening
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stderr.readline() if ready else ""
        if "listening on" in line:
            break
        if not ready or proc.poll() is not None:
            proc.kill()
            sys.exit("record_loopback: tcpdump did not start: %s" % line.strip())
    try:
        yield
    finally:
        time.sleep(0.3)                          # let delayed ACKs reach the capture
        proc.send_signal(2)                      # SIGINT: tcpdump flushes and exits
        proc.wait(timeout=10)


@contextmanager
def drop_on_lo_ingress(pcap_filter: str):
    """Drop packets matching a tcpdump filter expression as they arrive on lo."""
    code = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", pcap_filter], check=True,
                          capture_output=True, text=True).stdout.split("\n")
    count, insns = code[0], [i for i in code[1:] if i]
    # `ret #snaplen` (match) becomes TC_ACT_SHOT (2), `ret #0` becomes TC_ACT_UNSPEC (-1).
    insns = ["6 0 0 2" if i.startswith("6 ") and i != "6 0 0 0" else
             "6 0 0 4294967295" if i == "6 0 0 0" else i for i in insns]
    subprocess.run(["tc", "qdisc", "add", "dev", "lo", "clsact"], check=True)
    subprocess.run(["tc", "filter", "add", "dev", "lo", "ingress", "bpf", "da", "bytecode",
                    ",".join([count] + insns)], check=True)
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "clsact"], check=True)


# --------------------------------------------------------------------------- socket helpers

def listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LO, port))
    s.listen(8)
    return s


def connected_pair(port: int, client_opts=None):
    """(listening socket, client socket, server's accepted socket) on 127.0.0.1:port."""
    srv = listener(port)
    cli = socket.socket()
    for (level, name), value in (client_opts or {}).items():
        cli.setsockopt(level, name, value)
    cli.connect((LO, port))
    conn, _ = srv.accept()
    return srv, cli, conn


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_until_eof(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


REQUEST = b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000


def request_response(cli: socket.socket, conn: socket.socket) -> None:
    cli.sendall(REQUEST)
    recv_exactly(conn, len(REQUEST))
    conn.sendall(RESPONSE)
    recv_exactly(cli, len(RESPONSE))


# --------------------------------------------------------------------------- the scenarios

def normal_close(port=8080):
    """Request, response; the client closes first; the server closes 0.2 s after reading EOF,
    so its delayed ACK of the FIN goes out alone: FIN, ACK, FIN, ACK."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    cli.close()
    time.sleep(0.2)
    recv_until_eof(conn)
    conn.close()
    srv.close()


def close_wait(port=8081):
    """The client closes; the server reads EOF but never closes its socket (until after the
    capture). 5 s later one UDP datagram marks how long the capture ran on."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    cli.close()
    time.sleep(0.1)
    recv_until_eof(conn)                           # the application saw EOF and did nothing
    time.sleep(5)
    marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    marker.bind((LO, 9999))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"end of capture", (LO, 9999))
    sender.close()
    marker.close()
    return conn, srv                               # closed by the caller after tcpdump stops


def refused(port=8082):
    """connect() to a port nobody listens on: SYN, RST+ACK."""
    cli = socket.socket()
    try:
        cli.connect((LO, port))
    except ConnectionRefusedError:
        pass
    cli.close()


def syn_retransmissions(port=8083):
    """The SYN is dropped (after the capture saw it) on its way in, so it is never answered;
    connect() gives up after 8.5 s."""
    with drop_on_lo_ingress("tcp dst port %d" % port):
        cli = socket.socket()
        cli.settimeout(8.5)
        try:
            cli.connect((LO, port))
        except (socket.timeout, TimeoutError):
            pass
        cli.close()


def half_close(port=8084):
    """The client sends its request and shutdown(SHUT_WR); 0.1 s later the server (the FIN ACKed
    by then) sends its reply in three writes 50 ms apart, and closes."""
    srv, cli, conn = connected_pair(port)
    cli.sendall(REQUEST)
    cli.shutdown(socket.SHUT_WR)
    recv_until_eof(conn)
    time.sleep(0.1)
    for _ in range(3):
        conn.sendall(b"y" * 1000)
        time.sleep(0.05)
    conn.close()
    recv_until_eof(cli)
    cli.close()
    srv.close()


def abortive_close(port=8085):
    """Request, response, then the client closes with SO_LINGER {on, 0 s}: RST instead of FIN."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()
    time.sleep(0.05)
    try:
        conn.recv(1)
    except ConnectionResetError:
        pass
    conn.close()
    srv.close()


def keepalive(port=8086):
    """SO_KEEPALIVE with TCP_KEEPIDLE=1, TCP_KEEPINTVL=1 on the client; after 3.5 idle seconds
    (three probes, each ACKed) the client closes normally."""
    opts = {(socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT): 3}
    srv, cli, conn = connected_pair(port, opts)
    request_response(cli, conn)
    time.sleep(3.5)
    cli.close()
    recv_until_eof(conn)
    conn.close()
    srv.close()


def simultaneous_close(port=8087):
    """Both sides shutdown(SHUT_WR) with neither having seen the other's FIN: the client's FIN
    is dropped on its way in, so the server's FIN does not acknowledge it. The client ACKs the
    server's FIN (CLOSING), retransmits its FIN after its RTO, and the server ACKs it."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    with drop_on_lo_ingress("tcp dst port %d and tcp[tcpflags] & tcp-fin != 0" % port):
        cli.shutdown(socket.SHUT_WR)
        conn.shutdown(socket.SHUT_WR)
    time.sleep(1.0)                                # the FIN retransmission (RTO >= 200 ms)
    recv_until_eof(cli)
    recv_until_eof(conn)
    cli.close()
    conn.close()
    srv.close()


def self_connect(port=6881):
    """A socket bound to 127.0.0.1:6881 connects to 127.0.0.1:6881: a simultaneous open of a
    socket with itself (one 4-tuple, both ends the same). It sends itself a byte and closes."""
    s = socket.socket()
    s.bind((LO, port))
    s.connect((LO, port))
    s.sendall(b"x")
    s.recv(1)
    time.sleep(0.1)
    s.close()


SCENARIOS = [
    ("loopback_normal_close.pcap", normal_close, "lo"),
    ("loopback_close_wait.pcap", close_wait, "lo"),
    ("loopback_refused.pcap", refused, "lo"),
    ("loopback_syn_retransmissions.pcap", syn_retransmissions, "lo"),
    ("loopback_half_close.pcap", half_close, "lo"),
    ("loopback_abortive_close.pcap", abortive_close, "lo"),
    ("loopback_keepalive.pcap", keepalive, "lo"),
    ("loopback_simultaneous_close.pcap", simultaneous_close, "lo"),
    ("loopback_self_connect.pcap", self_connect, "lo"),
    ("loopback_any_sll2.pcap", lambda: normal_close(8088), "any"),
]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--in-namespace" not in argv:
        enter_namespace(argv)
    argv.remove("--in-namespace")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    check_namespace()
    print("kernel %s" % os.uname().release)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario, interface in SCENARIOS:
            path = Path(tmp) / name
            with tcpdump(path, interface):
                leftovers = scenario()
            for s in leftovers or ():
                s.close()
            shutil.copyfile(path, args.out / name)
            summary = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True,
                                     text=True).stdout
            print("== %s (%d packets)\n%s" % (name, len(summary.splitlines()), summary))
    print("recorded in %.1f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
