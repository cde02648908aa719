"""Stage 1, reading captures: files (pcap, pcapng, gzip, stdin) -> frames (time, link type, bytes).

Owns the frame source and its in-buffer cursors (`source`), the two file formats (`pcap`,
`pcapng`), and opening one or several files as one time-ordered capture (`files`). Damage is
reported as warnings and errors in `CaptureStats`; everything readable before it is delivered.
May import: `analyzer.common`.
"""
