"""ZeekView: every Zeek conn_state and history letter from packets built by hand, and the
conn.log renderer. Each expectation cites the Zeek rule it follows (zeek/zeek
TCPSessionAdapter.cc, TCP_Endpoint.cc, TCP_Reassembler.cc, Conn.cc, main.zeek conn_state())."""

from __future__ import annotations

import io
import random
import re
from types import SimpleNamespace

import pytest

from analyzer.decode.frames import decode_frame
from analyzer.render import zeek_out
from analyzer.decode.segment import ACK, FIN, PSH, RST, SYN
from analyzer.testing.synth import Dialog, frame
from analyzer.tcp.zeek import (CLOSED, ESTABLISHED, INACTIVE, RESET, SYN_SENT, ZeekView,
                           conn_state)

SERVER_80 = ("10.0.0.2", 80)        # a likely server port (Zeek flips SYN-less starts to it)
SERVER_5000 = ("10.0.0.2", 5000)    # not a likely server port


def replay(d: Dialog, orig: str = "c", cut=(), bad=(), drop=()):
    """Feed a Dialog's packets to a ZeekView. `orig` is our originator's side; `cut`, `bad`
    and `drop` are packet indexes whose payload was not captured, whose checksum is wrong,
    or that are missing from the capture. Returns (conn_state, history, view)."""
    view, first = ZeekView(), None
    for i, (_, ip, side) in enumerate(d.packets):
        if i in drop:
            continue
        seg = decode_frame(1, frame(ip))
        assert not isinstance(seg, str), seg
        if first is None:
            first = side == orig
        view.segment(side == orig, seg, payload_captured=i not in cut, bad_checksum=i in bad)
    state, history = view.finish(first)
    return state, history, view


def labels(d: Dialog, **kw):
    """(conn_state, history) of a Dialog."""
    return replay(d, **kw)[:2]


# -- conn_state: main.zeek conn_state() on the two endpoint states ----------------------------

def test_sf_normal_establishment_and_termination():
    # Both endpoints CLOSED by their FINs -> SF; A, D once per direction (CheckHistory).
    d = Dialog().handshake().data("c", 100).ack("s").data("s", 200).ack("c")
    d.fin("c").fin("s").ack("c")
    assert labels(d) == ("SF", "ShADadFf")


def test_s0_attempt_without_reply_and_syn_retransmissions():
    # orig SYN_SENT, resp INACTIVE -> S0; a SYN at the same sequence number adds no S.
    d = Dialog().syn().syn(seq=1000).syn(seq=1000)
    assert labels(d) == ("S0", "S")


def test_s1_established_not_terminated():
    d = Dialog().handshake().data("c", 10).ack("s").data("s", 10)
    assert labels(d) == ("S1", "ShADad")


def test_rej_syn_answered_by_rst():
    # UpdateInactiveState: the responder's RST while the orig is SYN_SENT is a reject; REJ.
    d = Dialog().syn().rst("s")
    assert labels(d) == ("REJ", "Sr")


def test_s2_and_s3_close_attempt_by_one_side():
    d = Dialog().handshake().fin("c").ack("s")
    assert labels(d) == ("S2", "ShAFa")        # os CLOSED, rs ESTABLISHED
    d = Dialog().handshake().fin("s").ack("c")
    assert labels(d) == ("S3", "ShAf")         # rs CLOSED, os ESTABLISHED; A already seen


def test_rsto_and_rstr_reset_after_establishment():
    assert labels(Dialog().handshake().data("c", 5).rst("c")) == ("RSTO", "ShADR")
    assert labels(Dialog().handshake().rst("s")) == ("RSTR", "ShAr")


def test_rstos0_syn_then_rst_from_the_originator():
    # os RESET, rs INACTIVE and history matching /\^?S[^HAFGIQ]*R.*/ -> RSTOS0.
    assert labels(Dialog().syn().rst("c", ack=False)) == ("RSTOS0", "SR")
    # An ACK of the SYN before any SYN-ACK leaves the responder INACTIVE (the "eccentric
    # TCP" rule in UpdateInactiveState), as in Zeek's syn-then-ack-then-rst trace.
    d = Dialog().syn().ack("s", ack=1001).rst("c", ack=False)
    assert labels(d) == ("RSTOS0", "SaR")


