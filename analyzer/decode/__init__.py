"""Stage 2, decoding: a frame -> a TCP `Segment`, or the short reason it carries none.

Owns the segment record and sequence arithmetic (`segment`), link layers (`linklayer`), IPv4,
IPv6 and TCP headers (`iptcp`), checksums (`checksum`), and the dispatch by link type with
the in-buffer fast path (`frames`). Stateless: one frame in, one answer out.
May import: `analyzer.common`, `analyzer.capture`.
"""
