"""Final TCP states against Suricata's flow-end `tcp.state` (suricata-verify expectations).

Suricata keeps one state per session. Up to ESTABLISHED it names the handshake (`syn_sent`);
after that it follows the responder: a FIN from the client puts it in `close_wait`, a FIN
from the server in `fin_wait1`, and so on to `closed`. So it is compared with our responder's
final state (and `syn_sent` with our originator's). Rows of GROUND_TRUTH.tsv with
truth_source suricata; the corpus is read in place (skipped when absent).
"""

from __future__ import annotations

import csv
import ipaddress

import pytest

from analyzer.pipeline import analyze
from conftest import CORPUS

#: Suricata tcp.state -> (our side, the final states that agree with it).
ACCEPTED = {
    "syn_sent": ("orig", {"SYN_SENT"}),
    "established": ("resp", {"ESTABLISHED"}),
    "close_wait": ("resp", {"CLOSE_WAIT"}),
    "fin_wait1": ("resp", {"FIN_WAIT_1"}),
    "last_ack": ("resp", {"LAST_ACK"}),
    "closed": ("resp", {"CLOSED", "TIME_WAIT"}),
}

#: Deliberate differences: file -> (our responder's final state, reason).
DIFFERENCES = {
    "suricata-verify/bug-2646-01__input.pcap": (
        "CLOSING", "the server's FIN does not acknowledge the client's (they crossed): both "
        "ends go through CLOSING; Suricata takes the FINs in arrival order (last_ack)"),
    "suricata-verify/bug-2491-02__simple_http_download.onesided.nosyn.pcap": (
        "ESTABLISHED", "a one-sided capture: nothing from the server shows it received the "
        "client's FIN, so we do not claim CLOSE_WAIT (Suricata's async-oneside mode assumes it)"),
}


def _rows():
    path = CORPUS / "GROUND_TRUTH.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if "suricata" in r["truth_source"]]


ROWS = _rows()


def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


@pytest.mark.parametrize("row", ROWS, ids=["%s-%d" % (r["local_path"].split("/")[-1], i)
                                           for i, r in enumerate(ROWS)])
def test_final_state_matches_suricata(corpus, row):
    doc = analyze([str(corpus / row["local_path"])]).to_dict()
    conns = doc["connections"]
    if row["orig_h"]:
        want = {(_norm(row["orig_h"]), int(row["orig_p"])), (_norm(row["resp_h"]), int(row["resp_p"]))}
        conns = [c for c in conns if {(c["orig"]["addr"], c["orig"]["port"]),
                                      (c["resp"]["addr"], c["resp"]["port"])} == want]
    assert conns, "no connection for %s" % row
    side, accepted = ACCEPTED[row["suricata_tcp_state"]]
    for c in conns:
        ours = c["final_state"][side]
        if row["local_path"] in DIFFERENCES:
            assert ours == DIFFERENCES[row["local_path"]][0]
        else:
            assert ours in accepted, (row["suricata_tcp_state"], c["final_state"])


def test_every_suricata_row_is_compared(corpus):
    assert len(ROWS) == 18
    assert {r["suricata_tcp_state"] for r in ROWS} <= set(ACCEPTED)