def test_rstrh_synack_then_rst_from_the_responder():
    # First packet a SYN-ACK from port 80: WantConnection flips (^), the responder is
    # ESTABLISHED by its SYN-ACK, then RESET; the orig stays INACTIVE -> RSTRH.
    d = Dialog(server=SERVER_80).synack().rst("s")
    assert labels(d) == ("RSTRH", "^hr")


def test_sh_and_shr_half_open_closes():
    assert labels(Dialog().syn().fin("c")) == ("SH", "SF")       # os CLOSED, rs INACTIVE
    d = Dialog(server=SERVER_80).synack().fin("s")
    assert labels(d) == ("SHR", "^hf")                           # rs CLOSED, os INACTIVE


def test_oth_midstream_and_lone_rst():
    # No SYN: both endpoints PARTIAL -> OTH. A lone RST: RESET with an inactive peer and
    # a history that is not S...R -> OTH.
    d = Dialog().data("c", 10).data("s", 10)
    assert labels(d) == ("OTH", "Dd")
    assert labels(Dialog().rst("c")) == ("OTH", "R")


def test_conn_state_rej_when_both_reset_without_data():
    # main.zeek: rs RESET and os RESET with both sizes 0 is REJ, else RSTR.
    assert conn_state(RESET, RESET, 0, 0, "SRr") == "REJ"
    assert conn_state(RESET, RESET, 10, 0, "ShADRr") == "RSTR"
    assert conn_state(CLOSED, ESTABLISHED, 0, 0, "") == "S2"
    assert conn_state(SYN_SENT, INACTIVE, 0, 0, "S") == "S0"


# -- history letters -------------------------------------------------------------------------

def test_t_retransmission_scales_1_10_100():
    # update_last_seq: payload not beyond the highest sequence number sent -> DidRxmit;
    # ScaledHistoryEntry adds the letter at the 1st, 10th and 100th occurrence.
    def with_rexmits(n):
        """The history after n retransmissions of the client's first data segment."""
        d = Dialog().handshake().data("c", 100)
        for _ in range(n):
            d.data("c", 100, seq=1001)
        return labels(d)[1]
    assert with_rexmits(1) == "ShADT"
    assert with_rexmits(9) == "ShADT"
    assert with_rexmits(10) == "ShADTT"
    assert with_rexmits(100) == "ShADTTT"


def test_t_lowercase_for_the_responder():
    d = Dialog().handshake().data("s", 50).data("s", 50, seq=5001)
    assert labels(d) == ("S1", "ShAdt")


def test_w_zero_window_not_after_the_peers_fin():
    # update_window: a zero window counts unless with a RST or after the peer's FIN.
    assert labels(Dialog().handshake().ack("s", win=0))[1] == "ShAaw"
    assert labels(Dialog().handshake().fin("c").ack("s", win=0))[1] == "ShAFa"
    d = Dialog().handshake()
    for _ in range(10):
        d.ack("c", win=0)
    assert labels(d)[1] == "ShAWW"


def test_g_content_gap_from_a_cut_payload_and_from_a_missing_segment():
    # TCP_Reassembler: an ACK beyond the delivered bytes is a gap, a G while both sides
    # are established or closing cleanly (TCP_Reassembler::Gap).
    d = Dialog().handshake().data("c", 100).ack("s")
    assert labels(d, cut={3}) == ("S1", "ShADaG")
    d = Dialog().handshake().data("s", 100).data("s", 100).ack("c")
    assert labels(d, drop={3}) == ("S1", "ShAdg")        # the first data segment is missing
    d = Dialog().handshake().data("c", 100).data("c", 100).ack("s")
    assert labels(d, drop={4}) == ("S1", "ShADaG")       # a hole between two segments


def test_no_g_in_a_partial_connection():
    # Gap() reports only for established/cleanly closing endpoints: midstream ones are
    # PARTIAL.
    d = Dialog().data("c", 100).ack("s")
    assert labels(d, cut={0}) == ("OTH", "Da")


def test_c_bad_checksum_only_counts_and_is_otherwise_ignored():
    # TCPAnalyzer::ValidateChecksum fails -> ChecksumError (C) and no further processing.
    assert labels(Dialog().syn(), bad={0}) == ("OTH", "C")
    d = Dialog().handshake().data("s", 10).data("s", 10)
    assert labels(d, bad={3}) == ("S1", "ShAcd")


