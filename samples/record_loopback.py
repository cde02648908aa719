"""Record real Linux TCP behaviour on loopback: the `samples/loopback_*.pcap` captures.

    sudo python3 samples/record_loopback.py [--out samples/] [--only NAME...]

Run as root. The script re-executes itself under `unshare --net`, so everything happens in a
network namespace it has just created, which holds nothing but `lo`; it checks that before
sending a packet, and every socket binds or connects to 127.0.0.1 only. For each scenario it
starts `tcpdump -i lo -s 128` (the SLL2 one uses `-i any`, which in this namespace is `lo`
again), drives real sockets, and stops tcpdump. About 80 seconds in all; `--only` records just
the named captures. The `loopback/` ones (samples/loopback/) show behaviour the first ten lack;
some set a sysctl inside the namespace, inject a bare RST through a raw socket on 127.0.0.1, use
a capture filter, or start or stop tcpdump themselves.

Several scenarios need a packet dropped after tcpdump has seen it: a tc `clsact` ingress filter on
`lo` runs a classic BPF program (compiled by `tcpdump -ddd`, its return values turned into
TC_ACT_SHOT / TC_ACT_UNSPEC) in direct-action mode. Packet taps run before tc ingress, so the
capture shows the packet, and the kernel then drops it.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analyzer.decode.checksum import inet_checksum  # noqa: E402

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
def tcpdump(path: Path, interface: str = "lo", capture_filter: str = ""):
    """Capture on `interface` into `path` while the block runs (only packets matching
    `capture_filter`, a pcap filter expression, when one is given)."""
    proc = subprocess.Popen(["tcpdump", "-Z", "root", "-i", interface, "-s", str(SNAPLEN), "-U",
                             "--immediate-mode", "-w", str(path)]
                            + ([capture_filter] if capture_filter else []),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(10, proc.kill)    # tcpdump says "listening on" or exits
    watchdog.start()
    while True:                                  # wait until tcpdump is really listening
        line = proc.stderr.readline()            # (it may print other lines first)
        if "listening on" in line:
            break
        if not line:
            watchdog.cancel()
            sys.exit("record_loopback: tcpdump did not start")
    watchdog.cancel()
    try:
        yield
    finally:
        time.sleep(0.3)                          # let delayed ACKs reach the capture
        proc.send_signal(2)                      # SIGINT: tcpdump flushes and exits
        proc.wait(timeout=10)


class Capture:
    """A tcpdump started and stopped by the scenario itself (capture begins late or ends
    early); `stop` is idempotent and the main loop calls it in case the scenario did not."""

    def __init__(self, path: Path, interface: str = "lo", capture_filter: str = "") -> None:
        self.args = (path, interface, capture_filter)
        self.running = None

    def start(self) -> None:
        self.running = tcpdump(*self.args)
        self.running.__enter__()

    def stop(self) -> None:
        if self.running is not None:
            self.running.__exit__(None, None, None)
            self.running = None


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


@contextmanager
def sysctls(values):
    """Set sysctls ({"net.ipv4.x": value}) in this namespace for the block, then restore them."""
    old = {}
    for name, value in values.items():
        old[name] = subprocess.run(["sysctl", "-n", name], check=True, capture_output=True,
                                   text=True).stdout.strip()
        subprocess.run(["sysctl", "-q", "-w", "%s=%s" % (name, value)], check=True)
    try:
        yield
    finally:
        for name, value in old.items():
            subprocess.run(["sysctl", "-q", "-w", "%s=%s" % (name, value)], check=True)


class Sniffer:
    """An AF_PACKET socket on lo that remembers the last TCP segment of each (sport, dport), so
    a scenario can learn the sequence numbers a connection is using."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)
        self.last = {}

    def last_segment(self, sport: int, dport: int):
        """(seq, ack, payload length) of the last segment seen from sport to dport."""
        while True:
            try:
                frame = self.sock.recv(65535)
            except BlockingIOError:
                break
            ip = frame[14:]                      # lo frames carry a 14-byte Ethernet header
            if len(ip) < 40 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            tcp = ip[ihl:]
            sp, dp, seq, ack = struct.unpack("!HHII", tcp[:12])
            paylen = struct.unpack("!H", ip[2:4])[0] - ihl - (tcp[12] >> 4) * 4
            self.last[(sp, dp)] = (seq, ack, paylen)
        return self.last[(sport, dport)]

    def close(self) -> None:
        self.sock.close()


