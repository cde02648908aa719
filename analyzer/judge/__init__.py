"""Stage 4, judging: a finished connection -> its verdicts, lingering states and findings.

Owns the handshake and close verdicts and the lingering CLOSE_WAIT/TIME_WAIT rules
(`verdicts`), the result record every later stage reads (`result`), and the judgements across
connections (`floods`). The finding codes themselves are `analyzer.common.findings`.
May import: `analyzer.common`, `analyzer.capture`, `analyzer.decode`, `analyzer.tcp`.
"""
