"""Each codec, both ways, in memory: no PostgreSQL server. SQLite evaluates the SQL each codec
generates; the expectations are PostgreSQL's own text forms ('t', trailing zeros trimmed)."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Boolean, Column, DateTime, Integer, String, Text

from todo_migration.convert import (
    Conversions,
    canonical_timestamp,
    codec_for,
    epoch_timestamp,
    in_encoding,
    real_text,
    register_sqlite_functions,
)


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    register_sqlite_functions(conn)
    return conn


def codec(kind, conversions: Conversions | None = None):
    return codec_for(Column("c", kind), conversions or Conversions())


def forward(db, c, value):
    """(text sent to PostgreSQL, the problem kind) for one stored SQLite value."""
    return db.execute(f"SELECT ({c.copy('?1')}), ({c.problem('?1')})", (value,)).fetchone()


def back(db, c, text):
    return db.execute(f"SELECT {c.to_sqlite('?1')}", (text,)).fetchone()[0]


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ("2024-03-01 12:30:00.123456", "2024-03-01 12:30:00.123456"),
        ("2024-03-01 12:30:00.120000", "2024-03-01 12:30:00.12"),
        ("2024-03-01 12:30:00.000000", "2024-03-01 12:30:00"),
        ("2024-03-01 12:30:00", "2024-03-01 12:30:00"),
        ("2024-03-01T12:30:00Z", "2024-03-01 12:30:00"),
        ("2024-03-01T12:30:00+05:30", "2024-03-01 07:00:00"),
        ("2024-03-01t12:30:00.5z", "2024-03-01 12:30:00.5"),  # RFC 3339 allows lowercase
        ("2024-03-01", "2024-03-01 00:00:00"),
    ],
)
def test_timestamps_travel_as_postgresql_prints_them_and_come_back_in_sqlalchemys_form(db, stored, sent):
    c = codec(DateTime())
    assert forward(db, c, stored) == (sent, None)
    assert back(db, c, sent) == canonical_timestamp(stored)  # six fractional digits, always


@pytest.mark.parametrize(
    "value",
    ["20240301T123000", "2024-03-01T12:30:00.1234567", "next tuesday", "2023-02-30 10:00:00", "2024-03-01 24:00:00",
     "2024-W10-1", "2024-061", " 2024-03-01", "2024-03-01T12:30:00+0100", "2024-03-01T12:30:00,5"],
)  # fmt: skip
def test_only_iso_extended_datetimes_are_read(db, value):
    assert forward(db, codec(DateTime()), value)[1] == "bad_datetime"


@pytest.mark.parametrize("value", [1730041281, 1730041281935, "1730041281935", 1730041281.5])
def test_epoch_numbers_are_refused_unless_the_unit_is_given(db, value):
    assert forward(db, codec(DateTime()), value)[1] == "epoch_number"


@pytest.mark.parametrize(
    ("unit", "value", "sent"),
    [
        ("milliseconds", 1730041281935, "2024-10-27 15:01:21.935"),
        ("milliseconds", "1730041281935", "2024-10-27 15:01:21.935"),
        ("seconds", 1730041281, "2024-10-27 15:01:21"),
        ("seconds", 1730041281.5, "2024-10-27 15:01:21.5"),
        ("seconds", 0, "1970-01-01 00:00:00"),
        ("seconds", -86400, "1969-12-31 00:00:00"),
    ],
)
def test_epoch_numbers_convert_exactly_with_the_unit(db, unit, value, sent):
    assert forward(db, codec(DateTime(), Conversions(epoch_unit=unit)), value) == (sent, None)


def test_an_epoch_finer_than_a_microsecond_is_refused_not_rounded():
    assert epoch_timestamp(1730041281.1234567, "seconds") is None
    assert epoch_timestamp(10**20, "seconds") is None  # past year 9999
    assert epoch_timestamp(float("inf"), "seconds") is None


@pytest.mark.parametrize(
    ("stored", "sent", "problem"),
    [
        (1, "t", None),
        (0, "f", None),
        ("true", "t", None),
        ("off", "f", None),
        ("maybe", None, "not_a_boolean"),
    ],
)
def test_booleans(db, stored, sent, problem):
    c = codec(Boolean())
    assert forward(db, c, stored) == (sent, problem)
    if sent is not None:
        assert back(db, c, sent) == (1 if sent == "t" else 0)


@pytest.mark.parametrize(
    ("stored", "sent", "problem"),
    [(42, "42", None), ("42", "42", None), (2**31 - 1, str(2**31 - 1), None), (-(2**31), str(-(2**31)), None),
     (2**31, None, "integer_out_of_range"), ("4x", None, "not_an_integer"), (1.5, None, "not_an_integer"),
     (2.0, "2", None), (-7.0, "-7", None), (float(2**31), None, "integer_out_of_range"),
     (1e300, None, "not_an_integer"), (float("inf"), None, "not_an_integer")],
)  # fmt: skip
def test_integers(db, stored, sent, problem):
    c = codec(Integer())
    got = forward(db, c, stored)
    assert got[1] == problem
    if sent is not None:
        assert got[0] == sent
        assert back(db, c, sent) == int(sent)


@pytest.mark.parametrize(
    ("stored", "sent", "problem"),
    [
        ("plain", "plain", None),
        (0.1 + 0.2, "0.30000000000000004", None),  # not SQLite's 15-digit '0.3'
        (12, "12", None),
        (float("inf"), None, "inexact_real"),
        (b"\x00\x01", None, "binary_in_text_column"),
        ("nul \x00 inside", None, "nul_byte"),
        ("x" * 31, None, "too_long"),
        ("é" * 30, "é" * 30, None),  # thirty characters, sixty bytes: fits varchar(30)
    ],
)
def test_text(db, stored, sent, problem):
    c = codec(String(30))
    got = forward(db, c, stored)
    assert got[1] == problem
    if sent is not None:
        assert got[0] == sent
        assert back(db, c, sent) == sent


def test_sql_ascii_counts_bytes_and_latin1_refuses_what_it_lacks(db):
    assert forward(db, codec(String(10), Conversions(target_encoding="SQL_ASCII")), "é" * 10)[1] == "too_long"
    latin1 = codec(Text(), Conversions(target_encoding="LATIN1"))
    assert forward(db, latin1, "Zoë")[1] is None
    assert forward(db, latin1, "ship it 🚀")[1] == "not_in_target_encoding"
    assert in_encoding("€".encode(), "cp1252") and not in_encoding("€".encode(), "latin-1")


def test_strip_nul_is_the_codecs_choice(db):
    assert forward(db, codec(Text(), Conversions(strip_nul=True)), "a\x00b") == ("ab", None)
    assert forward(db, codec(Text()), "a\x00b")[1] == "nul_byte"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_real_in_a_text_column_reads_back_as_the_same_number(value):
    assert float(real_text(value)) == value


@given(st.datetimes(min_value=__import__("datetime").datetime(1, 1, 1)))
def test_timestamps_round_trip(value):
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    c = codec(DateTime())
    stored = value.isoformat(sep=" ", timespec="microseconds")
    sent, problem = forward(db, c, stored)
    assert problem is None
    assert back(db, c, sent) == stored


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_integers_round_trip(value):
    db = sqlite3.connect(":memory:")
    c = codec(Integer())
    assert back(db, c, forward(db, c, value)[0]) == value


@given(st.text())
def test_text_round_trips_byte_for_byte(value):
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    c = codec(Text())
    sent, problem = forward(db, c, value)
    if "\x00" in value:
        assert problem == "nul_byte"
    else:
        assert problem is None and back(db, c, sent) == value


def test_infinity_has_no_exact_text():
    assert real_text(float("inf")) is None and real_text(-math.inf) is None
