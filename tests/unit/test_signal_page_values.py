"""A page's ``values`` parsed in one call give what parsing each row gives
(adapters/storage/signal_pages.py), whatever the texts hold."""

from __future__ import annotations

import pytest

from signalfactory.adapters.storage.signal_pages import _page_values, _values

PAGES = [
    ['{"a": 1.5, "b": -2.25}', '{"sma(close, 10)": 141.4041100000001}', "{}"],
    ['{"n": 5, "m": -3}', '{"x": 0.5}'],  # integers stored: floats out, in both ways
    ['{"a": NaN, "b": Infinity}', '{"c": 1.0}'],  # the json module's NaN: row by row
    [None, "", '{"a": 2.0}'],
    ["[]", '{"a": 2.0}'],  # not an object
    [],
]


@pytest.mark.parametrize("texts", PAGES)
def test_one_parse_of_a_page_is_each_rows_parse(texts: list[str | None]) -> None:
    together, alone = _page_values(texts), [_values(t) for t in texts]
    assert len(together) == len(alone)
    for a, b in zip(together, alone, strict=True):
        assert type(a) is type(b) and repr(a) == repr(b)
        if isinstance(a, dict):
            assert all(type(v) is float for v in a.values())
