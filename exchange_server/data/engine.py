"""The comparison engine: a persons list against one resource's dataset, in DuckDB.

A pure engine over files (no node wiring yet): :func:`match` reads a persons list (columns
``id_number``, ``name``, ``household_id``; Parquet or CSV) and a dataset of one catalog resource
(Parquet or CSV, columns named after the resource's information items), and writes

- ``results.<fmt>``: one row per matching record, or one ``no_record`` row for a person with
  none, restricted to the items the requester may see (:func:`~exchange_server.data.catalog.check_access`
  decides which); columns ``row_no``, ``id_number``, ``name``, ``household_id``, ``status``,
  then the visible items in catalog order. CSV (for people) comes in list order (``row_no``),
  a person's records by date; Parquet (for programs) in no particular order: sorting 1.8 M
  result rows by ``row_no`` costs about a tenth of a 1 M-person answer, and a program sorts
  or joins by ``row_no`` itself;
- ``households.<fmt>``: per household the number of persons, of persons with records, of
  records, and the sum of every visible numeric item.

ID numbers are compared trimmed and upper-cased (the check character ``x`` matches ``X``); a
blank one matches nothing. A person listed twice is matched once (the first listing;
``duplicates`` counts the rest).

On two cores, 1,000,000 persons against 20,000,000 stored records take 4.3–5 s with Parquet
results, about as long as the equivalent hand-written DuckDB join on plain Parquet
(bench/compare.py).

Time range (部省 附表 注4), applied to the resource's time item:

- empty: the latest records of each person (every record on their most recent date);
- ``YYYY/MM/DD``: the state on that day, i.e. each person's latest records on or before it;
- ``YYYY/MM/DD-YYYY/MM/DD``: every record dated within the range, both ends included.

A resource without a time item accepts only an empty range and returns every record.
"""

# SQL is assembled here on purpose: identifiers are quoted (_q), text and paths are literals
# with quotes doubled (_lit), numbers pass through int(); no value is spliced in raw.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from exchange_common.catalog import NUMERIC_TYPES, ItemType, Resource
from exchange_common.errors import InputError
from exchange_common.masking import mask_text, peer_token
from exchange_common.tables.formulas import spreadsheet_safe_sql
from exchange_common.tables.source import CSV_DIALECT
from exchange_common.tables.sql import clean_sql, date_sql, quote_ident, quote_literal
from exchange_server.data.datasets import parquet_source
from exchange_server.data.duck import KEY_NAME, connect

__all__ = [
    "PERSON_COLUMNS",
    "Comparison",
    "MatchResult",
    "TimeRange",
    "engine_error",
    "match",
    "parse_time_range",
    "time_where",
]

PERSON_COLUMNS = ("id_number", "name", "household_id")
OutputFormat = Literal["parquet", "csv"]

_DATE_RE = r"(\d{4})/(\d{2})/(\d{2})"


@dataclass(frozen=True)
class TimeRange:
    """A parsed time range: both None = latest; ``start == end`` from a single date = as of."""

    start: dt.date | None = None
    end: dt.date | None = None
    as_of: bool = False

    @property
    def latest(self) -> bool:
        """Whether this is the empty range (latest records)."""
        return self.end is None

    def __str__(self) -> str:
        if self.end is None:
            return ""
        if self.as_of or self.start is None:
            return f"{self.end:%Y/%m/%d}"
        return f"{self.start:%Y/%m/%d}-{self.end:%Y/%m/%d}"


def _date(parts: Sequence[str], text: str) -> dt.date:
    try:
        return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        raise InputError(
            f"time range {peer_token(text)}: no such date", code="E_TIME_RANGE"
        ) from None


