"""Issue 12, items 3, 4, 5, 7, 8 and 9: hostile captures and settings. Every capture time
prints in every format; negative times are data; every name is printed escaped; settings out
of range are usage errors; long runs of empty records are warned about and back-and-forth
timestamps cost no more than forward ones; files that overlap in time never fail for lack of
descriptors."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.common.nstime import utc_text
from analyzer.testing.synth import Dialog, PcapWriter, frame, write_pcap
from conftest import REPO, run_cli


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")


def _pcapng(path: Path, packets, resol: int = 9, offset: int = 0, ts_units=None) -> None:
    """One-interface little-endian pcapng; `offset` is if_tsoffset (seconds), `ts_units` maps
    a packet time (ns) to the 64-bit timestamp written."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    opts = struct.pack("<HHB3x", 9, 1, resol) + struct.pack("<HHq", 14, 8, offset)
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", 1, 0, 262144) + opts + struct.pack("<HH", 0, 0))]
    for ts, ip, side in packets:
        data = frame(ip, outbound=side == "c")
        units = ts_units(ts) if ts_units else ts
        out.append(block(6, struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF,
                                         len(data), len(data)) + data))
    path.write_bytes(b"".join(out))


def _dialog(**kw) -> Dialog:
    return Dialog(**kw).handshake().data("c", 10).fin("c").ack("s").fin("s").ack("c")


# ---------------------------------------------------------------- item 3: every time prints