def test_i_fin_and_rst_together():
    # update_history: FIN and RST together are I (once per direction); the RST wins in
    # UpdateEstablishedState (a FIN counts only without RST).
    assert labels(Dialog().handshake().send("c", FIN | RST | ACK)) == ("RSTO", "ShAI")
    assert labels(Dialog().handshake().send("s", FIN | RST | ACK)) == ("RSTR", "ShAi")


def test_syn_or_rst_with_payload_counts_as_t():
    # Zeek quirks kept: init_endpoint puts last_seq past a SYN's payload, and a RST's
    # payload takes no sequence space, so update_last_seq sees payload not beyond last_seq.
    assert labels(Dialog().send("c", SYN, 10)) == ("S0", "ST")
    assert labels(Dialog().handshake().send("s", RST | ACK, 20)) == ("RSTR", "ShArt")


def test_q_syn_with_fin_or_rst():
    assert labels(Dialog().send("c", SYN | FIN)) == ("SH", "Q")
    assert labels(Dialog().send("c", SYN | RST)) == ("OTH", "Q")
    d = Dialog().syn().send("s", SYN | RST | ACK)
    assert labels(d)[1] == "Sq"


def test_f_and_r_repeat_only_at_a_new_sequence_number():
    d = Dialog().handshake().fin("c").fin("c", seq=1001).fin("c", seq=1001)
    assert labels(d)[1] == "ShAF"
    d = Dialog().handshake().send("c", FIN | ACK, advance=False).data("c", 10)
    d.send("c", FIN | ACK, seq=1011)
    assert labels(d)[1] == "ShAFDF"
    d = Dialog().handshake().rst("s").rst("s", seq=6000)
    assert labels(d)[1] == "ShArr"


def test_f_after_a_fin_with_rst_or_syn_compares_with_the_last_pure_fin():
    # hist_last_fin moves only on a FIN without SYN or RST (update_history); the view keeps it
    # as the FIN's end less one and apart only once a FIN with RST or SYN moved the FIN's end.
    # (Histories checked against the build before that.)
    def fins(*seqs):
        d = Dialog().handshake().data("c", 10)
        at = d.nxt["c"]
        d.fin("c").ack("s").send("c", FIN | RST | ACK, seq=at + 100, advance=False)
        for k in seqs:
            d.fin("c", seq=at + k, advance=False)
        return labels(d)
    assert fins(0) == ("RSTO", "ShADFaI")          # at the first FIN's number: no F
    assert fins(7) == ("RSTO", "ShADFaIF")
    assert fins(7, 7, 0) == ("RSTO", "ShADFaIFF")  # the new pure FIN is the one compared
    d = Dialog().handshake().data("c", 10)
    at = d.nxt["c"]
    d.send("c", SYN | FIN, seq=at, advance=False).fin("c", seq=at, advance=False)
    d.fin("c", seq=at, advance=False)
    assert labels(d) == ("S2", "ShADQF")


@pytest.mark.parametrize("isn", [(0xFFFFFFF0, 0x80000000), (0x7FFFFFFF, 0xFFFFFFFF),
                                 (0x80000001, 0)])
def test_base_sequence_numbers_past_2_31_and_wrapping(isn):
    # The base sequence number is kept in 32 signed bits (less 2**32 from 2**31 on).
    d = Dialog(isn=isn).handshake().data("c", 100).ack("s").data("s", 200).ack("c")
    d.fin("c").fin("s").ack("c")
    state, history, view = replay(d)
    assert (state, history) == ("SF", "ShADadFf")
    assert (view.z0.size(view.z1), view.z1.size(view.z0)) == (100, 200)


def test_sequence_numbers_unwrapped_past_2_32():
    # 1 GiB jumps of the client's sequence number, each acknowledged: its unwrapped numbers
    # pass 2**32 twice and the labels are those of any connection (as before the base
    # sequence number was kept in 32 bits).
    d = Dialog(isn=(0xF0000000, 0x7FFFFFF0)).handshake()
    for k in range(10):
        d.data("c", 100, seq=(d.nxt["c"] + 0x40000000) & 0xFFFFFFFF)
        d.ack("s")
        d.data("s", 50).ack("c")
    d.data("c", 100, seq=(d.nxt["c"] - 50) & 0xFFFFFFFF, advance=False)
    d.fin("c").fin("s").ack("c")
    state, history, view = replay(d)
    assert (state, history) == ("SF", "ShADadFf")
    assert view.z0.last - view.z0.start > 10 * 2 ** 30