def parse_time_range(text: str | None) -> TimeRange:
    """Parse ``""``, ``YYYY/MM/DD`` or ``YYYY/MM/DD-YYYY/MM/DD`` (E_TIME_RANGE otherwise)."""
    t = (text or "").strip()
    if not t:
        return TimeRange()
    if m := re.fullmatch(_DATE_RE, t):
        day = _date(m.groups(), t)
        return TimeRange(None, day, as_of=True)
    if m := re.fullmatch(rf"{_DATE_RE}\s*-\s*{_DATE_RE}", t):
        start, end = _date(m.groups()[:3], t), _date(m.groups()[3:], t)
        if start > end:
            raise InputError(f"time range {peer_token(t)}: start after end", code="E_TIME_RANGE")
        return TimeRange(start, end)
    raise InputError(
        f"time range {peer_token(t)}: expected YYYY/MM/DD, YYYY/MM/DD-YYYY/MM/DD or empty",
        code="E_TIME_RANGE",
    )


@dataclass
class MatchResult:
    """What :func:`match` did: counts, output files and seconds per stage."""

    persons: int
    duplicates: int
    matched_persons: int
    records: int
    households: int
    results: Path
    household_summary: Path
    items: tuple[str, ...]
    time_range: str
    timings: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "persons": self.persons,
            "duplicates": self.duplicates,
            "matched_persons": self.matched_persons,
            "no_record": self.persons - self.matched_persons,
            "records": self.records,
            "households": self.households,
            "results": str(self.results),
            "household_summary": str(self.household_summary),
            "items": list(self.items),
            "time_range": self.time_range,
            "timings": self.timings,
        }


_q, _lit = quote_ident, quote_literal


def time_where(tr: TimeRange, date: str) -> str:
    """``WHERE`` clause keeping the rows whose DATE expression ``date`` lies in ``tr``'s range
    (``<= end``, and ``>= start`` for a closed range); empty for the latest records."""
    if tr.end is None:
        return ""
    where = f"WHERE {date} <= DATE {_lit(tr.end.isoformat())}"
    if tr.start is not None:
        where += f" AND {date} >= DATE {_lit(tr.start.isoformat())}"
    return where


def _reader(
    path: Path,
    *,
    varchar: Sequence[str] = (),
    all_varchar: bool = False,
    row_numbers: bool = False,
    encrypted: bool = False,
) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such file", code="E_NOT_FOUND")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        extra = ", file_row_number = true" if row_numbers else ""
        if encrypted:
            extra += f", encryption_config = {{footer_key: {_lit(KEY_NAME)}}}"
        return f"read_parquet({_lit(str(path))}{extra})"
    if suffix in {".csv", ".txt"}:
        opts = CSV_DIALECT
        if all_varchar:
            opts += ", all_varchar = true"
        elif varchar:
            types = ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in varchar)
            opts += f", types = {{{types}}}"
        return f"read_csv({_lit(str(path))}, {opts})"
    raise InputError(f"{path}: expected a .parquet or .csv file", code="E_FORMAT")


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _date_sql(column: str, column_type: str) -> str:
    """The column as a DATE: DATE/TIMESTAMP as is, text as YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD
    (anything else NULL, see :func:`~exchange_common.tables.sql.date_sql`)."""
    c = _q(column)
    if column_type == "DATE":
        return c
    if column_type.startswith("TIMESTAMP"):
        return f"CAST({c} AS DATE)"
    return date_sql(f"trim(CAST({c} AS VARCHAR))")


def _normalised(expr: str) -> str:
    """SQL: the ID number ``expr`` as compared, ``upper(trim(expr))``, NULL when blank (a blank
    ID matches nothing).

    The trimming is :func:`~exchange_common.tables.sql.clean_sql`'s (``trim`` only on values with
    a space at either end).
    """
    return f"upper({clean_sql(expr)})"