def send_raw_rst(sport: int, dport: int, seq: int) -> None:
    """Inject a bare RST 127.0.0.1:sport -> 127.0.0.1:dport with sequence number `seq`
    (IP_HDRINCL raw socket; loopback only)."""
    src = dst = socket.inet_aton(LO)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, 0x04, 0, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", inet_checksum(src + dst + struct.pack("!BBH", 0, 6, 20) + tcp)) \
        + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, random.randint(0, 0xFFFF), 0x4000, 64, 6, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        raw.sendto(ip + tcp, (LO, 0))
    finally:
        raw.close()


def bound_socket(port: int) -> socket.socket:
    """A client socket bound to 127.0.0.1:port (SO_REUSEADDR: the port may have just been used)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LO, port))
    return s


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



# Captures of behaviour the ones above lack, in samples/loopback/ (samples/README.md, "More real
# kernel traffic"); several of them show verdicts the analyzer still gets wrong.

def final_ack_lost(port=8090):
    """The client closes first; the server closes 0.1 s later; the client's ACKs of the server's
    FIN are dropped for 0.5 s: the server, still in LAST_ACK, retransmits its FIN (three times)
    and the client, in TIME_WAIT, acknowledges each again."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    cli.close()
    time.sleep(0.1)
    recv_until_eof(conn)
    with drop_on_lo_ingress("tcp dst port %d and tcp[tcpflags] == tcp-ack" % port):
        conn.close()
        time.sleep(0.5)
    time.sleep(0.6)
    srv.close()


def tcp_fast_open(port=8091):
    """net.ipv4.tcp_fastopen=3. The first connection asks for a cookie (request in the third
    segment); the second sends its request inside the SYN and the SYN-ACK acknowledges it."""
    with sysctls({"net.ipv4.tcp_fastopen": 3}):
        srv = listener(port)
        srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
        for _ in range(2):
            cli = socket.socket()
            cli.sendto(REQUEST, socket.MSG_FASTOPEN, (LO, port))
            conn, _ = srv.accept()
            recv_exactly(conn, len(REQUEST))
            conn.sendall(RESPONSE)
            recv_exactly(cli, len(RESPONSE))
            conn.close()
            recv_until_eof(cli)
            cli.close()
            time.sleep(0.1)
        srv.close()


def rst_not_exact(port=8092):
    """A RST inside the server's window but 5000 bytes past its RCV.NXT is injected: Linux
    answers with a challenge ACK (RFC 5961 §3.2) and the connection goes on (a second request and
    response). Then a RST at exactly the client's RCV.NXT is injected toward the client, which
    accepts it; the server's FIN finds no socket and is answered with RST."""
    sniffer = Sniffer()
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    time.sleep(0.05)
    cport = cli.getsockname()[1]
    seq, _, paylen = sniffer.last_segment(cport, port)
    send_raw_rst(cport, port, seq + paylen + 5000)
    time.sleep(0.05)
    request_response(cli, conn)
    time.sleep(0.05)
    _, ack, _ = sniffer.last_segment(cport, port)
    send_raw_rst(port, cport, ack)
    time.sleep(0.1)
    conn.close()
    time.sleep(0.1)
    cli.close()
    srv.close()
    sniffer.close()


def rst_lost(port=8093):
    """The client close()s with 4000 bytes unread: RST. That RST is dropped (after the capture
    saw it), so the server goes on sending; the client's kernel, which has no socket now,
    answers each segment with a bare RST; the third one gets through."""
    srv, cli, conn = connected_pair(port)
    conn.sendall(b"s" * 4000)
    time.sleep(0.02)
    stop = time.monotonic() + 0.3
    with drop_on_lo_ingress("tcp dst port %d and tcp[tcpflags] & tcp-rst != 0" % port):
        cli.close()
        try:
            while time.monotonic() < stop:
                conn.send(b"s" * 4000)
                time.sleep(0.1)
        except OSError:
            pass
    time.sleep(0.6)
    try:
        conn.send(b"s")
    except OSError:
        pass
    conn.close()
    srv.close()