# -- direction: ^ and Zeek's originator --------------------------------------------------------

def test_flip_at_creation_from_a_likely_server_port():
    # WantConnection: a SYN-less first packet from port 80 to a non-server port is flipped.
    d = Dialog(server=SERVER_80).data("s", 10).data("c", 10)
    state, history, view = replay(d)
    assert (state, history, view.flipped) == ("OTH", "^dD", False)


def test_both_ports_likely_flip_to_the_higher_port():
    d = Dialog(client=("10.0.0.1", 443), server=SERVER_80).data("s", 10).data("c", 10)
    _, history, view = replay(d, orig="s")     # we call the first sender (port 80) orig
    assert history == "^dD" and view.flipped   # Zeek's orig is port 443: our resp


def test_synack_then_ack_flips_late_and_rewrites_the_history():
    # Zeek >= 5.1 (PR 2191): a connection begun by a SYN-ACK is flipped when an ACK or
    # data follows; the history reads as if flipped from the start (one-sided-2745 trace).
    d = Dialog(server=SERVER_5000).synack().ack("c").data("c", 10).data("s", 10)
    assert labels(d) == ("OTH", "^hADd")
    d = Dialog(server=SERVER_5000).synack().ack("s").fin("s")
    assert labels(d) == ("SHR", "^haf")


def test_syn_answering_a_first_synack_flips_in_place():
    # UpdateInactiveState: a SYN to an orig in SYN_ACK_SENT is a SYN/SYN-ACK reversal;
    # FlipRoles appends ^ where it happens and both become ESTABLISHED.
    d = Dialog(server=SERVER_5000).synack().syn(seq=1000).ack("c")
    state, history, view = replay(d)
    assert (state, history, view.flipped) == ("S1", "Hs^A", False)


def test_stealth_scan_synack_answered_by_rst_is_not_flipped():
    # No server port and no ACK/data after the SYN-ACK: Zeek keeps the SYN-ACK sender as
    # its originator; the RST from the other side rejects it. Our orig is the other side.
    d = Dialog(server=SERVER_5000).synack().rst("c", ack=False)
    state, history, view = replay(d)
    assert (state, history, view.flipped) == ("REJ", "Hr", True)


def test_finish_checks_it_saw_the_first_segment():
    assert ZeekView().finish(True) == ("OTH", "")
    _, _, view = replay(Dialog().syn())
    with pytest.raises(ValueError):
        view.finish(False)


def test_fast_path_equals_the_full_replay():
    # The fast path (established, letter already seen) must not change any result: random
    # data, ACKs, retransmissions, losses and zero windows replayed both ways.
    rng = random.Random(7)
    for _ in range(40):
        d = Dialog().handshake()
        for _ in range(60):
            side = rng.choice("cs")
            r = rng.random()
            if r < 0.4:
                d.data(side, rng.choice((1, 100, 1400)))
            elif r < 0.55:
                d.data(side, 100, seq=d.nxt[side] - 100, advance=False)
            elif r < 0.65:
                d.send(side, PSH | ACK, 100, advance=True, seq=d.nxt[side] + 50)
            else:
                d.ack(side, win=0 if r > 0.95 else 65535)
        d.fin("c").fin("s").ack("c")
        fast = replay(d)
        slow = ZeekView()
        for _, ip, side in d.packets:
            r = slow.resp()
            e, p = (slow, r) if side == "c" else (r, slow)
            slow._packet(e, p, side == "c", decode_frame(1, frame(ip)), True, False)
            slow.keep(r)
        assert fast[:2] == slow.finish(True)


def _fields(view):
    """Every fact of a view's two endpoints and its roles, comparable."""
    def ends(e):
        return (e.start, e.state, e.prev, e.skip, e.fin, e.last, e.ack, e.fin_seq, e.reassem,
                e.trim, e.hl_syn, e.hl_rst, e.hl_fin, e.rxmt, e.win0, e.gap, e.chk, e.above)
    return (ends(view.z0), ends(view.z1), view.history, view.seen, view.first_seen,
            view.partial, view.flipped, view.first)


