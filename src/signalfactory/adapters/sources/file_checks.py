"""What a bar file must be before its columns are read: UTF-8 text with a header line (CSV),
or flat columns of numbers, text and times (Parquet).

Each refusal names the problem the way a person can fix it (the encoding to save as, the row
of a stray byte, the column that holds lists) and echoes little of the file: a 10 MB line or
cell makes a message of a few hundred characters.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Final

import pyarrow as pa

from signalfactory.domain.errors import BadInputError, excerpt

SNIFF_BYTES: Final = 64 << 10
MAX_HEADER_BYTES: Final = 64 << 10
_SHOWN_NAMES: Final = 12
_SAVE_AS_UTF8: Final = "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and ingest it again"
_BOMS: Final = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
_MAGIC: Final = ((b"PAR1", "a Parquet file; name it .parquet or pass --format parquet"),
                 (b"\x1f\x8b", "compressed (gzip); decompress it first"),
                 (b"PK\x03\x04", "compressed (zip, or a spreadsheet such as .xlsx); export "
                                 "or extract it as a CSV file first"),
                 (b"BZh", "compressed (bzip2); decompress it first"),
                 (b"\xfd7zXZ", "compressed (xz); decompress it first"))


def check_csv_text(path: Path, source: str) -> str:
    """The header line of a CSV file after checking that the file is UTF-8 text."""
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise BadInputError(f"cannot read the file: {exc.strerror}", source=source) from exc
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise BadInputError(f"the file is {what}", source=source, rule="bad-encoding")
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise BadInputError(f"the file is {name} encoded; {_SAVE_AS_UTF8}", source=source,
                                rule="bad-encoding")
    if b"\x00" in head:
        # ASCII text in UTF-16 has every other byte zero; anything else with NULs is binary
        odd, even = head[1::2], head[0::2]
        if head and (odd.count(0) > 0.4 * len(odd) or even.count(0) > 0.4 * len(even)):
            raise BadInputError(f"the file looks UTF-16 encoded (without a byte order mark); "
                                f"{_SAVE_AS_UTF8}", source=source, rule="bad-encoding")
        raise BadInputError("the file looks binary (it holds NUL bytes), not CSV text; export "
                            "the data as a UTF-8 CSV file, or pass --format parquet if it is "
                            "Parquet", source=source, rule="bad-encoding")
    line_end = head.find(b"\n")
    if line_end < 0 and len(head) >= MAX_HEADER_BYTES:
        raise BadInputError(f"the first line is longer than {MAX_HEADER_BYTES:,} bytes; a CSV "
                            "file starts with a header line naming its columns, such as "
                            "date,open,high,low,close,volume", source=source, row=1,
                            rule="missing-column")
    header = head if line_end < 0 else head[:line_end + 1]
    _raise_if_not_utf8(header, source, first_row=1, final=True)
    return header.decode("utf-8-sig")


def first_bad_utf8(path: Path, source: str, names: list[str],
                   chunk_bytes: int = 1 << 20) -> None:
    """Raise ``bad-encoding`` naming the row and column of the first byte that is not UTF-8
    (called when the reader has found one; reads the file once more)."""
    with path.open("rb") as fh:
        rows_before, carry = 0, b""
        while chunk := fh.read(chunk_bytes):
            data = carry + chunk
            # a multi-byte character cut by the chunk boundary is completed by the next one
            cut = _incomplete_tail(data)
            body, carry = data[:len(data) - cut], data[len(data) - cut:]
            _raise_if_not_utf8(body, source, first_row=rows_before + 1, final=False,
                               names=names)
            rows_before += body.count(b"\n")
        _raise_if_not_utf8(carry, source, first_row=rows_before + 1, final=True, names=names)


def _incomplete_tail(data: bytes) -> int:
    """Bytes at the end of ``data`` that start a UTF-8 character not yet complete."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else (
                4 if byte & 0xF8 == 0xF0 else 1)
            return back if needed > back else 0
    return 0


def _raise_if_not_utf8(data: bytes, source: str, *, first_row: int, final: bool,
                       names: list[str] | None = None) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not final and exc.reason == "unexpected end of data":
            return
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        row = first_row + data.count(b"\n", 0, exc.start)
        column = data.count(b",", line_start, exc.start)
        where = (f"column {excerpt(names[column], 30)}" if names and column < len(names)
                 else f"column {column + 1}")
        byte = data[exc.start]
        raise BadInputError(f"byte 0x{byte:02X} in {where} is not UTF-8 (the file "
                            f"is in another encoding, such as Latin-1 or Windows-1252); "
                            f"{_SAVE_AS_UTF8}", source=source, row=row,
                            rule="bad-encoding") from None


def column_list(names: list[str]) -> str:
    """The columns of a file as a message lists them: a few, each cut short."""
    shown = ", ".join(excerpt(n, 30) for n in names[:_SHOWN_NAMES])
    more = f" and {len(names) - _SHOWN_NAMES:,} more" if len(names) > _SHOWN_NAMES else ""
    return shown + more if names else "no columns"


def check_flat_columns(table: pa.Table, mapping: dict[str, str], source: str) -> None:
    """Refuse a Parquet column that holds lists, structs or maps rather than one value."""
    for field, column in mapping.items():
        kind = table.schema.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_nested(kind) or not (
                pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_decimal(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind) or pa.types.is_timestamp(kind)
                or pa.types.is_date(kind) or pa.types.is_null(kind)):
            wanted = ("a date, time or epoch number" if field == "ts" else
                      "a text" if field == "symbol" else "a number")
            raise BadInputError(f"column {excerpt(column, 30)} ({field}) holds "
                                f"{excerpt(str(kind), 40)} values; each cell must be "
                                f"{wanted}, not a list or a record", source=source,
                                rule="unsupported-column-type")
