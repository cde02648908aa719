"""ZeekView against Zeek itself: every connection of the shared corpus with a Zeek conn_state or
history (GROUND_TRUTH.tsv rows from Zeek's own btest baselines, REPORT.md §3.1).

A small driver replays each capture (analyzer.capture.files -> analyzer.decode.frames -> analyzer.tcp.flows)
and feeds every segment to one ZeekView per connection. Zeek rows are matched to our
connections by 4-tuple, in order for repeated 4-tuples, per baseline file. Checksums are not
validated (our default; several btests run Zeek with -C); whether a payload was captured is
the decoder's `Segment.cut` (the frames go through `FrameDecoder`, fragments reassembled, as
in the pipeline).

Where we deliberately differ, the difference is pinned below with its reason, so that any
change of behaviour, either way, fails:

* `SPLITS`: Zeek logs several connections where we (and tshark) see one. Zeek removes a
  connection on timers: an unanswered SYN after tcp_attempt_delay (5 s); a closed or reset
  connection tcp_close_delay (5 s) after it ended; any connection after tcp_inactivity_timeout;
  and a SYN after either side closed or reset starts a new Zeek connection even when it is a
  retransmission (TCPSessionAdapter::IsReuse). The labels we give the whole connection are
  pinned too. (Connections inside Teredo and GTP-U, the second with its outer IP fragments
  reassembled, are compared one to one like the rest.)
* `LABEL_DIFFERENCES`: one-to-one rows whose labels differ, each with its reason.
"""

from __future__ import annotations

import csv
import ipaddress
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

from analyzer.capture.files import CaptureStats, open_capture, read_frames
from analyzer.decode.checksum import checksums_ok
from analyzer.decode.frames import FrameDecoder, QuotedTCP
from analyzer.tcp.flows import FlowTable
from analyzer.decode.segment import addr_str
from analyzer.tcp.zeek import ZeekView

def _ep(addr: str, port) -> str:
    """An endpoint as "address:port", the address in its canonical form."""
    return "%s:%s" % (ipaddress.ip_address(addr), port)


def _tuple(a: str, b: str) -> str:
    """A 4-tuple as its two endpoints, lower address first."""
    def key(ep):
        """Sort key of an "address:port" endpoint."""
        addr, port = ep.rsplit(":", 1)
        ip = ipaddress.ip_address(addr)
        return ip.version, ip, int(port)
    return " ".join(sorted((a, b), key=key))


_SSH = "ssh__ssh.client-side-half-duplex.pcap.zeek-conn.log"
_MODBUS = "modbus__modbus-and-non-modbus-p502.pcap.zeek-conn.log"
_TEREDO = "tunnels__Teredo.pcap.zeek-conn.log"
_GTP = "tunnels__gtp__gtp2_different_udp_port.pcap.zeek-conn.log"
_TIMEOUT = "tcp__retransmit-timeout.pcapng.zeek-conn.log"
_POP3 = "pop3__pop3.pcap.zeek-conn.log"
_GLOBUS = "globus-url-copy.pcap.zeek-conn.log"