@dataclass
class Comparison:
    """One comparison's settings, checked (:meth:`of`): the resource, the visible items, the
    time range, the output files and the stage timings. The stages run on one connection:
    :meth:`load_persons`, then the records of those persons (from a dataset, :func:`match`, or
    from a provider's answer, :mod:`exchange_server.data.answers`), then :meth:`finish`."""

    resource: Resource
    visible: list[str]
    tr: TimeRange
    fmt: OutputFormat
    results: Path
    summary: Path
    timings: dict[str, float] = field(default_factory=dict)
    _clock: float = field(default_factory=time.perf_counter)
    _persons: tuple[int, int] = (0, 0)

    @classmethod
    def of(
        cls,
        resource: Resource,
        items: Sequence[str],
        out_dir: Path,
        time_range: TimeRange | str | None,
        fmt: OutputFormat,
    ) -> Comparison:
        """Check ``items`` and ``time_range`` against ``resource`` (InputError ``E_ITEM``,
        ``E_TIME_RANGE``) and make ``out_dir``."""
        tr = time_range if isinstance(time_range, TimeRange) else parse_time_range(time_range)
        unknown = [i for i in items if resource.item(i) is None]
        if unknown:
            shown = ", ".join(peer_token(i) for i in unknown)
            raise InputError(f"{resource.code} has no items {shown}", code="E_ITEM")
        if not tr.latest and resource.time_item is None:
            raise InputError(
                f"{resource.code} has no time item: only an empty time range is possible",
                code="E_TIME_RANGE",
            )
        visible = [n for n in resource.item_names if n in set(items) and n != resource.key_item]
        out_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            resource, visible, tr, fmt, out_dir / f"results.{fmt}", out_dir / f"households.{fmt}"
        )

    def stage(self, name: str) -> None:
        """Record the seconds since the previous stage under ``name``."""
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 4)
        self._clock = now

    def load_persons(
        self,
        con: duckdb.DuckDBPyConnection,
        persons: Path,
        *,
        encrypted: bool,
        threads: int | None,
    ) -> None:
        """TEMP TABLE ``persons`` (``row_no``, ``id_number``, ``name``, ``household_id``):
        normalised and numbered; a person listed twice is kept once (first listing)."""
        p_src = _reader(persons, all_varchar=True, row_numbers=True, encrypted=encrypted)
        p_cols = _columns(con, p_src)
        missing = [c for c in PERSON_COLUMNS if c not in p_cols]
        if missing:
            raise InputError(f"{persons}: missing columns {missing}", code="E_SCHEMA")
        if "file_row_number" in p_cols:  # Parquet: the row's position in the file
            row_no = "file_row_number + 1"
        else:  # CSV: numbered by a single-threaded, order-preserving scan
            row_no = "row_number() OVER ()"
            con.execute("SET threads = 1")
            con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"CREATE TEMP TABLE persons AS SELECT CAST({row_no} AS BIGINT) AS row_no, "
            f"{_normalised('CAST(id_number AS VARCHAR)')} AS id_number, "
            "CAST(name AS VARCHAR) AS name, CAST(household_id AS VARCHAR) AS household_id "
            f"FROM {p_src}"
        )
        con.execute(f"SET threads = {int(threads)}" if threads else "RESET threads")
        con.execute("SET preserve_insertion_order = false")
        # NULL IDs group together, as one person. Lists rarely repeat anyone: the grouping runs
        # only when one does.
        (n_all, n_persons) = con.execute(
            "SELECT count(*), count(DISTINCT id_number) + CAST(count(*) > count(id_number) AS INT) "
            "FROM persons"
        ).fetchone() or (0, 0)
        if n_all != n_persons:
            con.execute("ALTER TABLE persons RENAME TO persons_all")
            con.execute(
                "CREATE TEMP TABLE persons AS SELECT min(row_no) AS row_no, id_number, "
                "arg_min(name, row_no) AS name, arg_min(household_id, row_no) AS household_id "
                "FROM persons_all GROUP BY id_number"
            )
            con.execute("DROP TABLE persons_all")
        self._persons = (int(n_all), int(n_persons))
        self.stage("load_persons")

    def finish(self, con: duckdb.DuckDBPyConnection, records: str) -> MatchResult:
        """Keep the ``records`` (SQL: ``_pid`` = a person's ``row_no``, ``_date``, the visible
        items; already within the time range) the range asks for, and write both files."""
        resource, visible, tr, fmt = self.resource, self.visible, self.tr, self.fmt
        if (tr.latest or tr.as_of) and resource.time_item:
            # every record on each person's latest date. Most persons have one record: only
            # those with several are grouped down to their latest date (a small table the
            # rest is probed against). A window over the records would carry every column
            # through its sort (about 1.4 times the CPU).
            con.execute(
                f"CREATE TEMP TABLE hits AS WITH r AS MATERIALIZED ({records}), "
                "m AS MATERIALIZED (SELECT _pid, max(_date) AS _date FROM r GROUP BY _pid "
                "HAVING count(*) > 1) "
                "SELECT r.* FROM r ANTI JOIN m ON r._pid = m._pid UNION ALL "
                "SELECT r.* FROM r SEMI JOIN m ON r._pid = m._pid "
                "AND r._date IS NOT DISTINCT FROM m._date"
            )
        else:
            con.execute(f"CREATE TEMP TABLE hits AS {records}")
        self.stage("match")

        # results: every person, their records or one no_record row; CSV in list order and
        # within a person by date (the latest records of a person all share one date)
        def text(expr: str, name: str) -> str:
            # a CSV is for people: text a spreadsheet would run is neutralised (formulas.py)
            shown = spreadsheet_safe_sql(expr) if fmt == "csv" else expr
            return f"{shown} AS {_q(name)}"

        out_items = "".join(
            ", " + (text(f"h.{_q(n)}", n) if _is_text(resource, n) else f"h.{_q(n)}")
            for n in visible
        )
        order = "p.row_no" if tr.latest or tr.as_of else "p.row_no, h._date"
        order_by = f"ORDER BY {order}" if fmt == "csv" else ""
        fmt_sql = "FORMAT parquet, COMPRESSION snappy" if fmt == "parquet" else "FORMAT csv, HEADER"
        people = ", ".join(text(f"p.{c}", c) for c in PERSON_COLUMNS)
        con.execute(
            f"COPY (SELECT p.row_no, {people}, "
            f"CASE WHEN h._pid IS NULL THEN 'no_record' ELSE 'match' END AS status{out_items} "
            f"FROM persons p LEFT JOIN hits h ON h._pid = p.row_no "
            f"{order_by}) TO {_lit(str(self.results))} ({fmt_sql})"
        )
        self.stage("write_results")

        # household summary, from per-person totals (no DISTINCT over the joined records)
        numeric = [n for n in visible if (it := resource.item(n)) and it.type in NUMERIC_TYPES]
        con.execute(
            "CREATE TEMP TABLE per_person AS SELECT _pid, count(*) AS records"
            + "".join(f", sum({_q(n)}) AS {_q(n)}" for n in numeric)
            + " FROM hits GROUP BY _pid"
        )
        sums = "".join(f", sum(r.{_q(n)}) AS {_q(n + '_合计')}" for n in numeric)
        con.execute(
            f"COPY (SELECT {text('p.household_id', 'household_id')}, "
            "count(p.id_number) AS persons, "
            f"count(r._pid) AS persons_with_records, "
            f"CAST(coalesce(sum(r.records), 0) AS BIGINT) AS records{sums} "
            f"FROM persons p LEFT JOIN per_person r ON r._pid = p.row_no "
            f"GROUP BY p.household_id ORDER BY p.household_id) "
            f"TO {_lit(str(self.summary))} ({fmt_sql})"
        )
        (n_matched, n_records) = con.execute(
            "SELECT count(*), coalesce(sum(records), 0) FROM per_person"
        ).fetchone() or (0, 0)
        (n_households,) = con.execute(
            "SELECT count(DISTINCT household_id) FROM persons"
        ).fetchone() or (0,)
        self.stage("write_summary")
        n_all, n_persons = self._persons
        return MatchResult(
            persons=n_persons,
            duplicates=n_all - n_persons,
            matched_persons=int(n_matched),
            records=int(n_records),
            households=int(n_households),
            results=self.results,
            household_summary=self.summary,
            items=tuple(visible),
            time_range=str(tr),
            timings=self.timings,
        )


