"""A testing helper, not on the analysis path: build packets and write captures.

`synth` makes real capture bytes (Ethernet/IPv4/IPv6/TCP frames, whole dialogs, pcap and
pcapng files) for the test suite, the sample captures (samples/make_samples.py) and library
users who want to test their own policies on made-up traffic. Nothing in the analysis imports
it.
May import: `analyzer.common`, `analyzer.decode`.
"""