def fin_not_captured(port=8094):
    """Captured with a filter that leaves out the server's FIN (a capture that missed one
    packet). The server closes first; the client ACKs the FIN alone, closes 0.3 s later."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    conn.close()
    time.sleep(0.3)
    recv_until_eof(cli)
    cli.close()
    srv.close()


def keepalive_midstream(capture, port=8095):
    """The capture starts on an idle connection whose client sends keep-alives (TCP_KEEPIDLE 1,
    TCP_KEEPINTVL 1): its first packet is a probe (seq = SND.NXT - 1), then the server's ACK.
    Then one more request and response, and the client closes."""
    opts = {(socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE): 1,
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL): 1}
    srv, cli, conn = connected_pair(port, opts)
    request_response(cli, conn)
    time.sleep(1.3)
    capture.start()
    time.sleep(1.5)
    request_response(cli, conn)
    cli.close()
    time.sleep(0.05)
    recv_until_eof(conn)
    conn.close()
    srv.close()


def close_wait_streaming(capture, port=8096):
    """The client sends its request and shutdown(SHUT_WR); the server, in CLOSE_WAIT, sends
    1000 bytes every 100 ms; the capture stops after 3 s, the server still sending."""
    capture.start()
    srv, cli, conn = connected_pair(port)
    cli.sendall(REQUEST)
    cli.shutdown(socket.SHUT_WR)
    recv_until_eof(conn)
    stopper = threading.Timer(3.0, capture.stop)
    stopper.start()
    reader = threading.Thread(target=recv_until_eof, args=(cli,))
    reader.start()
    for _ in range(35):
        conn.sendall(b"k" * 1000)
        time.sleep(0.1)
    stopper.join()
    conn.close()
    reader.join()
    cli.close()
    srv.close()


def half_open_recovery(port=8097, cport=45300):
    """The client (bound to port 45300) aborts with SO_LINGER 0 and its RST is lost, so the
    server keeps an ESTABLISHED connection. 0.2 s later the client connects again from 45300:
    the server answers the SYN with a challenge ACK of the old connection (RFC 5961 §4), the
    client in SYN-SENT answers it with RST seq=SEG.ACK, which resets the stale connection, and
    its SYN retransmission opens the new one."""
    srv = listener(port)
    cli = bound_socket(cport)
    cli.connect((LO, port))
    old, _ = srv.accept()
    request_response(cli, old)
    with drop_on_lo_ingress("tcp dst port %d and tcp[tcpflags] & tcp-rst != 0" % port):
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        time.sleep(0.05)
    time.sleep(0.2)
    cli = bound_socket(cport)
    cli.connect((LO, port))
    conn, _ = srv.accept()
    request_response(cli, conn)
    cli.close()
    time.sleep(0.05)
    recv_until_eof(conn)
    conn.close()
    old.close()
    srv.close()


def simultaneous_open(ports=(45310, 45311)):
    """Two sockets bound to 127.0.0.1:45310 and :45311 connect() to each other. Their first
    SYNs are dropped (after the capture saw them), so the retransmissions cross: each side gets
    the other's SYN in SYN-SENT (RFC 9293 Figure 7). Then one exchange and a close."""
    a, b = bound_socket(ports[0]), bound_socket(ports[1])
    with drop_on_lo_ingress("tcp[tcpflags] & tcp-syn != 0 and port %d" % ports[0]):
        ta = threading.Thread(target=a.connect, args=((LO, ports[1]),))
        tb = threading.Thread(target=b.connect, args=((LO, ports[0]),))
        ta.start()
        time.sleep(0.001)
        tb.start()
        time.sleep(0.5)
    ta.join()
    tb.join()
    a.sendall(b"hello")
    recv_exactly(b, 5)
    b.sendall(b"world")
    recv_exactly(a, 5)
    a.close()
    time.sleep(0.1)
    recv_until_eof(b)
    b.close()


