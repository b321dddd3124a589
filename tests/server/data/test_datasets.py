"""Stored datasets: ingest checks, reject reasons, encryption at rest, versions, idempotency.

Real files, a real node home (tests/server/world.py) and real DuckDB; nothing is mocked.
"""

# ruff: noqa: S608

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy.exc import IntegrityError

from exchange_client.tables import validate_table
from exchange_common.catalog import Resource, parse_catalog
from exchange_common.errors import InputError
from exchange_common.idnumber import check_character
from exchange_common.tables.rows import MAX_REJECT_SAMPLES
from exchange_server.data.datasets import DatasetStore, IngestReport, parquet_source
from exchange_server.data.duck import connect
from exchange_server.store.models import DatasetVersion
from tests.conftest import CAFixture
from tests.server.world import World, build_world

CATALOG = """
[[resource]]
code = "RS-T"
name = "社会保险（测试）"
classification = "人社"
provider = "RS330100"
format = "csv"
update_period = "每月"
sharing_type = "conditional"
sharing_conditions = "持授权"
sharing_method = "批量比对"
source_system = "人社系统"
security_level = 3
key_item = "公民身份号码"
time_item = "数据日期"
[[resource.item]]
name = "公民身份号码"
type = "id_number"
[[resource.item]]
name = "姓名"
required = true
[[resource.item]]
name = "险种类型"
type = "code"
values = ["基本养老保险", "失业保险"]
[[resource.item]]
name = "待遇领取金额"
type = "decimal"
[[resource.item]]
name = "缴费月数"
type = "integer"
[[resource.item]]
name = "数据日期"
type = "date"
[[resource.item]]
name = "备注"
[[resource.scope]]
departments = ["MZ*"]
"""

HEADER = ["公民身份号码", "姓名", "险种类型", "待遇领取金额", "缴费月数", "数据日期", "备注"]


def _id(body: str) -> str:
    return body + check_character(body)


def _x_id(prefix: str) -> str:
    """A valid number ending in X: the first of prefix + one digit whose check character is X."""
    return next(_id(f"{prefix}{d}") for d in range(10) if check_character(f"{prefix}{d}") == "X")


A = _id("33010219800101001")
B = _id("33010219900202002")
X = _x_id("4206251975030300")
FEB30 = _id("33010219900230003")  # right check character, no such day
OLD = _id("33010218790101004")  # born before 1880
NOWHERE = _id("99010519800101005")  # 990105 was never a region code
FUTURE = _id("33010220261123006")  # born after the day of the push (2026-11-22)
C = _id("11010519491231002")  # the standard's example; pushed in its 15-digit form
BAD_SUM = A[:17] + ("1" if A[17] != "1" else "2")
assert X.endswith("X")


def _row(ident: str, **kw: str) -> list[str]:
    values = {
        "姓名": "张伟",
        "险种类型": "基本养老保险",
        "待遇领取金额": "1000.50",
        "缴费月数": "12",
        "数据日期": "2024-03-01",
        "备注": "",
    }
    values.update(kw)
    return [ident, *(values[h] for h in HEADER[1:])]


def _csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def resource() -> Resource:
    res = parse_catalog(CATALOG).resource("RS-T")
    assert res is not None
    return res


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> World:
    return build_world(tmp_path, test_ca)


def _ingest(
    store: DatasetStore,
    resource: Resource,
    table: Path,
    *,
    mode: str = "full",
    bundle_id: str | None = None,
) -> IngestReport:
    work = table.parent / f"work-{uuid.uuid4().hex}"
    work.mkdir()
    return store.ingest(
        resource,
        table,
        bundle_id=bundle_id or str(uuid.uuid4()),
        provider="RS330100",
        mode=mode,
        catalog_version=1,
        work=work,
        now=dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC),
    )


