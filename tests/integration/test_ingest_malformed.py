"""Every validation rule, over both backends: exit 2, a message naming file/row/rule, and a
store whose checksum is identical before and after."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import cli, fingerprint

HEADER = "date,open,high,low,close,volume\n"
GOOD = ["2024-01-02,10,11,9,10.5,1000", "2024-01-03,10.5,11.5,10,11,1200",
        "2024-01-04,11,12,10.5,11.5,900"]


def rows(*lines: str) -> str:
    return HEADER + "\n".join(lines) + "\n"


def with_row(i: int, line: str) -> str:
    body = list(GOOD)
    body[i] = line
    return rows(*body)


# (case id, file name, content, expected rule, expected row or None, words in the message)
CASES: list[tuple[str, str, str, str, int | None, str]] = [
    ("no-close", "a.csv", "date,open,high,low,volume\n2024-01-02,1,2,1,5\n",
     "missing-column", 1, "close"),
    ("no-date", "a.csv", "open,high,low,close,volume\n1,2,1,1,5\n", "missing-column", 1,
     "date"),
    ("no-volume", "a.csv", "date,open,high,low,close\n2024-01-02,1,2,1,1\n",
     "missing-column", 1, "volume"),
    ("empty-file", "a.csv", "", "missing-column", 1, "missing column"),
    ("header-only", "a.csv", HEADER, "empty-file", None, "no data rows"),
    ("text-open", "a.csv", with_row(1, "2024-01-03,abc,11.5,10,11,1200"), "bad-number", 3,
     "'abc'"),
    ("text-volume", "a.csv", with_row(2, "2024-01-04,11,12,10.5,11.5,lots"), "bad-number", 4,
     "volume"),
    ("comma-decimal", "a.csv", with_row(0, '2024-01-02,10,11,9,"10,5",1000'), "bad-number", 2,
     "close"),
    ("bad-date", "a.csv", with_row(1, "2024-13-45,10.5,11.5,10,11,1200"), "bad-timestamp", 3,
     "2024-13-45"),
    ("word-date", "a.csv", with_row(0, "yesterday,10,11,9,10.5,1000"), "bad-timestamp", 2,
     "yesterday"),
    ("empty-date", "a.csv", with_row(2, ",11,12,10.5,11.5,900"), "missing-value", 4,
     "timestamp"),
    ("empty-close", "a.csv", with_row(1, "2024-01-03,10.5,11.5,10,,1200"), "missing-value", 3,
     "close"),
    ("nan-high", "a.csv", with_row(1, "2024-01-03,10.5,NaN,10,11,1200"), "missing-value", 3,
     "high"),
    ("inf-low", "a.csv", with_row(2, "2024-01-04,11,12,-inf,11.5,900"), "missing-value", 4,
     "low"),
    ("zero-open", "a.csv", with_row(0, "2024-01-02,0,11,9,10.5,1000"), "non-positive-price",
     2, "open"),
    ("negative-close", "a.csv", with_row(1, "2024-01-03,10.5,11.5,-1,-1,1200"),
     "non-positive-price", 3, "greater than zero"),
    ("zero-low", "a.csv", with_row(2, "2024-01-04,11,12,0,11.5,900"), "non-positive-price", 4,
     "low"),
    ("high-below-low", "a.csv", with_row(1, "2024-01-03,10.5,9,10,9.5,1200"),
     "high-below-low", 3, "high"),
    ("open-above-high", "a.csv", with_row(0, "2024-01-02,12,11,9,10.5,1000"),
     "open-outside-range", 2, "open"),
    ("open-below-low", "a.csv", with_row(2, "2024-01-04,10,12,10.5,11.5,900"),
     "open-outside-range", 4, "open"),
    ("close-above-high", "a.csv", with_row(1, "2024-01-03,10.5,11.5,10,12,1200"),
     "close-outside-range", 3, "close"),
    ("close-below-low", "a.csv", with_row(0, "2024-01-02,10,11,9,8.5,1000"),
     "close-outside-range", 2, "close"),
    ("negative-volume", "a.csv", with_row(2, "2024-01-04,11,12,10.5,11.5,-5"),
     "negative-volume", 4, "volume"),
    ("duplicate-ts", "a.csv", rows(GOOD[0], GOOD[1], GOOD[1]), "duplicate-timestamp", 4,
     "duplicate"),
    ("unsorted", "a.csv", rows(GOOD[0], GOOD[2], GOOD[1]), "unsorted-timestamps", 4, "sort"),
    ("reverse-order", "a.csv", rows(GOOD[2], GOOD[1], GOOD[0]), "unsorted-timestamps", 3,
     "earlier"),
    ("mixed-intraday", "a.csv", rows(GOOD[0], "2024-01-02 10:00:00,10,11,9,10.5,5", GOOD[1]),
     "mixed-timeframes", 3, "timeframe"),
    ("declared-1h-but-odd", "a.csv",
     rows("2024-01-02 10:00,10,11,9,10.5,5", "2024-01-02 11:00,10,11,9,10.5,5",
          "2024-01-02 11:30,10,11,9,10.5,5"), "mixed-timeframes", 4, "1h"),
    ("multi-symbol-dup", "m.csv",
     "symbol,date,open,high,low,close,volume\nAAA,2024-01-02,10,11,9,10.5,1\n"
     "BBB,2024-01-02,10,11,9,10.5,1\nAAA,2024-01-02,10,11,9,10.5,1\n", "duplicate-timestamp",
     4, "AAA"),
    ("multi-symbol-unsorted", "m.csv",
     "ticker,date,open,high,low,close,volume\nAAA,2024-01-03,10,11,9,10.5,1\n"
     "BBB,2024-01-02,10,11,9,10.5,1\nAAA,2024-01-02,10,11,9,10.5,1\n", "unsorted-timestamps",
     4, "sort"),
    ("empty-symbol", "m.csv",
     "symbol,date,open,high,low,close,volume\n,2024-01-02,10,11,9,10.5,1\n", "bad-symbol", 2,
     "symbol"),
    ("semicolon-separated", "a.csv", "date;open;high;low;close;volume\n2024-01-02;1;2;1;1;5\n",
     "missing-column", 1, "missing column"),
    ("unknown-extension", "a.json", rows(*GOOD), "format", None, "--format"),
]


def _parquet_case(path: Path) -> None:
    table = pa.table({"Timestamp": pa.array([1704153600, 1704240000, 1704326400]),
                      "Open": [10.0, 10.5, 11.0], "High": [11.0, 11.5, 12.0],
                      "Low": [9.0, 10.0, 10.5], "Close": [10.5, 11.0, 13.0],
                      "Volume": [1000.0, 1200.0, 900.0]})
    pq.write_table(table, path)


@pytest.fixture
def seeded_store(sf_env: dict[str, str], tmp_path: Path) -> dict[str, object]:
    good = tmp_path / "seed.csv"
    good.write_text(rows(*GOOD))
    assert cli("ingest", str(good), "--symbol", "SEED").exit_code == 0
    assert cli("sample", "--symbols", "3", "--bars", "50").exit_code == 0
    return fingerprint()


def test_there_are_at_least_thirty_malformed_files() -> None:
    assert len(CASES) + 1 >= 30
    covered = {c[3] for c in CASES}
    from signalfactory.domain.bar_validation import RULES
    from tests.integration.test_ingest_hostile_files import RULES_COVERED

    covered |= RULES_COVERED  # encodings, binary data, nested Parquet columns

    assert set(RULES) <= covered | {"format"}, set(RULES) - covered


@pytest.mark.parametrize(("case", "name", "content", "rule", "row", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_file_is_refused_and_store_unchanged(
        seeded_store: dict[str, object], tmp_path: Path, case: str, name: str, content: str,
        rule: str, row: int | None, words: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    extra = ["--timeframe", "1h"] if case == "declared-1h-but-odd" else []
    result = cli("ingest", str(path), *extra)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert name in message
    if rule != "format":
        assert f"[{rule}]" in message
    if row is not None:
        assert f"row {row} " in message
    assert words.lower() in message.lower()
    assert fingerprint() == seeded_store


def test_malformed_parquet_is_refused(seeded_store: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    _parquet_case(path)
    result = cli("ingest", str(path), "--symbol", "PQ")
    assert result.exit_code == 2
    assert "row 3 [close-outside-range]" in " ".join(result.output.split())
    assert fingerprint() == seeded_store


def test_one_bad_file_among_good_ones_stores_nothing(seeded_store: dict[str, object],
                                                     tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(rows(*GOOD))
    bad = tmp_path / "zzz.csv"
    bad.write_text(with_row(1, "2024-01-03,10.5,9,10,9.5,1200"))
    result = cli("ingest", str(good), str(bad))
    assert result.exit_code == 2
    assert fingerprint() == seeded_store