def fin_wait_2_timeout(port=8098):
    """net.ipv4.tcp_fin_timeout=2. Three clients close(); their server sockets read EOF but do
    not close. The first server socket closes after 1 s (its client is still in FIN_WAIT_2:
    ACK, TIME_WAIT); the second after 4 s, when its client's orphaned FIN_WAIT_2 has expired: the
    FIN meets no socket and is answered with RST; the third never closes (CLOSE_WAIT at the
    end, marked by a UDP datagram 0.5 s later)."""
    with sysctls({"net.ipv4.tcp_fin_timeout": 2}):
        srv = listener(port)
        pairs = []
        for _ in range(3):
            cli = socket.socket()
            cli.connect((LO, port))
            conn, _ = srv.accept()
            request_response(cli, conn)
            pairs.append((cli, conn))
        for cli, _ in pairs:
            cli.close()
        time.sleep(1.0)
        pairs[0][1].close()
        time.sleep(3.0)
        pairs[1][1].close()
        time.sleep(0.5)
        marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        marker.bind((LO, 9999))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"end of capture", (LO, 9999))
        sender.close()
        marker.close()
        return [pairs[2][1], srv]


def time_wait_reuse(port=8099):
    """net.ipv4.ip_local_port_range is the single port 46000 and tcp_tw_reuse 1: the client
    closes first (TIME_WAIT) and 1.2 s later connect() reuses its own TIME_WAIT 4-tuple."""
    with sysctls({"net.ipv4.ip_local_port_range": "46000 46000", "net.ipv4.tcp_tw_reuse": 1}):
        srv = listener(port)
        for _ in range(2):
            cli = socket.socket()
            cli.connect((LO, port))
            conn, _ = srv.accept()
            request_response(cli, conn)
            cli.close()
            time.sleep(0.05)
            recv_until_eof(conn)
            conn.close()
            time.sleep(1.2)
        srv.close()


def syn_ack_lost(port=8100):
    """The server's SYN-ACKs are dropped for 2.5 s: the client retransmits its SYN, the server
    retransmits its SYN-ACK (on its own timer and in answer to each SYN); then the handshake
    completes and a request/response and a client close follow."""
    srv = listener(port)
    with drop_on_lo_ingress("tcp src port %d and tcp[tcpflags] & tcp-syn != 0" % port):
        cli = socket.socket()
        cli.setblocking(False)
        try:
            cli.connect((LO, port))
        except BlockingIOError:
            pass
        time.sleep(2.5)
    select.select([], [cli], [], 5)
    cli.setblocking(True)
    conn, _ = srv.accept()
    request_response(cli, conn)
    cli.close()
    time.sleep(0.05)
    recv_until_eof(conn)
    conn.close()
    srv.close()


# Second round (samples/README.md, "More real kernel traffic"): accept-queue overflow, 4-tuple
# reuse after TIME_WAIT expired, data sent to a socket its application closed, a 1-byte segment
# and a data-carrying FIN missing from the capture, a capture starting mid-close, a peer
# that stops answering.

def end_marker() -> None:
    """One UDP datagram 127.0.0.1 -> 127.0.0.1:9999: the capture's last frame, so that the end
    of the capture lies after the last TCP packet."""
    marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    marker.bind((LO, 9999))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"end of capture", (LO, 9999))
    sender.close()
    marker.close()


