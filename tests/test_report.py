"""`reavise report`: a static page whose tables, images and audio match the benchmark output.

The browser check needs Debian's ``chromium``; the Makefile's ``test`` target installs it
(``apt-get install -y --no-install-recommends chromium``). Here it is installed only if absent
and possible (root + apt-get), otherwise those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reavise.bench.report import write_report
from reavise.bench.tables import fmt, read_results, snr_label, visual_label
from reavise.metrics import summarize
from test_benchmark import tiny_benchmark

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr",
    "--v=0",
]  # fmt: skip


class _Page(HTMLParser):
    """Collects media sources and the cells of every results table (by table id)."""

    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("img", "audio", "source") and a.get("src"):
            self.srcs.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.srcs.append(a["href"])
        if tag == "table" and (a.get("id") or "").startswith("table-"):
            self._table = a["id"][6:]
            self.tables[self._table] = []
        if self._table and tag == "tr":
            self.tables[self._table].append([])
        if self._table and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = tiny_benchmark(tmp_path_factory)
    return write_report(run, run / "report")


def _check_tables(page: _Page, run: Path) -> None:
    """Every method x SNR / visual-condition cell equals the mean ± CI recomputed from the CSV."""
    rows = read_results(run / "results.csv")
    checks = [("snr-si_sdr_i", lambda r: snr_label(r["snr_db"])), ("visual-si_sdr_i", visual_label)]
    for key, by in checks:
        table = page.tables[key]
        header = table[0]
        assert len(table) == 1 + len({r["method"] for r in rows})
        for line in table[1:]:
            method = line[0]
            for col, cell in zip(header[1:], line[1:], strict=True):
                sel = [r for r in rows if r["method"] == method and (col == "all" or by(r) == col)]
                assert sel, (key, method, col)
                assert cell == fmt(summarize(sel, ["si_sdr_i"])["si_sdr_i"]), (key, method, col)
    overall = {line[0]: line for line in page.tables["overall"][1:]}
    for method in {r["method"] for r in rows}:
        sel = [r for r in rows if r["method"] == method]
        assert overall[method][1] == str(len(sel))
        assert overall[method][2] == fmt(summarize(sel, ["si_sdr"])["si_sdr"])


def test_report_files_tables_and_media(report):
    run = report.parent.parent
    page = _parse(report.read_text())
    _check_tables(page, run)
    assert set(page.tables) >= {"overall", "snr-si_sdr_i", "visual-si_sdr_i", "speed"}
    assert page.srcs, "no media in the page"
    for src in page.srcs:
        assert not re.match(r"^(https?:)?//", src), f"external resource {src}"
        assert (report.parent / src).is_file(), f"missing {src}"
    audio = [s for s in page.srcs if s.endswith(".wav")]
    assert len(audio) == 2 * 4  # 2 examples x (clean, noisy, oracle, tiny/vem)
    assert "img/snr.png" in page.srcs and "img/visual.png" in page.srcs
    # atomic rebuild: writing again replaces the folder and leaves no temp folders behind
    write_report(run, run / "report")
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]


def _chromium() -> str:
    """Path of chromium, installing the Debian package once if it is absent and we can."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs root + apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmds = [["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]]  # fmt: skip
    for cmd in cmds:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not install chromium ({exc})")
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
            pytest.skip(f"could not install chromium: {' '.join(cmd)} failed ({tail[0]})")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium package installed but no chromium binary found")
    return path


def _browse(chromium: str, page: Path, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """(DOM after loading, console messages) of ``page`` in headless chromium.

    Output goes to files, not pipes: chromium's helper processes (crashpad) may keep inherited
    pipes open after the browser exits, which would make ``subprocess.run`` wait for them.
    """
    out, err = tmp / "dom.html", tmp / "chromium.log"
    with open(out, "w") as fo, open(err, "w") as fe:
        res = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}",
             *(extra or ("--dump-dom",)), page.resolve().as_uri()],
            stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
    log = err.read_text(errors="replace")
    assert res.returncode == 0, log[-2000:]
    console = [ln for ln in log.splitlines() if ":CONSOLE" in ln]
    return out.read_text(errors="replace"), console


def test_report_loads_in_chromium_without_console_errors(report, tmp_path):
    chromium = _chromium()
    # control: the console capture does see a broken resource and a script error
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="nope.png"><script>undefinedFn()</script></body></html>')
    _, console = _browse(chromium, broken, tmp_path)
    assert console, "chromium console messages are not captured; the check below would be blind"
    dom, console = _browse(chromium, report, tmp_path)
    assert console == [], console
    page = _parse(dom)
    _check_tables(page, report.parent.parent)
    for src in page.srcs:
        assert (report.parent / src).is_file(), f"missing {src}"
    shot = tmp_path / "page.png"
    _browse(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1280,3000")
    assert shot.stat().st_size > 10_000