def test_fin_fast_path_equals_the_full_replay_after_every_packet():
    # A FIN from an established endpoint takes a path of its own (per side, on the view's
    # fields); every fact of both endpoints must stay the full replay's after every packet:
    # FINs with data, behind a loss, retransmitted, crossing, acknowledging old data, with a
    # cut payload, a zero window, after an RST-less odd FIN, from either side, either role;
    # the handshake's SYN and SYN-ACK (paths of their own too) plain and retransmitted.
    rng = random.Random(16)
    for n in range(300):
        d = Dialog(server=SERVER_80 if n % 3 else SERVER_5000,
                   isn=(rng.choice((1000, 0xFFFFFF00, 0x7FFFFFF0, 0x7FFFFFFF)),
                        rng.choice((5000, 0xFFFFFFF0, 0x7FFFFFFF))))
        d.syn()
        if n % 5 == 1:
            d.syn(advance=False)                                       # a retransmitted SYN
        d.synack(win=0 if n % 7 == 3 else 65535)
        if n % 6 == 2:
            d.synack(advance=False)                                    # a retransmitted SYN-ACK
        d.ack()
        for _ in range(rng.randrange(0, 8)):
            side = rng.choice("cs")
            r = rng.random()
            if r < 0.4:
                d.data(side, rng.choice((1, 100, 1400)))
            elif r < 0.55:
                d.send(side, PSH | ACK, 100, advance=True, seq=d.nxt[side] + 50)   # a loss
            else:
                d.ack(side)
        for side in rng.sample("cscs", rng.randrange(1, 5)):
            r = rng.random()
            if r < 0.25:
                d.fin(side, length=rng.choice((1, 300)))
            elif r < 0.35:
                d.fin(side, seq=d.nxt[side] + 40)                          # data lost before it
            elif r < 0.45:
                d.fin(side, advance=False, seq=d.nxt[side] - 1)            # a retransmission
            elif r < 0.55:
                d.fin(side, ack=d.nxt["s" if side == "c" else "c"] - 200)  # old acknowledgement
            elif r < 0.6:
                d.fin(side, win=0)
            elif r < 0.65:
                d.send(side, FIN | SYN | ACK, advance=False)              # an odd FIN first
            elif r < 0.7:
                d.fin(side, length=50, advance=False, seq=d.nxt[side] - 50)
            else:
                d.fin(side)
            if rng.random() < 0.5:
                d.ack("s" if side == "c" else "c")
        orig = "c" if n % 4 else "s"
        cut = {i for i in range(len(d.packets)) if rng.random() < 0.05}
        fast, slow = ZeekView(), ZeekView()
        for i, (_, ip, side) in enumerate(d.packets):
            seg = decode_frame(1, frame(ip))
            fast.segment(side == orig, seg, payload_captured=i not in cut)
            r = slow.resp()
            e, p = (slow, r) if side == orig else (r, slow)
            slow._packet(e, p, side == orig, seg, i not in cut, False)
            slow.keep(r)
            assert _fields(fast) == _fields(slow), (n, i)
        assert fast.finish(d.packets[0][2] == orig) == slow.finish(d.packets[0][2] == orig)


# -- the conn.log renderer -------------------------------------------------------------------

def _conn(i=0, **kw):
    """A connection result as the core will hand it over, with the Zeek labels."""
    base = dict(id=i, first_frame=1 + 10 * i, orig_raw=(bytes([10, 0, 0, 1]), 40000),
                resp_raw=(bytes([10, 0, 0, 2]), 80),
                start=1_700_000_000_123_456_000, end=1_700_000_001_623_456_000,
                packets=(7, 5), bytes=(136, 5007), ip_bytes=(428, 5275), conn_state="SF",
                history="ShADadFf")
    base.update(kw)
    return SimpleNamespace(**base)


def _report(*conns):
    """A report holding `conns`, with a capture from 22:13:20 to 22:14:20 UTC."""
    cap = SimpleNamespace(first_ts=1_700_000_000_000_000_000, last_ts=1_700_000_060_000_000_000)
    return SimpleNamespace(connections=list(conns), capture=cap)


def _parse(text):
    """A conn.log back into (lines, header fields, rows as dicts)."""
    lines = text.splitlines()
    meta = {}
    rows = []
    for line in lines:
        if line.startswith("#separator"):
            meta["separator"] = line.split(" ", 1)[1]
        elif line.startswith("#"):
            key, _, value = line[1:].partition("\t")
            meta[key] = value.split("\t") if key in ("fields", "types") else value
        else:
            rows.append(dict(zip(meta["fields"], line.split("\t"))))
    return lines, meta, rows


