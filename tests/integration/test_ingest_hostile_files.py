"""Files an adversarial audit fed to ``ingest``: wrong encodings, binary data, nested Parquet
columns, a 10 MB line. Each is refused with exit 2 and a short message that names the rule
and says what to fix (at most a few hundred characters of the file are echoed, however large
the offending cell or line), never a traceback; and nothing is stored."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import cli, fingerprint

HEADER = "symbol,date,open,high,low,close,volume\n"
GOOD_ROW = "AAA,2024-01-02,10,11,9,10.5,1\n"
#: the longest message any case may print (the file path not counted)
MAX_MESSAGE = 400


def _parquet(**columns: pa.Array | list[object]) -> Callable[[Path], None]:
    base: dict[str, pa.Array | list[object]] = {
        "date": [1704153600, 1704240000], "open": [1.0, 1.0], "high": [2.0, 2.0],
        "low": [1.0, 1.0], "close": [1.0, 1.5], "volume": [1.0, 1.0]}

    def write(path: Path) -> None:
        pq.write_table(pa.table({**base, **columns}), path)

    return write


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


# (case id, file name, writer, rule, words the message must hold)
CASES: list[tuple[str, str, Callable[[Path], None], str, str]] = [
    ("latin1-byte-in-symbol", "a.csv",
     _bytes((HEADER + GOOD_ROW).encode() + b"B\xe9B,2024-01-03,10,11,9,10.5,1\n"),
     "bad-encoding", "row 3"),
    ("latin1-byte-in-close", "a.csv",
     _bytes((HEADER + GOOD_ROW).encode() + b"BBB,2024-01-03,10,11,9,1\xe9,1\n"),
     "bad-encoding", "UTF-8"),
    ("latin1-byte-in-header", "a.csv",
     _bytes(b"symbol,d\xe9te,open,high,low,close,volume\n" + GOOD_ROW.encode()),
     "bad-encoding", "row 1"),
    ("utf16", "a.csv", _bytes((HEADER + GOOD_ROW).encode("utf-16")), "bad-encoding",
     "UTF-16"),
    ("utf16-without-bom", "a.csv", _bytes((HEADER + GOOD_ROW).encode("utf-16-le")),
     "bad-encoding", "UTF-16"),
    ("binary", "a.csv", _bytes(bytes(range(256)) * 40), "bad-encoding", "binary"),
    ("gzip", "a.csv", _bytes(gzip.compress((HEADER + GOOD_ROW).encode())), "bad-encoding",
     "compressed"),
    ("parquet-named-csv", "a.csv",
     lambda path: _parquet()(path), "bad-encoding", "--format parquet"),
    ("10-mb-single-line", "a.csv", _bytes(b"x," * 5_000_000), "missing-column",
     "header"),
    ("many-columns", "a.csv", _bytes((",".join(f"c{i}" for i in range(5000)) + "\n1\n")
                                     .encode()), "missing-column", "more"),
    ("1-mb-symbol", "a.csv",
     _bytes((HEADER + "A" * 1_000_000 + ",2024-01-02,10,11,9,10.5,1\n").encode()),
     "bad-symbol", "symbol"),
    ("1-mb-timestamp", "a.csv",
     _bytes((HEADER + "AAA," + "9" * 1_000_000 + "x,10,11,9,10.5,1\n").encode()),
     "bad-timestamp", "timestamp"),
    ("1-mb-number", "a.csv",
     _bytes((HEADER + "AAA,2024-01-02," + "x" * 1_000_000 + ",11,9,10.5,1\n").encode()),
     "bad-number", "open"),
    ("extra-cell", "a.csv", _bytes((HEADER + GOOD_ROW + "BBB,2024-01-02,10,11,9,10.5,1,"
                                    + "z" * 1_000_000 + "\n").encode()),
     "malformed-csv", "columns"),
    ("nested-list-close", "a.parquet", _parquet(close=pa.array([[1.0], [1.5]])),
     "unsupported-column-type", "close"),
    ("nested-list-date", "a.parquet", _parquet(date=pa.array([[1704153600], [1704240000]])),
     "unsupported-column-type", "date"),
    ("struct-symbol", "a.parquet", _parquet(symbol=pa.array([{"a": 1}, {"a": 2}])),
     "unsupported-column-type", "symbol"),
    ("binary-symbol-not-utf8", "a.parquet",
     _parquet(symbol=pa.array([b"A\xe9", b"B"], pa.binary())), "bad-encoding", "symbol"),
]
RULES_COVERED = {case[3] for case in CASES}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture
def seeded_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(home / "home"))
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", f"sqlite:///{home / 'sf.db'}")
    if not (home / "sf.db").exists():
        assert cli("sample", "--symbols", "2", "--bars", "30").exit_code == 0
    return fingerprint()


@pytest.mark.parametrize(("case", "name", "write", "rule", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_briefly_and_stores_nothing(
        seeded_store: dict[str, object], tmp_path: Path, case: str, name: str,
        write: Callable[[Path], None], rule: str, words: str) -> None:
    path = tmp_path / name
    write(path)
    result = cli("ingest", str(path))
    assert result.exit_code == 2, result.output[:500]
    message = " ".join(result.stderr.split())
    assert f"[{rule}]" in message, message[:500]
    assert words.lower() in message.lower(), message[:500]
    assert len(message.replace(str(path), "")) <= MAX_MESSAGE, message[:800]
    assert fingerprint() == seeded_store