#: (baseline file, 4-tuple) -> (Zeek rows, our connections, our labels, why).
SPLITS: Dict[Tuple[str, str], tuple] = {
    (_TIMEOUT, _tuple("10.0.0.1:51889", "192.168.0.1:80")): (
        2, 1, ["OTH DaT"], "the data segment is retransmitted 5 minutes later: with all timers "
        "expiring, the inactivity timeout has removed Zeek's connection (OTH Da) and the "
        "retransmission starts a new one (OTH D); the conn-limited variant keeps one "
        "connection and agrees with us (OTH DaT)"),
    (_POP3, _tuple("192.168.0.4:26242", "212.227.15.188:110")): (
        3, 1, ["REJ Sr"], "the SYN is sent three times with one ISN, each answered by RST: a "
        "retransmission to us and tshark, but after the RST (did_close) Zeek's IsReuse makes "
        "every SYN a new connection (REJ Sr x3)"),
    (_POP3, _tuple("192.168.0.4:26245", "212.227.15.171:110")): (
        3, 1, ["REJ Sr"], "as for port 26242: three refused SYNs with one ISN"),
    (_SSH, _tuple("131.159.21.1:22", "192.168.1.79:51880")): (
        2, 1, ["SH SADF"], "only the client's packets were captured: Zeek's attempt timer removes "
        "the never-answered connection 5 s after its SYN (S0 SAD); the client's later packets "
        "start a SYN-less one (SH DAF)"),
    (_SSH, _tuple("192.168.2.1:57189", "192.168.2.158:22")): (
        2, 1, ["SH SADF"], "the attempt timer, as for port 51880"),
    (_SSH, _tuple("192.168.2.1:56594", "192.168.2.158:22")): (
        2, 1, ["SH SADF"], "the attempt timer, as for port 51880"),
    (_SSH, _tuple("192.168.2.1:56875", "192.168.2.158:22")): (
        2, 1, ["SH SADF"], "the attempt timer, as for port 51880 (the second part starts "
        "with a pure ACK: SH ADF)"),
    (_SSH, _tuple("128.2.10.238:22", "192.168.1.32:41164")): (
        2, 1, ["SH SADF"], "the attempt timer, as for port 51880"),
    (_MODBUS, _tuple("192.168.10.111:502", "198.74.56.135:60293")): (
        2, 1, ["REJ ShRDr"], "the originator resets the connection (RSTO ShR); 16 s later, long "
        "after Zeek removed it (5 s after the RST), data and a RST start a second Zeek "
        "connection (RSTRH Dr); no SYN starts a new one for us or tshark"),
    (_TEREDO, _tuple("192.168.2.16:1576", "75.126.130.163:80")): (
        3, 1, ["REJ ^fARr"], "Zeek removes the connection 5 s after the server's FIN (SHR ^fA); "
        "the client's RST 10 s later (OTH R) and the server's RST 16 s after that (RSTRH ^r) "
        "each start a new one"),
    (_TEREDO, _tuple("192.168.2.16:1577", "75.126.203.78:80")): (
        3, 1, ["SF ^fAFar"], "as for port 1576: the client's FIN 7 s after the server's (SH Fa) "
        "and the server's RST 16 s later (RSTRH ^r) come after Zeek removed the connection"),
    (_TEREDO, _tuple("192.168.2.16:1578", "75.126.203.78:80")): (
        2, 1, ["RSTR ShADadRr"], "the server's RST 18 s after the client's (RSTO ShADadR) starts "
        "a new Zeek connection (RSTRH ^r)"),
}

#: (baseline file, 4-tuple) -> (Zeek's labels, ours, why).
LABEL_DIFFERENCES: Dict[Tuple[str, str], tuple] = {
    ("tcp__syn-bad.pcap.zeek-conn.log", "-"): (
        "OTH C", "S0 S", "the SYN's checksum is wrong: Zeek drops the packet after counting it "
        "(C); we do not validate checksums by default (with analyzer.decode.checksum feeding "
        "bad_checksum we give OTH C, test_bad_checksum_gives_zeeks_c)"),
    (_GLOBUS, _tuple("192.168.57.101:55968", "192.168.57.103:35391")): (
        "S1 ShADad", "SF ShADadfF", "the btest (scripts.base.protocols.ftp.gridftp) marks this "
        "GridFTP data channel and calls skip_further_processing: Zeek ignores its later packets, "
        "both FINs included"),
    (_GTP, _tuple("10.131.17.170:51803", "173.199.115.168:80")): (
        "S3 ShADadXf", "S3 ShADadf", "inside GTP-U, its outer fragments reassembled: the TCP "
        "history agrees; Zeek's 'X' is not a TCP event but HIST_ANALYZER_LIMIT_REACHED (an "
        "application analyzer hit its limit, Conn.cc)"),
    ("pppoe-over-qinq.pcap.zeek-conn.log", _tuple("1.1.1.1:20394", "2.2.2.2:443")): (
        "SF ShADdtaTTtFf", "SF ShADdtaTTFft", "six ACKs carry 6 bytes of Ethernet padding inside "
        "their IPv4 total length but outside the PPPoE LENGTH: Zeek reads them as data, so the "
        "next segments look resent to it (its last 't'); we bound the IP packet by the PPPoE "
        "payload, as Wireshark does"),
}

#: The totals, so that a change in either direction is noticed.
ZEEK_ROWS, COMPARED, AGREEING = 173, 145, 141


