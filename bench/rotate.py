"""Split a classic pcap into rotated files, as `tcpdump -C` (by size) or `-G` (by time) writes them.

    python bench/rotate.py /tmp/bench100k.pcap --files 10 --out /tmp/rot/part
        -> /tmp/rot/part-000.pcap ... part-009.pcap (about equal sizes, cut at record bounds)
    python bench/rotate.py /tmp/bench100k.pcap --seconds 60 --out /tmp/rot/part
        -> one file per 60 s of capture time (a sensor rotating every minute)
    python bench/rotate.py /tmp/bench10k.pcap --seconds 1 --sensors 4 --out /tmp/arch/s
        -> /tmp/arch/s0-000.pcap ... s3-NNN.pcap: each sensor gets the capture again (its
           addresses unchanged), 1 s per file: an archive of independent capture groups

Each part has the input's file header and whole records in their order, so analysing the parts
together (`tcpflow-check part-*.pcap`) gives the report of the whole file. With `--sensors N`
the files of sensor k are `<out>k-NNN.pcap`; `--group-by-file '(s\\d+)-'` groups them back.
Records are copied as bytes (nothing is decoded): 1 GB splits in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from typing import BinaryIO, Iterator, List, Optional, Tuple

CHUNK = 1 << 20


def records(fh: BinaryIO) -> Iterator[Tuple[int, bytes]]:
    """(seconds, record bytes) of each record of a classic pcap opened at its first record."""
    head = struct.Struct(_ORDER[0] + "IIII")
    buf, pos = b"", 0
    while True:
        if len(buf) - pos < 16 or len(buf) - pos < 16 + head.unpack_from(buf, pos)[2]:
            more = fh.read(CHUNK)
            if not more:
                return
            buf, pos = buf[pos:] + more, 0
            continue
        sec, _, caplen, _ = head.unpack_from(buf, pos)
        end = pos + 16 + caplen
        yield sec, buf[pos:end]
        pos = end


_ORDER = ["<"]


def split(path: str, out: str, files: int, seconds: Optional[float], sensors: int) -> List[str]:
    size = os.path.getsize(path)
    written: List[str] = []
    with open(path, "rb") as fh:
        header = fh.read(24)
        magic = header[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            _ORDER[0] = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            _ORDER[0] = ">"
        else:
            sys.exit("%s: not a classic pcap (pcapng: convert with editcap -F pcap)" % path)
        start = fh.tell()
        for sensor in range(sensors):
            fh.seek(start)
            prefix = "%s%d-" % (out, sensor) if sensors > 1 else out + "-"
            part, part_bytes, first_sec = -1, 0, None
            outfh: Optional[BinaryIO] = None
            for sec, rec in records(fh):
                if first_sec is None:
                    first_sec = sec
                new = (outfh is None or (seconds is not None and
                                         (sec - first_sec) // seconds > part) or
                       (seconds is None and part_bytes >= size / files and part < files - 1))
                if new:
                    if outfh is not None:
                        outfh.close()
                    part = part + 1 if seconds is None else max(part + 1,
                                                                int((sec - first_sec) // seconds))
                    name = "%s%03d.pcap" % (prefix, part)
                    outfh = open(name, "wb")
                    outfh.write(header)
                    written.append(name)
                    part_bytes = 0
                outfh.write(rec)
                part_bytes += len(rec)
            if outfh is not None:
                outfh.close()
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", help="a classic pcap")
    ap.add_argument("--out", required=True, help="prefix of the parts (outside the repository)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--files", type=int, default=10, help="parts of about equal size")
    how.add_argument("--seconds", type=float, help="capture time per part (tcpdump -G)")
    ap.add_argument("--sensors", type=int, default=1, help="copies, one per sensor name")
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    names = split(args.capture, args.out, args.files, args.seconds, args.sensors)
    print("%d files, %s ... %s" % (len(names), names[0], names[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