def accept_queue_overflow(port=8101, cport=45320):
    """listen(2) and nobody calls accept(). The client bound to 45320 connects first, but its
    ACK is dropped (after the capture saw it), so the server keeps its request in SYN_RECEIVED;
    three more clients then fill the accept queue (3 > backlog 2). The first client sends its
    request 0.5 s later; the server's SYN-ACK retransmissions are answered, but each ACK and each
    data segment meets the full accept queue and is dropped (ListenOverflows, the default
    tcp_abort_on_overflow=0). The capture stops at 5 s, the client still retransmitting."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((LO, port))
    srv.listen(2)
    cli = bound_socket(cport)
    queued = []
    with drop_on_lo_ingress("tcp src port %d and tcp[tcpflags] == tcp-ack" % cport):
        cli.connect((LO, port))
        for _ in range(3):
            q = socket.socket()
            q.connect((LO, port))
            queued.append(q)
        time.sleep(0.2)
    time.sleep(0.3)
    cli.sendall(REQUEST)
    time.sleep(4.5)
    for s in [cli] + queued:                      # aborted (RST) after the capture stops, so
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return [cli] + queued + [srv]                 # no retransmission outlives the scenario


def port_reuse_after_expiry(port=8102, cport=45330, chat_port=8103):
    """A background connection exchanges 10 bytes every 0.5 s. Meanwhile a client bound to
    45330 talks to :8102 three times; each time the server closes first (server TIME_WAIT) and
    the client reconnects from the same port 0.5 s, then 3 s later (Linux accepts a SYN with a
    higher ISN on a TIME_WAIT socket). Read with --msl 1 (2 s TIME_WAIT): the first reuse cuts a
    TIME_WAIT short, the second comes after it expired."""
    bsrv, bcli, bconn = connected_pair(chat_port)
    stop = threading.Event()

    def chatter():
        while not stop.is_set():
            bcli.sendall(b"0123456789")
            recv_exactly(bconn, 10)
            stop.wait(0.5)
    background = threading.Thread(target=chatter)
    background.start()
    srv = listener(port)
    for gap in (0.5, 3.0, 0.6):
        cli = bound_socket(cport)
        cli.connect((LO, port))
        conn, _ = srv.accept()
        request_response(cli, conn)
        conn.close()
        time.sleep(0.02)
        recv_until_eof(cli)
        cli.close()
        time.sleep(gap)
    stop.set()
    background.join()
    srv.close()
    bcli.close()
    time.sleep(0.05)
    recv_until_eof(bconn)
    bconn.close()
    bsrv.close()


def data_fin_to_closed_socket(port=8104):
    """The server sends a banner with its FIN on it (TCP_CORK, close()) and is gone; the client
    reads it and answers "QUIT" with its own FIN on the data segment. The data reaches a socket
    whose application has closed: Linux (TCPAbortOnData, RFC 1122 §4.2.2.13) answers with RST,
    and the 6 bytes are lost."""
    srv, cli, conn = connected_pair(port)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    conn.send(b"220 banner ready\r\n")
    conn.close()
    time.sleep(0.05)
    recv_until_eof(cli)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    cli.send(b"QUIT\r\n")
    cli.close()
    time.sleep(0.1)
    srv.close()


def one_byte_not_captured(port=8105):
    """Interactive: 1-byte keystrokes, each echoed; the capture filter leaves out the client's
    "Z" keystroke (one 1-byte data segment the capture missed). The session goes on; the server
    closes first."""
    srv, cli, conn = connected_pair(port)
    for ch in b"abcZdef\n":
        cli.send(bytes([ch]))
        conn.send(conn.recv(10))
        cli.recv(10)
        time.sleep(0.05)
    conn.send(b"bye\r\n")
    conn.close()
    recv_until_eof(cli)
    time.sleep(0.05)
    cli.close()
    srv.close()


def data_fin_not_captured(port=8106):
    """The client's request carries its FIN (TCP_CORK, shutdown(SHUT_WR)); the capture filter
    leaves that segment out. The server answers with its response and FIN on one segment, the
    client ACKs; a UDP datagram 2 s later ends the capture."""
    srv, cli, conn = connected_pair(port)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    cli.send(REQUEST)
    cli.shutdown(socket.SHUT_WR)
    recv_until_eof(conn)
    conn.send(RESPONSE, socket.MSG_MORE)
    conn.close()
    recv_until_eof(cli)
    cli.close()
    time.sleep(2)
    end_marker()
    srv.close()


def capture_starts_mid_close(capture, port=8107):
    """The client closes (FIN, ACK); the capture starts 0.3 s later; the server closes 0.5 s
    after that (FIN, the client's ACK); a UDP datagram 3 s later ends the capture."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    cli.close()
    time.sleep(0.3)
    capture.start()
    time.sleep(0.5)
    recv_until_eof(conn)
    conn.close()
    time.sleep(3)
    end_marker()
    srv.close()


def keepalive_race(port=8108):
    """HTTP keep-alive race: after one request/response the server idle-closes (FIN); the
    client, not having read the FIN yet, sends its next request; the server's socket, closed by
    its application, answers the data with RST."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    time.sleep(0.1)
    conn.close()
    time.sleep(0.05)
    cli.send(REQUEST)
    time.sleep(0.1)
    try:
        cli.recv(100)
    except ConnectionResetError:
        pass
    cli.close()
    srv.close()



def peer_blackholed(port=8109):
    """After one request/response everything sent to the server is dropped (the server's host
    vanished, or a firewall or an expired NAT entry now drops the flow): the client's next
    request is retransmitted on its doubling RTO, never acknowledged; a UDP datagram at 6 s
    ends the capture, the client still trying."""
    srv, cli, conn = connected_pair(port)
    request_response(cli, conn)
    with drop_on_lo_ingress("tcp dst port %d" % port):
        cli.send(REQUEST)
        time.sleep(6)
        end_marker()
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return [cli, conn, srv]                       # closed (RST) after the capture stops

# --------------------------------------------------------------------------- a scripted peer

class RawPeer:
    """One end of a connection played by this script: it sends the segments a scenario asks for
    through a raw socket (127.0.0.1:`port`) and reads the kernel's through an AF_PACKET socket.
    Use it inside `drop_on_lo_ingress("tcp dst port <port>")`: the capture sees what the kernel
    sends to the peer, and the kernel, which has no socket on that port, never answers it."""

    FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20}

    def __init__(self, port: int) -> None:
        self.port = port
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        # ETH_P_ALL: only such taps see packets leaving (before lo's ingress drops them)
        self.tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.tap.bind(("lo", 0))

    def send(self, dport: int, flags: str, seq: int, ack: int = 0, payload: bytes = b"",
             win: int = 65535) -> None:
        bits = sum(self.FLAGS[f] for f in flags)
        src = dst = socket.inet_aton(LO)
        tcp = struct.pack("!HHIIBBHHH", self.port, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                          5 << 4, bits, win, 0, 0) + payload
        csum = inet_checksum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randint(0, 0xFFFF),
                         0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
        self.raw.sendto(ip + tcp, (LO, 0))

    def expect(self, sport: int, flags: str, timeout: float = 2.0):
        """The next segment the kernel sends from `sport` to this peer that has all of `flags`:
        (seq, ack, payload length)."""
        want = sum(self.FLAGS[f] for f in flags)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.tap], [], [], max(end - time.monotonic(), 0))
            if not ready:
                break
            frame, addr = self.tap.recvfrom(65535)
            if addr[2] != socket.PACKET_OUTGOING:
                continue                          # each lo packet is seen leaving and arriving
            ip = frame[14:]                       # lo frames: a 14-byte Ethernet header
            if len(ip) < 40 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            sp, dp, seq, ack, off, bits = struct.unpack("!HHIIBB", ip[ihl:ihl + 14])
            if sp == sport and dp == self.port and bits & want == want:
                return seq, ack, struct.unpack("!H", ip[2:4])[0] - ihl - (off >> 4) * 4
        raise RuntimeError("no [%s] from port %d within %.1f s" % (flags, sport, timeout))

    def close(self) -> None:
        self.raw.close()
        self.tap.close()


def handshake_ack_unacceptable(port=8110, peers=(45400, 45401)):
    """A scripted client (RawPeer) answers the listener's SYN-ACK with an ACK whose ack is
    ISN+5: Linux (tcp_check_req) answers <SEQ=SEG.ACK><CTL=RST> and stays in SYN-RECEIVED
    (RFC 9293 §3.10.7.4). Then an ACK whose seq lies far outside the window: Linux answers with
    an ACK and drops it. The first client then gives up with a RST (the handshake is reset); the
    second sends the right ACK, gets 100 bytes and a FIN, and closes (the handshake completes
    late)."""
    srv = listener(port)
    for i, cport in enumerate(peers):
        peer = RawPeer(cport)
        with drop_on_lo_ingress("tcp dst port %d" % cport):
            isn = 1_000_000 * (i + 1)
            peer.send(port, "S", isn)
            syn_ack, _, _ = peer.expect(port, "S.")
            peer.send(port, ".", isn + 1, syn_ack + 5)
            peer.expect(port, "R")
            time.sleep(0.05)
            peer.send(port, ".", isn + 1 + 3_000_000, syn_ack + 1)
            peer.expect(port, ".")
            time.sleep(0.05)
            if i == 0:
                peer.send(port, "R", isn + 1)
                time.sleep(0.05)
            else:
                peer.send(port, ".", isn + 1, syn_ack + 1)
                conn, _ = srv.accept()
                conn.sendall(b"r" * 100)
                conn.close()
                peer.expect(port, "F")
                peer.send(port, "F.", isn + 1, syn_ack + 1 + 100 + 1)
                peer.expect(port, ".")
        peer.close()
    srv.close()


def probes_to_closed_ports(ports=(8111, 8112, 8113, 8114), cport=45410):
    """FIN, NULL and Xmas (FIN+PSH+URG) scan probes and a bare ACK, each to a port nobody
    listens on, from a scripted peer: the kernel answers each from CLOSED (RFC 9293 §3.10.7.1),
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> for the first three, <SEQ=SEG.ACK><CTL=RST> for
    the ACK. No connection exists at any time."""
    peer = RawPeer(cport)
    with drop_on_lo_ingress("tcp dst port %d" % cport):
        for dport, flags in zip(ports, ("F", "", "FPU", ".")):
            peer.send(dport, flags, 7_000_000 + dport, 5_000_000 if flags == "." else 0)
            peer.expect(dport, "R")
            time.sleep(0.02)
    peer.close()


def handshake_after_ignored_segment(port=8115):
    """A scripted server (RawPeer on port 8115) answers three connect()s. Before each SYN-ACK
    it sends a segment the client ignores: a RST without ACK (a SYN-SENT endpoint drops it), a
    FIN+ACK (no SYN: dropped), and a RST+ACK that would be acceptable but is dropped on its way
    in (the capture saw a RST the client never got: injected past the capture point). Each
    time the client then acknowledges the SYN-ACK, sends a request, reads the response and
    closes: all three connections open and close normally."""
    peer = RawPeer(port)
    with drop_on_lo_ingress("tcp dst port %d or (tcp src port %d and tcp[tcpflags] & tcp-rst "
                            "!= 0 and tcp[tcpflags] & tcp-ack != 0)" % (port, port)):
        for flags in ("R", "F.", "R."):
            cli = socket.socket()
            cli.setblocking(False)
            cli.connect_ex((LO, port))
            cport = cli.getsockname()[1]
            isn, _, _ = peer.expect(cport, "S")
            peer.send(cport, flags, 0, isn + 1 if "." in flags else 0)
            time.sleep(0.02)
            server_isn = 3_000_000_000
            peer.send(cport, "S.", server_isn, isn + 1)
            peer.expect(cport, ".")
            cli.setblocking(True)
            cli.sendall(REQUEST)
            peer.expect(cport, "P")
            peer.send(cport, "P.", server_isn + 1, isn + 1 + len(REQUEST), RESPONSE[:200])
            recv_exactly(cli, 200)
            cli.close()
            peer.expect(cport, "F")
            peer.send(cport, "F.", server_isn + 201, isn + 1 + len(REQUEST) + 1)
            peer.expect(cport, ".")
            time.sleep(0.02)
    peer.close()


def fin_never_acknowledged(port=8116, cport=45430):
    """A scripted client (RawPeer) connects, sends a request and its FIN; the server reads the
    request and EOF, answers and closes. The client never acknowledges the server's FIN: the
    server sends it again on its doubling RTO (0.2, 0.4, 0.8, 1.6 s ...). A UDP datagram at 5 s
    ends the capture, the server still trying."""
    srv = listener(port)
    peer = RawPeer(cport)
    with drop_on_lo_ingress("tcp dst port %d" % cport):
        isn = 9_000_000
        peer.send(port, "S", isn)
        syn_ack, _, _ = peer.expect(port, "S.")
        peer.send(port, ".", isn + 1, syn_ack + 1)
        conn, _ = srv.accept()
        peer.send(port, "FP.", isn + 1, syn_ack + 1, REQUEST)
        recv_until_eof(conn)
        conn.sendall(RESPONSE[:100])
        conn.close()
        peer.expect(port, "F")
        peer.send(port, ".", isn + 2 + len(REQUEST), syn_ack + 1 + 100)   # the data, not the FIN
        time.sleep(5)
        end_marker()
    peer.close()
    srv.close()


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
    # samples/loopback/: options are "late" (the scenario starts and stops the capture itself)
    # and "filter" (a capture filter).
    ("loopback/final_ack_lost.pcap", final_ack_lost, "lo"),
    ("loopback/tcp_fast_open.pcap", tcp_fast_open, "lo"),
    ("loopback/rst_not_exact.pcap", rst_not_exact, "lo"),
    ("loopback/rst_lost.pcap", rst_lost, "lo"),
    ("loopback/fin_not_captured.pcap", fin_not_captured, "lo",
     {"filter": "not (tcp src port 8094 and tcp[tcpflags] & tcp-fin != 0)"}),
    ("loopback/keepalive_midstream.pcap", keepalive_midstream, "lo", {"late": True}),
    ("loopback/close_wait_streaming.pcap", close_wait_streaming, "lo", {"late": True}),
    ("loopback/half_open_recovery.pcap", half_open_recovery, "lo"),
    ("loopback/simultaneous_open.pcap", simultaneous_open, "lo"),
    ("loopback/fin_wait_2_timeout.pcap", fin_wait_2_timeout, "lo"),
    ("loopback/time_wait_reuse.pcap", time_wait_reuse, "lo"),
    ("loopback/syn_ack_lost.pcap", syn_ack_lost, "lo"),
    ("loopback/accept_queue_overflow.pcap", accept_queue_overflow, "lo"),
    ("loopback/port_reuse_after_expiry.pcap", port_reuse_after_expiry, "lo"),
    ("loopback/data_fin_to_closed_socket.pcap", data_fin_to_closed_socket, "lo"),
    ("loopback/one_byte_not_captured.pcap", one_byte_not_captured, "lo",
     {"filter": "not (tcp dst port 8105 and ip[2:2] - ((ip[0] & 0xf) << 2) - "
                "((tcp[12] & 0xf0) >> 2) == 1 and tcp[((tcp[12] & 0xf0) >> 2):1] == 0x5a)"}),
    ("loopback/data_fin_not_captured.pcap", data_fin_not_captured, "lo",
     {"filter": "not (tcp dst port 8106 and tcp[tcpflags] & tcp-fin != 0)"}),
    ("loopback/capture_starts_mid_close.pcap", capture_starts_mid_close, "lo", {"late": True}),
    ("loopback/keepalive_race.pcap", keepalive_race, "lo"),
    ("loopback/peer_blackholed.pcap", peer_blackholed, "lo"),
    ("loopback/handshake_ack_unacceptable.pcap", handshake_ack_unacceptable, "lo"),
    ("loopback/probes_to_closed_ports.pcap", probes_to_closed_ports, "lo"),
    ("loopback/handshake_after_ignored_segment.pcap", handshake_after_ignored_segment, "lo"),
    ("loopback/fin_never_acknowledged.pcap", fin_never_acknowledged, "lo"),
]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--in-namespace" not in argv:
        enter_namespace(argv)
    argv.remove("--in-namespace")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="record only these captures (file names as in SCENARIOS, e.g. "
                             "loopback/final_ack_lost.pcap); the others are left as they are")
    args = parser.parse_args(argv)
    check_namespace()
    known = [entry[0] for entry in SCENARIOS]
    for name in args.only or ():
        if name not in known:
            sys.exit("record_loopback: no scenario %s (known: %s)" % (name, ", ".join(known)))
    print("kernel %s" % os.uname().release)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for entry in SCENARIOS:
            name, scenario, interface = entry[:3]
            options = entry[3] if len(entry) > 3 else {}
            if args.only and name not in args.only:
                continue
            path = Path(tmp) / name.replace("/", "_")
            capture = Capture(path, interface, options.get("filter", ""))
            if options.get("late"):
                leftovers = scenario(capture)
            else:
                capture.start()
                leftovers = scenario()
            capture.stop()
            for s in leftovers or ():
                s.close()
            dest = args.out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            summary = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True,
                                     text=True).stdout
            print("== %s (%d packets)\n%s" % (name, len(summary.splitlines()), summary))
    print("recorded in %.1f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