def test_conn_log_header_and_rows_parse_back():
    out = io.StringIO()
    zeek_out.render(_report(_conn(), _conn(1, end=1_700_000_000_123_456_000, history="",
                                           conn_state="S0")), out)
    lines, meta, rows = _parse(out.getvalue())
    assert lines[0] == "#separator \\x09"
    assert meta["set_separator"] == "," and meta["empty_field"] == "(empty)"
    assert meta["unset_field"] == "-" and meta["path"] == "conn"
    assert meta["open"] == "2023-11-14-22-13-20" and meta["close"] == "2023-11-14-22-14-20"
    assert meta["fields"][:6] == ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h",
                                  "id.resp_p"]
    assert len(meta["fields"]) == len(meta["types"]) == 21 and meta["types"][0] == "time"
    assert lines[-1].startswith("#close") and all(len(r) == 21 for r in rows)
    first, second = rows
    assert first["ts"] == "1700000000.123456" and first["duration"] == "1.500000"
    assert (first["id.orig_h"], first["id.orig_p"], first["proto"]) == ("10.0.0.1", "40000", "tcp")
    assert (first["orig_bytes"], first["resp_bytes"]) == ("136", "5007")
    assert (first["conn_state"], first["history"], first["orig_pkts"]) == ("SF", "ShADadFf", "7")
    assert (first["orig_ip_bytes"], first["resp_ip_bytes"]) == ("428", "5275")
    assert first["service"] == first["missed_bytes"] == first["tunnel_parents"] == "-"
    assert re.fullmatch(r"C[0-9A-Za-z]{10,17}", first["uid"]) and first["uid"] != second["uid"]
    # Zeek leaves duration and byte counts unset for a zero duration, history when empty.
    assert (second["duration"], second["orig_bytes"], second["history"]) == ("-", "-", "-")


def test_conn_log_uid_is_stable_and_flipped_rows_follow_zeek():
    a, b = io.StringIO(), io.StringIO()
    zeek_out.render(_report(_conn()), a)
    zeek_out.render(_report(_conn(zeek_flipped=True, history="^hADd", conn_state="OTH")), b)
    ra, rb = _parse(a.getvalue())[2][0], _parse(b.getvalue())[2][0]
    assert ra["uid"] == rb["uid"]
    assert (rb["id.orig_p"], rb["id.resp_p"], rb["orig_pkts"], rb["resp_bytes"]) == \
        ("80", "40000", "5", "136")
    assert (rb["orig_ip_bytes"], rb["resp_ip_bytes"]) == ("5275", "428")


def test_conn_log_says_clearly_when_the_labels_are_missing():
    out = io.StringIO()
    conn = _conn()
    del conn.history
    with pytest.raises(RuntimeError, match="conn_state, history"):
        zeek_out.render(_report(conn), out)
    assert out.getvalue() == ""