def _stored_rows(store: DatasetStore, files: list[Path]) -> list[dict[str, Any]]:
    con = store.connect()
    try:
        rel = con.execute(f"SELECT * FROM {parquet_source(files)} ORDER BY 1, 数据日期")
        names = [d[0] for d in rel.description]
        return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
    finally:
        con.close()


def _nothing_stored(store: DatasetStore, resource: Resource) -> bool:
    folder = store.root / resource.code
    leftovers = list(folder.iterdir()) if folder.exists() else []
    return not leftovers and store.versions(resource.code) == []


# ----------------------------------------------------------------------------- valid rows


def test_valid_rows_are_stored_typed_and_readable_only_with_the_key(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    table = _csv(
        tmp_path / "data.csv",
        [
            _row(A),
            _row(f"  {B} ", 险种类型=" 失业保险", 待遇领取金额="88", 数据日期="2024/02/01"),
            _row(X.lower(), 数据日期="20240101", 备注="x 结尾"),
        ],
    )
    report = _ingest(store, resource, table)
    assert (report.rows, report.stored, report.rejected, report.version) == (3, 3, 0, 1)
    assert report.rejects_by_reason == {} and report.samples == []

    (version,) = store.versions(resource.code)
    path = store.root / version.file
    assert path.is_file() and path.parent == store.root / resource.code
    assert version.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (version.rows, version.rejected, version.mode) == (3, 0, "full")
    assert store.current_files(resource.code) == [path]

    rows = {r["公民身份号码"]: r for r in _stored_rows(store, [path])}
    assert set(rows) == {A, B, X}  # trimmed, lower-case x stored upper-case
    assert rows[B]["险种类型"] == "失业保险"
    assert rows[B]["待遇领取金额"] == pytest.approx(88)
    assert rows[B]["数据日期"] == dt.date(2024, 2, 1)
    assert rows[X]["数据日期"] == dt.date(2024, 1, 1)
    assert rows[A]["缴费月数"] == 12 and rows[A]["备注"] is None
    assert "_reject" not in rows[A]

    # at rest the file is ciphertext: no ID number, and unreadable without the right key
    assert A.encode() not in path.read_bytes()
    with pytest.raises(duckdb.Error, match="encrypted"):
        duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
    other = connect("A" * 43 + "=")
    try:
        with pytest.raises(duckdb.Error, match="key"):
            other.execute(f"SELECT * FROM {parquet_source([path])}").fetchall()
    finally:
        other.close()


def test_parquet_input_keeps_its_column_types(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    table = tmp_path / "data.parquet"
    duckdb.sql(
        f"COPY (SELECT * FROM (VALUES ('{A}', '张伟', '失业保险', 12.5::DECIMAL(10,2), 3, "
        f"DATE '2024-01-01'), ('{BAD_SUM}', '李娜', '失业保险', 1.0::DECIMAL(10,2), 4, "
        f"DATE '2024-02-01'), ('{B}', '王芳', '失业保险', 2.25::DECIMAL(10,2), NULL, NULL)) "
        f"t(公民身份号码, 姓名, 险种类型, 待遇领取金额, 缴费月数, 数据日期)) TO '{table}' (FORMAT parquet)"
    )
    report = _ingest(store, resource, table)
    assert (report.rows, report.stored, report.rejected) == (3, 2, 1)
    assert report.rejects_by_reason == {"E_ID:公民身份号码": 1}
    rows = {r["公民身份号码"]: r for r in _stored_rows(store, store.current_files(resource.code))}
    assert rows[A]["待遇领取金额"] == pytest.approx(12.5)
    assert rows[A]["数据日期"] == dt.date(2024, 1, 1)
    assert rows[B]["数据日期"] is None and rows[B]["缴费月数"] is None


# ----------------------------------------------------------------------------- rejects


def _mixed_rows() -> list[list[str]]:
    """One row of every reject reason, and three valid rows (A, X lower-case, C in 15 digits)."""
    return [
        _row(A),
        _row(X.lower()),  # accepted: x is X
        _row(BAD_SUM),
        _row(FEB30),
        _row(OLD),
        _row(NOWHERE),
        _row(FUTURE),
        _row(C[:6] + C[8:17]),  # 15 digits: accepted, stored converted
        _row(A[:17]),  # too short
        _row(A[:16] + "A" + A[17]),  # a letter among the digits
        _row(B, 待遇领取金额="1,000.00"),
        _row(B, 待遇领取金额="abc"),
        _row(B, 数据日期="2024-13-45"),
        _row(B, 数据日期="2024-02-30"),
        _row(B, 数据日期="2024-01-02X"),  # DuckDB's own cast would take the date and drop "X"
        _row(B, 数据日期="2024-1-2"),
        _row(B, 数据日期="2024-01-02 10:00"),
        _row(B, 数据日期="0000-01-01"),  # DuckDB would read it as 1 BC
        _row(B, 险种类型="医疗保险"),
        _row(B, 缴费月数="十二"),
        _row(B, 姓名="  "),
        _row(""),
    ]


def test_each_reject_reason_is_counted_with_masked_samples(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    rows = _mixed_rows()
    report = _ingest(store, resource, _csv(tmp_path / "data.csv", rows))
    assert (report.rows, report.stored, report.rejected) == (22, 3, 19)
    assert report.rejects_by_reason == {
        "E_ID:公民身份号码": 7,
        "E_DECIMAL:待遇领取金额": 2,
        "E_DATE:数据日期": 6,
        "E_CODE:险种类型": 1,
        "E_INTEGER:缴费月数": 1,
        "E_REQUIRED:姓名": 1,
        "E_REQUIRED:公民身份号码": 1,
    }
    assert len(report.samples) == min(19, MAX_REJECT_SAMPLES)
    assert {s["reason"] for s in report.samples} == set(report.rejects_by_reason)
    for sample in report.samples:
        assert set(sample) == {"reason", "key"}
        assert "*" in sample["key"] or sample["key"] == ""
    text = json.dumps(report.as_json(), ensure_ascii=False)
    for ident in (A, B, X, BAD_SUM, FEB30, OLD, NOWHERE, FUTURE, C, C[:6] + C[8:17]):
        assert ident not in text and ident.lower() not in text
    stored = {r["公民身份号码"] for r in _stored_rows(store, store.current_files(resource.code))}
    assert stored == {A, X, C}
    (version,) = store.versions(resource.code)
    assert (version.rows, version.rejected) == (3, 19)


def test_the_client_gives_the_same_verdict_as_the_node(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    """The same rows through the client's pre-seal check and through the node's ingest: the
    same rows refused, for the same reasons, with the same masked keys."""
    table = _csv(tmp_path / "data.csv", _mixed_rows())
    client = validate_table(
        table, "data", tmp_path / "valid.csv", today=dt.date(2026, 11, 22), resource=resource
    )
    node = _ingest(DatasetStore(world.node), resource, table)
    assert (client.rows, client.valid, client.invalid) == (node.rows, node.stored, node.rejected)
    assert client.by_reason == node.rejects_by_reason
    assert [p.line for p in client.problems] == [n for n in range(2, 24) if n not in (2, 3, 9)]
    client_samples = [{"reason": p.code, "key": p.masked_id} for p in client.problems]
    assert node.samples and all(s in client_samples for s in node.samples)
    # what the client would seal holds exactly the rows the node stores
    again = _ingest(DatasetStore(world.node), resource, tmp_path / "valid.csv")
    assert (again.rows, again.stored, again.rejected) == (3, 3, 0)


def test_samples_are_capped_but_every_reject_is_counted(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    rows = [_row(A)] + [_row(B, 险种类型=f"险种{i}") for i in range(MAX_REJECT_SAMPLES + 7)]
    report = _ingest(store, resource, _csv(tmp_path / "data.csv", rows))
    assert report.rejected == MAX_REJECT_SAMPLES + 7
    assert report.rejects_by_reason == {"E_CODE:险种类型": MAX_REJECT_SAMPLES + 7}
    assert len(report.samples) == MAX_REJECT_SAMPLES


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("header", "row", "words"),
    [
        (
            [*HEADER, "银行卡号"],
            [*_row(A), "6222000000000000"],
            "are not items of the resource (its items:",
        ),
        (HEADER[1:], _row(A)[1:], "'公民身份号码' is missing"),
        (
            [h for h in HEADER if h != "姓名"],
            [v for h, v in zip(HEADER, _row(A), strict=True) if h != "姓名"],
            "['姓名'] are missing",
        ),
    ],
    ids=["unknown-column", "missing-key-column", "missing-required-column"],
)
def test_schema_problems_are_refused_and_nothing_is_stored(
    world: World, resource: Resource, tmp_path: Path, header: list[str], row: list[str], words: str
) -> None:
    store = DatasetStore(world.node)
    with pytest.raises(InputError) as e:
        _ingest(store, resource, _csv(tmp_path / "data.csv", [row], header))
    assert e.value.code == "E_SCHEMA" and words in e.value.message, e.value.message
    assert _nothing_stored(store, resource)


def test_a_table_of_only_invalid_rows_is_refused_and_nothing_is_stored(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    table = _csv(tmp_path / "data.csv", [_row(BAD_SUM), _row(FEB30), _row(B, 险种类型="x")])
    with pytest.raises(InputError) as e:
        _ingest(store, resource, table)
    assert e.value.code == "E_ROWS"
    assert _nothing_stored(store, resource)


def test_a_full_push_without_rows_is_refused_but_an_empty_increment_is_stored(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    _ingest(store, resource, _csv(tmp_path / "data.csv", [_row(A)]))
    empty = _csv(tmp_path / "empty.csv", [])
    with pytest.raises(InputError) as e:
        _ingest(store, resource, empty)
    assert e.value.code == "E_ROWS" and "empty the dataset" in e.value.message
    assert [v.version for v in store.versions(resource.code)] == [1]  # the data is still there
    report = _ingest(store, resource, empty, mode="increment")
    assert (report.rows, report.stored, report.version) == (0, 0, 2)
    rows = _stored_rows(store, store.current_files(resource.code))
    assert [r["公民身份号码"] for r in rows] == [A]


def test_an_unknown_mode_is_refused(world: World, resource: Resource, tmp_path: Path) -> None:
    store = DatasetStore(world.node)
    with pytest.raises(InputError) as e:
        _ingest(store, resource, _csv(tmp_path / "data.csv", [_row(A)]), mode="replace")
    assert e.value.code == "E_MODE"
    assert _nothing_stored(store, resource)


def test_a_table_that_is_not_utf8_is_refused_clearly(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    text = ",".join(HEADER) + "\n" + ",".join(_row(A)) + "\n"
    early = tmp_path / "gb18030.csv"
    early.write_bytes(text.encode("gb18030"))
    # a bad line far past DuckDB's sniffing sample (it reports that one as an internal error)
    late = tmp_path / "late.csv"
    good = ",".join(_row(A)) + "\n"
    late.write_bytes((text + good * 30_000).encode("utf-8") + good.encode("gb18030"))
    for table, line in ((early, 1), (late, 30_003)):
        with pytest.raises(InputError) as e:
            _ingest(store, resource, table)
        assert e.value.code == "E_ENCODING"
        assert f"line {line}" in e.value.message
    assert _nothing_stored(store, resource)


def test_csv_rows_that_do_not_fit_the_header_are_refused_with_their_line(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    good = ",".join(_row(A)) + "\n"
    text = ",".join(HEADER) + "\n" + good * 30_000
    extra = tmp_path / "extra.csv"  # one row with a field too many, past the sniffing sample
    extra.write_text(text + ",".join(_row(B)) + ",多余\n" + good, encoding="utf-8")
    quote = tmp_path / "quote.csv"  # a quote that is never closed
    quote.write_text(text + ",".join(_row(B)).replace("张伟", '"张伟') + "\n" + good, "utf-8")
    for table in (extra, quote):
        with pytest.raises(InputError) as e:
            _ingest(store, resource, table)
        assert e.value.code == "E_SCHEMA"
        assert "line 30002" in e.value.message, e.value.message
        assert str(tmp_path) not in e.value.message + (e.value.detail or "")
    ragged = tmp_path / "ragged.csv"  # short and inconsistent: no dialect fits
    ragged.write_text(",".join(HEADER) + "\n1,2\n1,2,3,4,5,6,7,8,9\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        _ingest(store, resource, ragged)
    assert e.value.code == "E_SCHEMA" and "comma-separated" in e.value.message
    assert _nothing_stored(store, resource)


def test_a_table_without_its_header_on_line_1_is_refused_without_echoing_personal_data(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    body = ",".join(_row(A)) + "\n"
    blank_first = tmp_path / "blank.csv"  # DuckDB would take the next line as the header
    blank_first.write_bytes(b"\xef\xbb\xbf\r\n" + (",".join(HEADER) + "\n" + body).encode())
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    headerless = tmp_path / "headerless.csv"  # the first data row becomes the "header"
    headerless.write_text(body + body, encoding="utf-8")
    for table, words in (
        (blank_first, "line 1 is empty"),
        (empty, "empty"),
        (headerless, "not a header"),
    ):
        with pytest.raises(InputError) as e:
            _ingest(store, resource, table)
        assert e.value.code == "E_SCHEMA" and words in e.value.message
        assert A not in e.value.message and "张伟" not in e.value.message
    assert _nothing_stored(store, resource)


def test_rfc4180_quoting_round_trips_and_no_line_is_skipped(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    note = '低保户, "重点" 对象\n第二行'
    rows = [_row(A, 备注=note), _row("#" + B)]  # DuckDB would read "#..." as a comment line
    report = _ingest(store, resource, _csv(tmp_path / "data.csv", rows))
    assert (report.rows, report.stored, report.rejected) == (2, 1, 1)
    assert report.rejects_by_reason == {"E_ID:公民身份号码": 1}
    (row,) = _stored_rows(store, store.current_files(resource.code))
    assert row["备注"] == note


def test_a_table_that_is_not_a_table_is_refused(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    broken = tmp_path / "data.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    for table in (broken, tmp_path / "data.xlsx"):
        table.touch()
        with pytest.raises(InputError) as e:
            _ingest(store, resource, table)
        assert e.value.code == "E_SCHEMA"
    assert _nothing_stored(store, resource)


# ----------------------------------------------------------------------------- versions


def test_the_same_bundle_twice_stores_one_version(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    store = DatasetStore(world.node)
    table = _csv(tmp_path / "data.csv", [_row(A), _row(BAD_SUM)])
    bundle = str(uuid.uuid4())
    first = _ingest(store, resource, table, bundle_id=bundle)
    second = _ingest(store, resource, table, bundle_id=bundle)
    assert first.version == second.version == 1
    assert (second.rows, second.stored, second.rejected) == (2, 1, 1)
    assert second.rejects_by_reason == first.rejects_by_reason
    assert len(store.versions(resource.code)) == 1
    (stored,) = (store.root / resource.code).iterdir()
    assert stored.name.startswith(f"{bundle}.") and stored.suffix == ".parquet"
    found = store.by_bundle(bundle)
    assert found is not None and found.version == 1


def test_one_bundle_stored_by_two_processes_at_once_keeps_one_file_matching_its_hash(
    world: World, resource: Resource, tmp_path: Path
) -> None:
    """Two node processes (threads here; DuckDB runs without the GIL) ingest the same bundle
    at the same instant: one version, one file, and the recorded SHA-256 is that file's."""
    stores = [DatasetStore(world.node), DatasetStore(world.node)]
    table = _csv(tmp_path / "data.csv", [_row(A)] * 40_000 + [_row(BAD_SUM)])
    bundle = str(uuid.uuid4())
    start = threading.Barrier(2)
    reports: list[IngestReport] = []

    def run(store: DatasetStore) -> None:
        start.wait()
        reports.append(_ingest(store, resource, table, bundle_id=bundle))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.version for r in reports] == [1, 1]
    assert all((r.stored, r.rejected) == (40_000, 1) for r in reports)
    (version,) = stores[0].versions(resource.code)
    files = list((stores[0].root / resource.code).iterdir())
    assert [f.name for f in files] == [Path(version.file).name]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == version.sha256


def _conflicting_sessions(
    world: World, monkeypatch: pytest.MonkeyPatch, conflicts: int
) -> list[int]:
    """Make the next ``conflicts`` write transactions fail at commit as a concurrent writer's
    unique-constraint conflict would (PostgreSQL runs them side by side; SQLite serialises)."""
    real = world.node.session
    raised: list[int] = []

    @contextlib.contextmanager
    def session(*, write: bool = True) -> Iterator[Any]:
        if not write or len(raised) >= conflicts:
            with real(write=write) as s:
                yield s
            return
        with real(write=write) as s:
            yield s
            s.rollback()
            raised.append(1)
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(world.node, "session", session)
    return raised


def test_a_version_number_taken_meanwhile_is_retried(
    world: World, resource: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore(world.node)
    table = _csv(tmp_path / "data.csv", [_row(A)])
    raised = _conflicting_sessions(world, monkeypatch, conflicts=2)
    report = _ingest(store, resource, table)
    assert len(raised) == 2 and report.version == 1
    (version,) = store.versions(resource.code)
    (file,) = (store.root / resource.code).iterdir()
    assert file.name == Path(version.file).name
    assert hashlib.sha256(file.read_bytes()).hexdigest() == version.sha256


def test_a_version_that_can_never_be_recorded_leaves_no_file(
    world: World, resource: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetStore(world.node)
    table = _csv(tmp_path / "data.csv", [_row(A)])
    _conflicting_sessions(world, monkeypatch, conflicts=100)
    with pytest.raises(RuntimeError, match="could not record"):
        _ingest(store, resource, table)
    monkeypatch.undo()
    assert _nothing_stored(store, resource)


def test_full_increment_full_gives_the_right_current_files(
    tmp_path: Path, test_ca: CAFixture, resource: Resource, store_url: str
) -> None:
    world = build_world(tmp_path, test_ca, database=store_url)
    store = DatasetStore(world.node)
    assert store.current_files(resource.code) == []

    def push(mode: str, *idents: str) -> DatasetVersion:
        table = _csv(tmp_path / f"{uuid.uuid4().hex}.csv", [_row(i) for i in idents])
        bundle = str(uuid.uuid4())
        _ingest(store, resource, table, mode=mode, bundle_id=bundle)
        found = store.by_bundle(bundle)
        assert found is not None
        return found

    v1 = push("full", A)
    v2 = push("increment", B)
    assert [v.version for v in (v1, v2)] == [1, 2]
    assert store.current_files(resource.code) == [store.root / v1.file, store.root / v2.file]
    keys = [r["公民身份号码"] for r in _stored_rows(store, store.current_files(resource.code))]
    assert sorted(keys) == sorted([A, B])

    v3 = push("full", X)
    assert store.current_files(resource.code) == [store.root / v3.file]
    v4 = push("increment", A)
    assert store.current_files(resource.code) == [store.root / v3.file, store.root / v4.file]
    assert [v.version for v in store.versions(resource.code)] == [1, 2, 3, 4]
    assert [v.mode for v in store.versions()] == ["full", "increment", "full", "increment"]
    keys = [r["公民身份号码"] for r in _stored_rows(store, store.current_files(resource.code))]
    assert sorted(keys) == sorted([A, X])