def test_utc_text_agrees_with_datetime_where_datetime_reaches():
    import datetime
    import random
    rng = random.Random(3)
    epoch = datetime.datetime(1970, 1, 1)
    for _ in range(20000):
        ns = rng.randrange(-62135596800 * 10**9, 253402300800 * 10**9)
        dt = epoch + datetime.timedelta(microseconds=ns // 1000)
        want = "%04d-%02d-%02d %02d:%02d:%02d.%03d" % (dt.year, dt.month, dt.day, dt.hour,
                                                       dt.minute, dt.second, ns // 10**6 % 1000)
        assert utc_text(ns) == want, ns


def test_utc_text_beyond_datetime():
    assert utc_text(0) == "1970-01-01 00:00:00.000"
    assert utc_text(-1) == "1969-12-31 23:59:59.999"
    assert utc_text(253402300800 * 10**9) == "10000-01-01 00:00:00.000"
    assert utc_text(-62135596801 * 10**9) == "0000-12-31 23:59:59.000"    # 1 BC, ISO year 0
    assert utc_text(-62167219200 * 10**9 - 86400 * 10**9) == "-0001-12-31 00:00:00.000"
    assert utc_text(10**28).startswith("316887387038-")


@pytest.mark.parametrize("fmt", ["text", "json", "zeek"])
@pytest.mark.parametrize("when", ["far_future", "past_time_t", "before_1970", "before_year_1"])
def test_every_capture_time_prints(tmp_path, fmt, when):
    """pcapng times are 64-bit units at any resolution, plus an offset in seconds: they
    reach far beyond the years datetime and time_t know, on both sides of 1970."""
    cap = tmp_path / "x.pcapng"
    d = _dialog()
    if when == "far_future":            # resolution 1 s: 2**63 s is year ~292 billion
        _pcapng(cap, d.packets, resol=0, ts_units=lambda ts: (1 << 63) + ts // 10**9)
    elif when == "past_time_t":         # year 586524 (the corpus's pcapng-example)
        _pcapng(cap, d.packets, resol=6, ts_units=lambda ts: ts // 1000 * 10000)
    elif when == "before_1970":
        _pcapng(cap, d.packets, offset=-2 * 1_700_000_000)
    else:
        _pcapng(cap, d.packets, offset=-(1 << 62))
    r = run_cli(str(cap), "-f", fmt, "--all")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    if fmt == "json":
        doc = json.loads(out)
        assert doc["summary"]["connections"] == 1
    elif fmt == "zeek":
        assert out.count("\ttcp\t") == 1 and "#open\t" in out and "#close\t" in out
    else:
        assert "UTC to" in out and "stream" in out


# ---------------------------------------------------------------- item 4: negative times

@pytest.mark.parametrize("fmt", ["text", "json", "zeek"])
def test_negative_timestamps_are_times(tmp_path, fmt):
    """Before 1970 (an if_tsoffset below the packets' times): a connection that finished is
    queued for its 2*MSL like any other (its time is data, not 'not queued'). The late
    packets after its close made the flow table queue it twice (KeyError)."""
    from analyzer.decode.segment import ACK, FIN
    cap = tmp_path / "x.pcapng"
    first = _dialog(t0=100.0)
    first.send("s", FIN | ACK, seq=first.nxt["s"] - 1, advance=False)   # the FIN again
    first.ack("c")
    second = _dialog(client=("10.0.0.3", 40001), t0=400.0)
    packets = sorted(first.packets + second.packets, key=lambda p: p[0])
    _pcapng(cap, packets, offset=-1000)
    r = run_cli(str(cap), "-f", fmt, "--all")
    assert r.returncode == 0, r.stderr
    if fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["summary"]["connections"] == 2
        assert doc["capture"]["first_ts"] == -900.0
        assert [c["close"] for c in doc["connections"]] == ["four_way", "four_way"]
        assert doc["connections"][0]["packets"] == {"orig": 6, "resp": 4}


# ---------------------------------------------------------------- item 5: names escaped

def _cut_capture(path: Path) -> None:
    write_pcap(path, _dialog().packets)
    data = path.read_bytes()
    path.write_bytes(data[:-5])                 # the last record cut: one warning


@pytest.mark.parametrize("raw,shown", [
    (b"caf\xe9.pcap", "caf\\xe9.pcap"),                       # Latin-1, not UTF-8
    (b"two\nlines.pcap", "two\\nlines.pcap"),
    (b"\x1b[31mred.pcap", "\\x1b[31mred.pcap"),
])
def test_names_are_printed_escaped_everywhere(tmp_path, raw, shown):
    path = os.path.join(os.fsencode(tmp_path), raw)
    _cut_capture(Path(os.fsdecode(path)))
    r = subprocess.run([sys.executable, "-m", "analyzer", os.fsdecode(path), "-f", "json"],
                       capture_output=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.decode("utf-8"))          # strict UTF-8, one document
    assert doc["capture"]["files"] == [os.fsdecode(os.path.join(os.fsencode(tmp_path), b""))
                                       + shown]
    assert any(shown in w for w in doc["capture"]["warnings"])
    lines = r.stderr.decode("utf-8").strip().split("\n")
    assert len(lines) == 1 and shown in lines[0] and "\x1b" not in lines[0], lines
    text = subprocess.run([sys.executable, "-m", "analyzer", os.fsdecode(path)],
                          capture_output=True, env=_env(), timeout=60)
    assert shown in text.stdout.decode("utf-8") and b"\x1b" not in text.stdout


def test_unreadable_names_are_escaped_in_errors(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"no\nsuch\xff")
    r = subprocess.run([sys.executable, "-m", "analyzer", os.fsdecode(path)],
                       capture_output=True, env=_env(), timeout=60)
    assert r.returncode == 3
    lines = r.stderr.decode("utf-8").strip().split("\n")
    assert len(lines) == 1 and "no\\nsuch\\xff" in lines[0], lines


# ---------------------------------------------------------------- item 7: settings in range

@pytest.mark.parametrize("option", ["--msl", "--idle-timeout"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1", "-inf"])
def test_time_settings_out_of_range_are_usage_errors(tmp_path, option, value):
    cap = tmp_path / "x.pcap"
    write_pcap(cap, _dialog().packets)
    r = run_cli(str(cap), option, value)
    assert r.returncode == 2, r.stderr
    assert b"internal error" not in r.stderr and b"Traceback" not in r.stderr


# ---------------------------------------------------------------- item 8: work per input

def test_a_long_run_of_empty_records_is_warned_about(tmp_path):
    """A gzip of a pcap header and zeros: every 16 zero bytes are an empty record."""
    buf = io.BytesIO()
    PcapWriter(buf)
    cap = tmp_path / "zeros.pcap.gz"
    cap.write_bytes(gzip.compress(buf.getvalue() + bytes(16 * 30_000), mtime=0))
    r = run_cli(str(cap), "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["capture"]["packets"] == 30_000
    assert any("30000 empty records in a row (records 1 to 30000" in w
               for w in doc["capture"]["warnings"]), doc["capture"]


def test_idle_timeout_sweeps_do_not_grow_with_back_and_forth_times(monkeypatch):
    """Times that jump back and forth by more than a minute made every packet sweep the
    whole table for idle connections: quadratic. The scans are now bounded by the packets."""
    from analyzer.tcp import flows
    from analyzer.decode.frames import decode_frame
    scans = []
    real = flows.FlowTable.connections

    def counting(self):
        out = real(self)
        scans.append(len(out))
        return out

    monkeypatch.setattr(flows.FlowTable, "connections", counting)
    table = flows.FlowTable(lambda conn, now: None, 30 * 10**9, 3600 * 10**9)
    n = 0
    for i in range(2000):                    # 2000 connections, each opened with a SYN
        d = Dialog(client=("10.2.%d.%d" % (i // 200, i % 200 + 1), 30000 + i),
                   t0=1_700_000_000.0 + (0 if i % 2 else 120))
        d.syn()
        for ts, ip, side in d.packets:
            seg = decode_frame(101, ip)
            seg.ts, seg.num = ts, n
            n += 1
            table.feed(seg)
    assert sum(scans) < 40 * 2000, (len(scans), sum(scans))


# ---------------------------------------------------------------- item 9: descriptors

def test_overlapping_files_beyond_the_descriptor_limit(tmp_path):
    """2,000 files that all overlap in time, under a limit of 64 descriptors: read as one
    capture, exactly as without the limit."""
    paths = []
    for i in range(2000):
        d = Dialog(client=("10.3.%d.%d" % (i // 200, i % 200 + 1), 30000 + i),
                   t0=1_700_000_000.0 + i * 0.0001, step=1.0)
        d.syn().synack().ack()
        path = tmp_path / ("part%04d.pcap" % i)
        write_pcap(path, d.packets)
        paths.append(str(path))
    args = [sys.executable, "-m", "analyzer", "-f", "json", *paths]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    limited = subprocess.run(args, capture_output=True, env=_env(), timeout=600,
                             preexec_fn=limit)
    assert limited.returncode == 0, limited.stderr[-500:]
    assert limited.stderr == b""
    doc = json.loads(limited.stdout)
    assert doc["capture"]["packets"] == 6000 and doc["summary"]["connections"] == 2000
    free = subprocess.run(args, capture_output=True, env=_env(), timeout=600)
    assert free.stdout == limited.stdout