@lru_cache(maxsize=None)
def replay(path: str, checksums: bool = False) -> List[Tuple[str, str, str]]:
    """(4-tuple, our orig, "conn_state history") per connection of a capture, in stream order."""
    stats = CaptureStats()
    table = FlowTable(lambda conn, now: None, 60_000_000_000)
    views: Dict[int, tuple] = {}
    order = []
    decoder = FrameDecoder()
    for num, (ts, linktype, buf) in enumerate(read_frames([open_capture(path, stats)], stats), 1):
        seg = decoder.decode(linktype, buf, ts, num)
        if isinstance(seg, QuotedTCP):
            table.reserve(seg)
            continue
        if isinstance(seg, str):
            continue
        seg.ts, seg.num = ts, num
        conn = table.feed(seg)
        from_orig = conn.side_of(seg) == 0
        if conn.id not in views:
            views[conn.id] = (ZeekView(), from_orig, conn)
            order.append(conn.id)
        views[conn.id][0].segment(
            from_orig, seg, payload_captured=not seg.cut,   # (a reassembled datagram: whole)
            bad_checksum=checksums and checksums_ok(linktype, buf) is False)
    out = []
    for cid in order:
        view, first, conn = views[cid]
        state, history = view.finish(first)
        orig = _ep(addr_str(conn.addr(0)), conn.port(0))
        out.append((_tuple(orig, _ep(addr_str(conn.addr(1)), conn.port(1))), orig,
                    "%s %s" % (state, history)))
    return out


def compare(corpus: Path):
    """Match every Zeek row with labels to our connections: (rows, one-to-one, agreeing,
    splits {key: (zeek rows, ours, our labels)}, differences {key: (zeek, ours)})."""
    groups: Dict[Tuple[str, str, str], list] = defaultdict(list)
    with open(corpus / "GROUND_TRUTH.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["truth_source"].startswith("zeek") and (row["conn_state"] or row["history"]):
                key = "-" if not row["orig_h"] else _tuple(_ep(row["orig_h"], row["orig_p"]),
                                                           _ep(row["resp_h"], row["resp_p"]))
                groups[(row["local_path"], row["source_file"], key)].append(row)
    rows = one_to_one = agreeing = 0
    splits, differences = {}, {}
    for (path, source, key), zrows in sorted(groups.items()):
        conns = replay(str(corpus / path))
        ours = conns if key == "-" else [c for c in conns if c[0] == key]
        rows += len(zrows)
        if len(ours) != len(zrows):
            splits[(source, key)] = (len(zrows), len(ours), [c[2] for c in ours])
            continue
        for z, (_, orig, labels) in zip(zrows, ours):
            one_to_one += 1
            state, history = labels.split(" ")
            if key != "-":
                assert orig == _ep(z["orig_h"], z["orig_p"]), (path, orig)
            if (not z["conn_state"] or z["conn_state"] == state) and (
                    not z["history"] or z["history"] == history):
                agreeing += 1
            else:
                differences[(source, key)] = ("%s %s" % (z["conn_state"], z["history"]), labels)
    return rows, one_to_one, agreeing, splits, differences


def test_zeek_labels_agree_except_where_documented(corpus):
    rows, one_to_one, agreeing, splits, differences = compare(corpus)
    lines = ["Zeek conformance: %d Zeek rows, %d one-to-one with our connections, %d agree"
             % (rows, one_to_one, agreeing)]
    for key, (zn, on, labels, why) in SPLITS.items():
        lines.append("  split %s %s: Zeek %d rows, ours %d %s: %s" % (key + (zn, on, labels, why)))
    for key, (zl, ol, why) in LABEL_DIFFERENCES.items():
        lines.append("  differ %s %s: Zeek %s, ours %s: %s" % (key + (zl, ol, why)))
    print("\n".join(lines))
    assert splits == {k: v[:3] for k, v in SPLITS.items()}
    assert differences == {k: v[:2] for k, v in LABEL_DIFFERENCES.items()}
    assert (rows, one_to_one, agreeing) == (ZEEK_ROWS, COMPARED, AGREEING)


def test_bad_checksum_gives_zeeks_c(corpus):
    # With checksums validated (what Zeek does without -C), the bad SYN is Zeek's OTH C.
    assert replay(str(corpus / "zeek/tcp__syn-bad.pcap"), True)[0][2] == "OTH C"

