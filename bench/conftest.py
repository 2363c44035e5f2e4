"""pytest setup of the benchmark suites: lets their modules import ``shapes`` and
``suite`` (this folder), prints the side-by-side summary of :mod:`suite` at the end of
the session and adds it to ``--benchmark-json`` (key ``qkernels_summary``).

This folder is not in the project's ``testpaths``: a plain ``python -m pytest`` does not
collect it. Run it with ``python -m pytest bench/ --benchmark-only``.
"""
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import suite  # noqa: E402  (needs the path above)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["qkernels_summary"] = {"clock": suite.clock(), "cpus": suite.CPUS, "versions": suite.versions(),
                                       "int8_peak": suite.int8_peak(), "rows": suite.summary_rows()}


@pytest.hookimpl(trylast=True)      # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter):
    if suite.RESULTS:
        terminalreporter.section("qkernels summary")
        for line in suite.format_summary(suite.summary_rows()):
            terminalreporter.write_line(line)
