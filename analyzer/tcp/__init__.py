"""Stage 3, following TCP: segments -> connections replayed through RFC 9293's state machine.

Owns the endpoint state table (`states`), a connection's record and its state moves
(`endpoint`), the replay of each segment (`conn`) with the rules for SYN, FIN and RST and the
observer's inferences (`control`), Wireshark-style sequence analysis (`seqanalysis`), Zeek's
view of the same segments (`zeek`, `zeekstate`), and the flow table that keys connections by
4-tuple, numbers streams as Wireshark does and finishes them (`flows`). Nothing here reads a
clock: capture time comes in with each segment.
May import: `analyzer.common`, `analyzer.capture`, `analyzer.decode`.
"""