@pytest.mark.parametrize("client, server, vlans", [
    (("10.0.0.1", 40000), ("10.0.0.2", 80), ()),
    (("2001:db8::1", 40000), ("2001:db8::2", 443), (7,)),
])
def test_conn_log_ip_bytes_are_the_ip_lengths_each_side_sent(tmp_path, client, server, vlans):
    # Read back with dpkt (a second implementation): each side's IP total lengths summed,
    # retransmissions included, as Zeek counts orig_ip_bytes/resp_ip_bytes.
    import dpkt
    from analyzer.pipeline import analyze
    from analyzer.testing.synth import write_pcap
    d = Dialog(client=client, server=server).handshake().data("c", 300).data("s", 1448)
    d.data("s", 1448).send("s", ACK, 1448, seq=d.nxt["s"] - 1448, advance=False)  # resent
    d.fin("c").fin("s").ack("c")
    path = tmp_path / "c.pcap"
    write_pcap(path, d.packets, vlans=vlans)
    sums = {}
    with open(path, "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            length = ip.len if isinstance(ip, dpkt.ip.IP) else ip.plen + 40
            sport = ip.data.sport
            sums[sport] = sums.get(sport, 0) + length
    out = io.StringIO()
    zeek_out.render(analyze([str(path)]), out)
    row = _parse(out.getvalue())[2][0]
    assert (int(row["orig_ip_bytes"]), int(row["resp_ip_bytes"])) == (
        sums[client[1]], sums[server[1]])
    assert sums[client[1]] > 0 and sums[server[1]] > 3 * 1448


def _interleaved(path, count=60):
    """`count` connections that overlap in time (each opens before the one before it
    closes), the first 4-tuple used twice (a second incarnation after the first ended),
    written as one capture; the packets in time order."""
    from analyzer.testing.synth import write_pcap
    packets = []
    for i in range(count):
        d = Dialog(client=("10.0.0.1", 40000 + i % (count - 1)), server=SERVER_80,
                   isn=(1000 + 100_000 * i, 5000 + 100_000 * i), t0=1_700_000_000.0 + 0.01 * i)
        d.handshake().data("c", 100 + i).data("s", 1000).fin("c").fin("s").ack("c")
        packets += d.packets
    packets.sort(key=lambda p: p[0])
    write_pcap(path, packets)
    return packets


def test_conn_log_rows_are_made_as_connections_end_and_spill_like_results(tmp_path):
    # The renderer's own sink keeps each connection's row, made when it ends, and spills
    # them past its budget: the conn.log is the one written from the results themselves,
    # byte for byte, with whatever budget (memory holds a budget of rows, not every row).
    from analyzer.pipeline import analyze
    from analyzer.settings import Settings
    path = tmp_path / "c.pcap"
    _interleaved(path)
    reference = io.StringIO()
    zeek_out.render(analyze([str(path)]), reference)        # (the default store: results)
    for budget in (3, 7, 5000):
        settings = Settings(result_budget=budget)
        sink = zeek_out.make_sink(settings)
        report = analyze([str(path)], settings, sink=sink)
        assert report.connections is sink and len(sink) == 60
        assert bool(sink.runs) == (budget < 60)             # spilled past the budget
        out = io.StringIO()
        zeek_out.render(report, out)
        assert out.getvalue() == reference.getvalue(), budget
    rows = _parse(reference.getvalue())[2]
    assert len(rows) == 60 and len({r["uid"] for r in rows}) == 60


def test_conn_log_uid_names_the_connection_by_its_first_frame_start_and_endpoints(tmp_path):
    # Recomputed from the packets (the frame number of each connection's first packet, its
    # time, the endpoints): `C` + base62 of the 96-bit BLAKE2s of
    # `frame|start_ns|orig_h|orig_p|resp_h|resp_p`. Two incarnations of one 4-tuple get two
    # uids; the uid does not depend on which other connections the capture holds.
    import hashlib
    from analyzer.pipeline import analyze
    path = tmp_path / "c.pcap"
    packets = _interleaved(path)
    firsts = {}
    for number, (ts, ip, side) in enumerate(packets, 1):
        seg = decode_frame(1, frame(ip))
        if side == "c" and seg.flags == SYN:
            firsts[number] = (ts, seg)
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def b62(n):
        text = ""
        while n:
            n, r = divmod(n, 62)
            text = digits[r] + text
        return text or "0"

    expected = set()
    for number, (ts, seg) in firsts.items():
        start = ts // 1000 * 1000           # (as the capture holds it: microseconds)
        key = "%d|%d|10.0.0.1|%d|10.0.0.2|80" % (number, start, seg.sport)
        digest = hashlib.blake2s(key.encode(), digest_size=12).digest()
        expected.add("C" + b62(int.from_bytes(digest, "big")))
    out = io.StringIO()
    zeek_out.render(analyze([str(path)]), out)
    rows = _parse(out.getvalue())[2]
    assert {r["uid"] for r in rows} == expected and len(expected) == 60
    reused = [r for r in rows if r["id.orig_p"] == "40000"]
    assert len(reused) == 2 and reused[0]["uid"] != reused[1]["uid"]


def test_conn_log_times_are_the_six_decimals_of_the_exact_time():
    # conn.log's ts and duration: the integer's microseconds where they are whole (every
    # pcap time), the float's six decimals otherwise; the same text either way.
    from analyzer.common.nstime import seconds
    rng = random.Random(33)
    cases = [0, 1000, 999, 500, 1500, 1_700_000_000_123_456_000, (1 << 32) * 10 ** 9 - 1000,
             (1 << 33) * 10 ** 9 - 1000, (1 << 33) * 10 ** 9, (1 << 40) * 10 ** 9 + 1000]
    cases += [rng.randrange(0, 1 << 34) * 1000 for _ in range(20000)]
    cases += [rng.randrange(0, 10 ** 19) for _ in range(20000)]
    for ns in cases:
        assert zeek_out._time6(ns) == "%.6f" % seconds(ns), ns
