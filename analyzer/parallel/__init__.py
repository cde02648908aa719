"""The analysis over several processes (`--jobs`): each shard analyses the connections whose
4-tuple hashes to it (shard.py), and the parent merges what they send into the report that
one process would give, byte for byte (merge.py); local.py runs the shards as processes.

May import: common, capture, decode, tcp, judge, report, settings, pipeline.
"""