def _is_text(resource: Resource, name: str) -> bool:
    item = resource.item(name)
    return item is not None and item.type not in NUMERIC_TYPES and item.type is not ItemType.DATE


def engine_error(e: duckdb.Error) -> InputError:
    """The InputError ``E_ENGINE`` for a DuckDB failure during a comparison; DuckDB quotes
    offending values, so anything that could be an ID number is masked in the detail."""
    detail = mask_text(str(e).splitlines()[0])
    return InputError(f"comparison failed: {type(e).__name__}", code="E_ENGINE", detail=detail)


def match(
    persons: Path,
    dataset: Path | Sequence[Path],
    resource: Resource,
    items: Sequence[str],
    out_dir: Path,
    *,
    time_range: TimeRange | str | None = None,
    fmt: OutputFormat = "parquet",
    threads: int | None = None,
    memory_limit: str | None = None,
    data_key: str | None = None,
) -> MatchResult:
    """Match ``persons`` against ``dataset`` of ``resource`` and write the two result files.

    ``items`` are the visible items (from an allowed :func:`check_access` decision); the key
    item need not be among them. Raises InputError for a bad file, a missing column or a time
    range the resource cannot honour.

    With ``data_key``, ``persons`` (if Parquet) and ``dataset`` are encrypted under the node data
    key, and ``dataset`` may be several files (a stored version and its increments, from
    :meth:`~exchange_server.data.datasets.DatasetStore.current_files`); only valid rows are read, and
    their key is compared as stored (ingest stored it checked and upper-case). A plain
    ``dataset`` file has its key normalised like the persons' ID numbers.

    Stages (``timings``): ``load_persons`` (normalise, number, drop repeated listings),
    ``match`` (the records of those persons in the time range, one scan of the dataset),
    ``write_results`` (every person: records or one ``no_record`` row; CSV in list order) and
    ``write_summary`` (per-person totals, then per household).
    """
    comparison = Comparison.of(resource, items, out_dir, time_range, fmt)
    con = connect(data_key, threads=threads, memory_limit=memory_limit)
    try:
        # Every statement that needs an order says so (ORDER BY): let DuckDB parallelise
        # the rest freely.
        con.execute("SET preserve_insertion_order = false")
        comparison.load_persons(con, persons, encrypted=data_key is not None, threads=threads)

        # records of those persons (tagged with the person's row number: the later joins and
        # groupings then work on integers, not on 18-character strings), filtered by time
        if data_key is not None:
            files = [dataset] if isinstance(dataset, Path) else list(dataset)
            if not files:
                raise InputError(f"{resource.code}: no data has been pushed", code="E_NO_DATA")
            d_src = parquet_source(files)
        elif isinstance(dataset, Path):
            d_src = _reader(dataset, varchar=[resource.key_item])
        else:
            raise InputError("several dataset files need the data key", code="E_FORMAT")
        d_cols = _columns(con, d_src)
        visible = comparison.visible
        needed = [resource.key_item, *visible]
        if resource.time_item:
            needed.append(resource.time_item)
        missing = [c for c in dict.fromkeys(needed) if c not in d_cols]
        if missing:
            raise InputError(f"{dataset}: missing columns {missing}", code="E_SCHEMA")
        key = _q(resource.key_item)
        if data_key is None:
            key = _normalised(f"CAST({key} AS VARCHAR)")
        date_expr = (
            _date_sql(resource.time_item, d_cols[resource.time_item])
            if resource.time_item
            else "CAST(NULL AS DATE)"
        )
        selected = "".join(f", {_q(n)}" for n in visible)
        where = time_where(comparison.tr, "d._date")
        records = (
            f"SELECT p.row_no AS _pid, d._date{selected} "
            f"FROM (SELECT {key} AS _key, {date_expr} AS _date{selected} FROM {d_src}) d "
            f"JOIN persons p ON d._key = p.id_number {where}"
        )
        return comparison.finish(con, records)
    except duckdb.Error as e:
        raise engine_error(e) from None
    finally:
        con.close()
