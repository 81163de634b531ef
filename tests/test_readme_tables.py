"""benchmarks/readme_tables.py: README results section regenerated from a run's tables.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import readme_tables  # noqa: E402
from reavise.bench.tables import tables_markdown  # noqa: E402


def _rows() -> list[dict]:
    rows = []
    for method, base in (("a-vae/mcem", 1.0), ("av-cvae/mcem", 3.0)):
        for snr in (-5.0, 0.0):
            for vis, sev in (("clean", 0.0), ("occlusion", 0.7)):
                for noise in ("white", "babble"):
                    v = base + snr / 5 + (0.5 if noise == "white" else 0.0)
                    rows.append({
                        "method": method, "snr_db": snr, "visual": vis, "severity": sev,
                        "noise_type": noise, "si_sdr": v, "pesq": 1.5, "estoi": 0.5,
                        "stoi": 0.6, "si_sdr_i": v - snr, "pesq_i": 0.2, "estoi_i": 0.1,
                        "wall_s": 1.0, "rtf": 0.3, "duration_s": 3.0, "source_id": "u1",
                    })  # fmt: skip
    return rows


@pytest.fixture
def run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "tables.md").write_text(tables_markdown(_rows(), title="t"))
    rec = {"timings": {"total_s": 1800.0}, "machine": {"cpu_count": 2, "workers": 2}}
    (out / "benchmark.json").write_text(json.dumps(rec))
    return out


def test_replaces_only_between_markers(run: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\nbefore\n<!-- paper-results:start -->\nold text\n<!-- paper-results:end -->\nafter\n"
    )
    assert readme_tables.main([str(run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- paper-results:start -->\n")
    assert text.endswith("<!-- paper-results:end -->\nafter\n")
    assert "old text" not in text
    assert "30.0 min wall time" in text
    # the -5 dB / clean column holds the mean over noise types: (base - 1 + 0.25)
    line = next(ln for ln in text.splitlines() if ln.startswith("| av-cvae/mcem") and "±" in ln)
    assert "2.25" in line
    assert "#### SI-SDR (dB) per method, SNR and visual condition" in text
    # idempotent, and --check agrees
    assert readme_tables.main([str(run), "--readme", str(readme), "--check"]) == 0
    again = readme.read_text()
    assert readme_tables.main([str(run), "--readme", str(readme)]) == 0
    assert readme.read_text() == again


def test_a_second_marker_pair_leaves_the_first_alone(run: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    first = "<!-- paper-results:start -->\nkeep me\n<!-- paper-results:end -->\n"
    readme.write_text(first + "<!-- lowsnr-results:start -->\nold\n<!-- lowsnr-results:end -->\n")
    assert readme_tables.main([str(run), "--readme", str(readme), "--marker", "lowsnr"]) == 0
    text = readme.read_text()
    assert text.startswith(first) and "old" not in text and "2.25" in text


def test_condition_columns_are_ordered_by_snr(run: Path):
    text = readme_tables.results_section(run)
    head = next(ln for ln in text.splitlines() if ln.startswith("| method") and "dB /" in ln)
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[1:5] == ["-5 dB / clean", "-5 dB / occlusion:0.7", "0 dB / clean",
                         "0 dB / occlusion:0.7"]  # fmt: skip
    assert text.count("#### ") == 4


def test_missing_markers_or_run_fail_clearly(run: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        readme_tables.main([str(run), "--readme", str(readme)])
    with pytest.raises(SystemExit, match="tables.md"):
        readme_tables.results_section(tmp_path / "nothing")


def test_chosen_or_all_tables_and_the_command_that_wrote_them(run: Path, tmp_path: Path):
    doc = tmp_path / "study.md"
    doc.write_text("<!-- s-results:start -->\n<!-- s-results:end -->\n")
    assert readme_tables.main([str(run), "--readme", str(doc), "--marker", "s", "--tables", "all"]) == 0
    text = doc.read_text()
    titles = list(readme_tables.split_tables((run / "tables.md").read_text()))
    assert all(f"#### {t}" in text for t in titles) and len(titles) > 4
    assert f"readme_tables.py {run.as_posix()} --readme {doc} --marker s --tables all`" in text
    assert readme_tables.main([str(run), "--readme", str(doc), "--marker", "s", "--tables", "Speed;All cond"]) == 0
    text = doc.read_text()
    assert text.index("#### Speed") < text.index("#### All conditions") and "per method, SNR" not in text
