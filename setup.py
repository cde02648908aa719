"""Build script: the analysis modules compiled to C extensions with mypyc, when it can be done.

Everything in `pyproject.toml` stays there; this file only adds the compiled modules. mypyc
compiles the same source the pure-Python package runs, so both give the same report; the
compiled one is about five times faster (bench/README.md). The build falls back to pure
Python, with a warning, when mypyc or a C compiler is missing, and `TCPFLOW_CHECK_PURE=1`
asks for pure Python outright. `tcpflow-check --version` says which one is installed.
"""

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The modules every packet goes through (reading, decoding, flows, the state machine, the
#: sequence analysis, the Zeek view, the verdicts) and those every connection goes through
#: (its result, its findings, the spill to disk, the JSON writer). The CLI, the terminal and
#: conn.log writers, the packet builder and the doc generator stay interpreted.
COMPILED = [
    "common/nstime", "common/findings",
    "capture/source", "capture/files", "capture/pcap", "capture/pcapng",
    "decode/segment", "decode/linklayer", "decode/iptcp", "decode/frames", "decode/checksum",
    "tcp/states", "tcp/endpoint", "tcp/seqanalysis", "tcp/control", "tcp/conn", "tcp/zeek",
    "tcp/zeekstate", "tcp/zeekmachine", "tcp/flows", "tcp/ignored",
    "judge/result", "judge/verdicts", "judge/floods", "judge/scans",
    "report/model", "report/store",
    "pipeline",
    "render/json_out",
]


def _warn(message: str) -> None:
    print("tcpflow-check build: %s; installing pure Python (slower, same results)" % message,
          file=sys.stderr)


def _pure() -> list:
    """No extensions; and none left in the source tree by an earlier editable build, where
    they would be imported instead of the sources this build installs."""
    for path in glob.glob("analyzer/**/*.so", recursive=True) + \
            glob.glob("analyzer/**/*.pyd", recursive=True):
        os.remove(path)
    return []


class OptionalBuildExt(build_ext):
    """A failed compile leaves the pure-Python package, which is complete on its own. It is
    all or nothing: compiled modules share one library, so none is kept if one failed."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:                     # no compiler, no Python headers, ...
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            _warn("compiling failed (%s)" % exc)


def ext_modules() -> list:
    if os.environ.get("TCPFLOW_CHECK_PURE", "") not in ("", "0"):
        return _pure()
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return _pure()
    try:
        return mypycify(["analyzer/%s.py" % name for name in COMPILED],
                        group_name="analyzer._compiled", opt_level="3")
    except (Exception, SystemExit) as exc:          # mypy reports type errors by exiting
        _warn("mypyc could not translate the sources (%s)" % exc)
        return _pure()


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
