"""Tables in and out: encodings, XLSX, Parquet, column mapping, row validation, conversion for
pull, and the CLI's error paths (nothing sealed on bad input; never a full ID or name printed)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.pull import PullOutcome, convert_opened
from exchange_client.push import RowsRejected, prepare_inputs
from exchange_client.state import read_state
from exchange_client.tables import convert_csv, read_table, validate_table
from exchange_common.errors import InputError
from exchange_common.idnumber import check_character
from exchange_common.tables.source import table_source
from pki.bundle import BundleKind, open_bundle
from pki.identity import Role
from pki.keys import certificate_pem, load_certificates, load_private_key, private_key_pem
from tests.conftest import CAFixture

runner = CliRunner()
TODAY = dt.date(2026, 11, 22)


def make_id(region: str, born: str, seq: int) -> str:
    first17 = f"{region}{born}{seq:03d}"
    return first17 + check_character(first17)


ID1 = make_id("330102", "19900101", 123)
ID2 = make_id("330110", "19300501", 12)
ID3 = "11010519491231002X"
BAD_ID = ID1[:-1] + ("0" if ID1[-1] != "0" else "1")
#: Header + rows with Chinese names, a full-width letter and doubled spaces.
ROWS = [
    ["身份证号", "姓名", "备注"],
    [ID1, "张三丰", "低保"],
    [ID2.lower(), "  李 四  ", "特困"],
    [ID3, "ＡＢＣ　王五", ""],
]
CLEAN = [
    ["身份证号", "姓名", "备注"],
    [ID1, "张三丰", "低保"],
    [ID2, "李 四", "特困"],
    [ID3, "ABC 王五", ""],
]
#: A persons list as the node requires it: ID number, name and authorization reference.
PERSONS = [
    ["身份证号", "姓名", "授权编号"],
    [ID1, "张三丰", "SQ-1"],
    [ID2.lower(), "  李 四  ", "SQ-2"],
    [ID3, "ＡＢＣ　王五", "SQ-3"],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    wb = Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def read_csv(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as fh:
        return list(csv.reader(fh))


# -- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_csv_encodings_detected(tmp_path: Path, encoding: str) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS, encoding)
    header, rows, used = read_table(src)
    assert header == ROWS[0]
    assert [r for _, r in rows] == ROWS[1:]
    assert used == ("utf-8-sig" if encoding.startswith("utf") else "gb18030")


def test_encoding_override_and_wrong_encoding(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", ROWS, "gbk")
    header, _, used = read_table(src, encoding="GBK")
    assert header == ROWS[0] and used == "gbk"
    with pytest.raises(InputError) as e:
        list(read_table(src, encoding="utf-8")[1])
    assert e.value.code == "E_ENCODING"
    with pytest.raises(InputError) as e:
        read_table(src, encoding="klingon")
    assert e.value.code == "E_ENCODING"


def test_undecodable_csv_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("身份证号,姓名\n".encode("utf-16"))  # neither UTF-8 nor GB18030
    with pytest.raises(InputError) as e:
        validate_table(src, "query", tmp_path / "out.csv", today=TODAY)
    assert e.value.code == "E_ENCODING"


def test_xlsx_and_parquet_read(tmp_path: Path) -> None:
    x = write_xlsx(tmp_path / "in.xlsx", [*ROWS, [None, None, None], [ID1, "赵六", 42]])
    header, rows, used = read_table(x)
    got = [(n, r) for n, r in rows]
    assert header == ROWS[0] and used is None
    assert [r for _, r in got] == [*ROWS[1:], [ID1, "赵六", "42"]]
    assert got[-1][0] == 6  # the blank row keeps its line number
    pq.write_table(
        pa.table({c: [r[i] for r in ROWS[1:]] for i, c in enumerate(ROWS[0])}),
        p := tmp_path / "in.parquet",
    )
    header, rows, _ = read_table(p)
    assert header == ROWS[0] and [r for _, r in rows] == ROWS[1:]


@pytest.mark.parametrize("name", ["in.xlsx", "in.parquet", "in.txt"])
def test_unreadable_files_refused(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_bytes(b"not a table")
    with pytest.raises(InputError) as e:
        read_table(f)
    assert e.value.code == "E_FORMAT"


def test_empty_table_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "e.csv")
    assert e.value.code == "E_COLUMNS"
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "nope.csv")
    assert e.value.code == "E_NOT_FOUND"


# -- validation -------------------------------------------------------------------------------


def test_validate_writes_utf8_rows_as_given(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", PERSONS, "gb18030")
    out = tmp_path / "out.csv"
    report = validate_table(src, "query", out, today=TODAY)
    assert (report.rows, report.valid, report.problems) == (3, 3, [])
    assert report.encoding == "gb18030"
    assert out.read_bytes()[:3] != b"\xef\xbb\xbf"
    # transcoded, not rewritten: the node normalises (x, full-width) by the same rule
    assert read_csv(out) == PERSONS


def test_english_headers_and_data_kind(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [[" ID_Number ", "amount"], [ID1, "12.50"]], "utf-8")
    report = validate_table(src, "data", tmp_path / "out.csv", today=TODAY)
    assert report.valid == 1  # data without a catalog: the ID column is checked
    bad = write_csv(tmp_path / "bad.csv", [["id_number", "amount"], [BAD_ID, "1"]], "utf-8")
    report = validate_table(bad, "data", tmp_path / "out.csv", today=TODAY)
    assert [(p.line, p.code, p.detail) for p in report.problems] == [
        (2, "E_ID:id_number", "ID_CHECKSUM")
    ]
    with pytest.raises(InputError) as e:
        validate_table(src, "query", tmp_path / "out.csv", today=TODAY)
    assert e.value.code == "E_SCHEMA" and "姓名" in e.value.message


def test_missing_columns_are_refused_as_the_node_refuses_them(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [["姓名"], ["张三"]], "utf-8")
    with pytest.raises(InputError) as e:
        validate_table(src, "query", tmp_path / "out.csv", today=TODAY)
    assert e.value.code == "E_SCHEMA" and "身份证号" in e.value.message
    assert "授权编号" in e.value.message  # the authorization column is required too
    # a dataset without person columns is only re-encoded
    assert validate_table(src, "data", tmp_path / "out.csv", today=TODAY).valid == 1


def test_invalid_rows_reported_by_line_with_masked_ids(tmp_path: Path) -> None:
    rows = [
        ["身份证号", "姓名", "授权编号"],
        [ID1, "张三", "A1"],
        [BAD_ID, "李四", "A2"],
        ["12345", "王五", "A3"],
        [ID2, "钱七", "  "],
        [ID3, "赵六", "A5", "extra"],
        [make_id("110105", "20300101", 1), "未来", "A6"],
    ]
    report = validate_table(
        write_csv(tmp_path / "in.csv", rows, "utf-8"), "query", tmp_path / "o.csv", today=TODAY
    )
    assert report.valid == 1 and report.invalid == 5
    assert [(p.line, p.code, p.detail) for p in report.problems] == [
        (3, "E_ID", "ID_CHECKSUM"),
        (4, "E_ID", "ID_LENGTH"),
        (5, "E_AUTHORIZATION", ""),
        (6, "ROW_CELLS", ""),
        (7, "E_ID", "ID_DATE"),
    ]
    assert report.by_reason == {"E_ID": 3, "E_AUTHORIZATION": 1, "ROW_CELLS": 1}
    text = "\n".join(str(p) for p in report.problems)
    assert BAD_ID not in text and ID2 not in text and "12345" not in text
    assert f"line 3: E_ID (ID_CHECKSUM) [{BAD_ID[:6]}********{BAD_ID[-4:]}]" in text
    assert read_csv(tmp_path / "o.csv") == [["身份证号", "姓名", "授权编号"], [ID1, "张三", "A1"]]


def test_prepare_inputs_refuses_or_drops(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "persons.csv",
        [["身份证号", "姓名", "授权编号"], [ID1, "张三", "A1"], [BAD_ID, "李四", "A2"]],
        "gbk",
    )
    other = tmp_path / "note.txt"
    other.write_text("hi")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RowsRejected) as e:
        prepare_inputs([src, other], BundleKind.QUERY, work, today=TODAY)
    assert e.value.code == "E_ROWS" and e.value.reports[0][1].invalid == 1
    for f in work.iterdir():
        f.unlink()
    files, reports = prepare_inputs(
        [src, other], BundleKind.QUERY, work, valid_only=True, today=TODAY
    )
    assert files == [work / "persons.csv", other]
    assert reports[0][1].invalid == 1 and read_csv(files[0]) == [
        ["身份证号", "姓名", "授权编号"],
        [ID1, "张三", "A1"],
    ]
    # other kinds pass through untouched
    assert prepare_inputs([src], BundleKind.REVOCATION, work)[0] == [src]


def test_prepare_inputs_no_valid_row_and_duplicate_stem(tmp_path: Path) -> None:
    only_bad = write_csv(
        tmp_path / "a.csv", [["身份证号", "姓名", "授权编号"], [BAD_ID, "李四", "A"]], "utf-8"
    )
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RowsRejected) as e:
        prepare_inputs([only_bad], BundleKind.QUERY, work, valid_only=True, today=TODAY)
    assert "no valid row" in e.value.message
    (work / "a.csv").unlink(missing_ok=True)
    good = write_csv(
        tmp_path / "b.csv", [["身份证号", "姓名", "授权编号"], [ID1, "张三", "A"]], "utf-8"
    )
    xlsx = write_xlsx(tmp_path / "b.xlsx", [["身份证号", "姓名", "授权编号"], [ID1, "张三", "A"]])
    with pytest.raises(InputError, match="stem"):
        prepare_inputs([good, xlsx], BundleKind.QUERY, work, today=TODAY)


# -- writing (pull) and round trips --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "csv-gb18030", "xlsx", "parquet"])
def test_convert_round_trip(tmp_path: Path, fmt: str) -> None:
    member = write_csv(tmp_path / "result.csv", [*CLEAN, [ID1, "=1+1", "0012"]], "utf-8")
    target = convert_csv(member, fmt)
    header, rows, _ = read_table(target)
    # CSV is for spreadsheets: a formula is neutralised; XLSX (text cells) and Parquet keep it
    cell = "'=1+1" if fmt.startswith("csv") else "=1+1"
    assert [header, *(r for _, r in rows)] == [*CLEAN, [ID1, cell, "0012"]]
    if fmt == "csv":
        assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    if fmt == "csv-gb18030":
        assert read_csv(target, "gb18030")[1][1] == "张三丰"
    if fmt == "xlsx":
        cell = load_workbook(target).worksheets[0]["B5"]
        assert cell.value == "=1+1" and cell.data_type == "s"  # text, never a formula
    assert (target == member) == fmt.startswith("csv") and target.exists()
    assert member.exists() == fmt.startswith("csv")


def test_convert_unknown_format(tmp_path: Path) -> None:
    member = write_csv(tmp_path / "r.csv", CLEAN, "utf-8")
    with pytest.raises(InputError) as e:
        convert_csv(member, "pdf")
    assert e.value.code == "E_USAGE"


@pytest.mark.parametrize(
    ("source", "fmt"), [("gb18030.csv", "csv-gb18030"), ("names.xlsx", "xlsx")]
)
def test_push_side_to_pull_side_round_trip(tmp_path: Path, source: str, fmt: str) -> None:
    """A GB18030 CSV / an XLSX with Chinese names: validated as for push, converted as on pull."""
    src = tmp_path / source
    if source.endswith(".csv"):
        write_csv(src, CLEAN, "gb18030")
    else:
        write_xlsx(src, CLEAN)
    work = tmp_path / "bundle"
    work.mkdir()
    (sealed,), _ = prepare_inputs([src], BundleKind.DATA, work, today=TODAY)
    assert sealed.name == f"{src.stem}.csv"
    back = convert_csv(sealed, fmt)
    header, rows, _ = read_table(back)
    assert [header, *(r for _, r in rows)] == CLEAN


def test_response_is_sealed_as_text_parquet_with_the_cells_a_csv_would_give(
    tmp_path: Path,
) -> None:
    """respond seals Parquet (decision 0007): every column text, the node's CSV reading of the
    same table cell for cell, rows in order; GB18030 text outside GBK survives."""
    rows = [
        ["身份证号", "姓名", "备注"],
        [ID1, "𠀀𪚥 张三丰", "=1+1"],  # U+20000 and U+2A6A5: GB18030 four-byte sequences
        [ID2, "李 四", "0012"],
        [ID3, "王五", ""],
    ]
    src = write_csv(tmp_path / "answer.csv", rows, "gb18030")
    as_data, as_response = tmp_path / "data", tmp_path / "response"
    as_data.mkdir()
    as_response.mkdir()
    (csv_member,), _ = prepare_inputs([src], BundleKind.DATA, as_data, today=TODAY)
    (member,), reports = prepare_inputs([src], BundleKind.RESPONSE, as_response, today=TODAY)
    assert member == as_response / "answer.parquet" and reports[0][1].valid == 3
    assert sorted(p.name for p in as_response.iterdir()) == ["answer.parquet"]
    table = pq.read_table(member)
    assert table.column_names == rows[0]
    assert all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in table.schema.types)
    con = duckdb.connect()
    expected = con.execute(f"SELECT * FROM {table_source(csv_member)}").fetchall()  # noqa: S608
    assert [tuple(r.values()) for r in table.to_pylist()] == expected
    assert expected[0][1] == "𠀀𪚥 张三丰" and expected[1][2] == "0012"


def test_convert_opened_skips_receipts_and_reports_failures(tmp_path: Path) -> None:
    result = tmp_path / "result" / "b1"
    result.mkdir(parents=True)
    write_csv(result / "r.csv", CLEAN, "utf-8")
    (result / "broken.csv").write_bytes("a,b\n".encode("utf-16"))
    (result / "notes.txt").write_text("x")
    receipt = tmp_path / "receipt" / "b2"
    receipt.mkdir(parents=True)
    write_csv(receipt / "r.csv", CLEAN, "utf-8")
    outcomes = [
        PullOutcome("x", "opened", kind="result", bundle_id="b1", opened_to=str(result)),
        PullOutcome("y", "opened", kind="receipt", bundle_id="b2", opened_to=str(receipt)),
        PullOutcome("z", "rejected", reason_code="E_SIGNATURE"),
    ]
    problems = convert_opened(outcomes, "xlsx")
    assert problems == ["bundle b1: a CSV member was not converted (E_ENCODING)"]
    assert sorted(p.name for p in result.iterdir()) == ["broken.csv", "notes.txt", "r.xlsx"]
    assert (receipt / "r.csv").exists()


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def client(test_ca: CAFixture, tmp_path: Path) -> dict[str, Path]:
    """An initialised client directory; the node at 127.0.0.1:9 is not there (no upload)."""
    test_ca.ca.crl()
    files = tmp_path / "files"
    files.mkdir()
    out: dict[str, Path] = {"dir": tmp_path / "client"}
    for code, role in (("NODE01", Role.NODE), ("MZ330100", Role.DEPARTMENT)):
        issued = test_ca.issue(code, role=role)
        assert issued.key is not None
        out[f"{code}.pem"] = files / f"{code}.pem"
        out[f"{code}.key"] = files / f"{code}.key"
        out[f"{code}.pem"].write_bytes(certificate_pem(issued.chain))
        out[f"{code}.key"].write_bytes(private_key_pem(issued.key, None))
    out["trust"] = test_ca.dir / "root.pem"
    r = runner.invoke(
        app,
        [
            "init", "--dir", str(out["dir"]), "--dept", "MZ330100", "--node-host", "127.0.0.1",
            "--node-port", "9", "--trust", str(out["trust"]), "--crl", str(test_ca.dir / "crl.pem"),
            "--node-cert", str(out["NODE01.pem"]), "--cert", str(out["MZ330100.pem"]),
            "--key", str(out["MZ330100.key"]),
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def push(client: dict[str, Path], *args: str) -> tuple[int, str]:
    r = runner.invoke(
        app, ["push", "--dir", str(client["dir"]), "--kind", "query", "--retries", "0", *args]
    )
    return r.exit_code, r.output


def nothing_sealed(client: dict[str, Path]) -> bool:
    sent = client["dir"] / "sent"
    leftovers = [p for p in client["dir"].iterdir() if p.name.startswith(".validated-")]
    return not leftovers and (not sent.exists() or not any(sent.iterdir()))


def test_cli_invalid_rows_refused_with_masked_report(
    client: dict[str, Path], tmp_path: Path
) -> None:
    src = write_csv(
        tmp_path / "persons.csv",
        [["身份证号", "姓名", "授权编号"], [ID1, "张三丰", "A1"], [BAD_ID, "李四光", "A2"]],
        "gb18030",
    )
    code, output = push(client, str(src))
    assert code == 3 and "(E_ROWS)" in output
    assert "line 3: E_ID (ID_CHECKSUM)" in output and "1 invalid" in output
    assert BAD_ID not in output and ID1 not in output
    assert "李四光" not in output and "张三丰" not in output and "persons" not in output
    assert nothing_sealed(client)


@pytest.mark.parametrize(
    ("rows", "extra", "code"),
    [
        ([["姓名"], ["张三"]], [], "E_SCHEMA"),
        ([["身份证号", "姓名"], [ID1, "张三"]], ["--encoding", "utf-8"], "E_ENCODING"),
        ([["身份证号", "姓名"], [ID1, "张三"]], ["--encoding", "nonsense"], "E_ENCODING"),
        ([["身份证号", "姓名", "授权编号"], ["33010219900101", "张三", "A"]], [], "E_ROWS"),
    ],
)
def test_cli_bad_input_is_one_error_line(
    client: dict[str, Path], tmp_path: Path, rows: list[list[str]], extra: list[str], code: str
) -> None:
    src = write_csv(tmp_path / "persons.csv", rows, "gb18030")
    exit_code, output = push(client, *extra, str(src))
    assert exit_code == 3 and f"({code})" in output and "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert nothing_sealed(client)


def test_cli_valid_only_seals_the_valid_rows(
    client: dict[str, Path], tmp_path: Path, test_ca: CAFixture
) -> None:
    src = write_xlsx(
        tmp_path / "persons.xlsx",
        [
            ["身份证号", "姓名", "授权编号"],
            [ID1, "张三丰", "A1"],
            [BAD_ID, "李四", "A2"],
            [ID3, "王五", "A3"],
        ],
    )
    code, output = push(client, "--valid-only", str(src))
    # sealed and recorded; the upload then fails (no node listening): network exit code
    assert code == 5, output
    assert "1 dropped (--valid-only)" in output and BAD_ID not in output
    (rec,) = read_state(client["dir"] / "state.json").pushed.values()
    assert rec.members == 1
    opened = open_bundle(
        client["dir"] / "sent" / f"{rec.bundle_id}.bundle",
        tmp_path / "opened",
        recipient_key=load_private_key(client["NODE01.key"]),
        recipient_cert=load_certificates(client["NODE01.pem"])[0],
        trust=test_ca.trust(),
        now=dt.datetime.now(dt.UTC),
    )
    (member,) = opened.paths
    assert member.name == "persons.csv"
    assert read_csv(member) == [
        ["身份证号", "姓名", "授权编号"],
        [ID1, "张三丰", "A1"],
        [ID3, "王五", "A3"],
    ]
    assert nothing_sealed(client) is False
    assert not [p for p in client["dir"].iterdir() if p.name.startswith(".validated-")]


def test_cli_pull_unknown_format(tmp_path: Path) -> None:
    r = runner.invoke(app, ["pull", "--dir", str(tmp_path), "--format", "pdf"])
    assert r.exit_code == 3 and "(E_USAGE)" in r.output


def test_cli_json_push_reports_nothing_personal(client: dict[str, Path], tmp_path: Path) -> None:
    src = write_csv(tmp_path / "p.csv", [["id_number", "name"], [BAD_ID, "Zhang San"]], "utf-8")
    r = runner.invoke(
        app, ["push", "--dir", str(client["dir"]), "--kind", "query", "--json", str(src)]
    )
    assert r.exit_code == 3 and "Zhang San" not in r.output and BAD_ID not in r.output
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stdout or "x")  # errors go to stderr, not as JSON on stdout


def test_header_only_data_table_passes(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "x.csv", [["x"]], "utf-8")
    work = tmp_path / "work"
    work.mkdir()
    files, reports = prepare_inputs([src], BundleKind.DATA, work)
    assert files == [work / "x.csv"] and reports[0][1].rows == 0


def push_data(client: dict[str, Path], resource: str, table: Path) -> tuple[int, str]:
    r = runner.invoke(
        app,
        [
            "push",
            "--dir",
            str(client["dir"]),
            "--kind",
            "data",
            "--retries",
            "0",
            "--field",
            f"resource={resource}",
            str(table),
        ],
    )
    return r.exit_code, r.output


def test_cli_data_push_checked_against_the_catalog_before_sealing(
    client: dict[str, Path], tmp_path: Path
) -> None:
    """The key column the catalog names 公民身份号码 is checked before anything is sealed."""
    example = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"
    (client["dir"] / "catalog.toml").write_bytes(example.read_bytes())
    src = write_csv(
        tmp_path / "rs.csv",
        [
            ["公民身份号码", "姓名", "险种类型", "数据日期"],
            [ID1, "张三丰", "基本养老保险", "2026-10-31"],
            [BAD_ID, "李四光", "基本养老保险", "2026-10-31"],
            [ID2, "王五", "医疗保险", "2026-10-31"],
            ["33010219900101", "赵六", "失业保险", "2026/10/31"],
        ],
        "gb18030",
    )
    code, output = push_data(client, "RS-SI-01", src)
    assert code == 3 and "(E_ROWS)" in output, output
    assert "line 3: E_ID:公民身份号码 (ID_CHECKSUM)" in output
    assert "line 4: E_CODE:险种类型" in output
    assert "line 5: E_ID:公民身份号码 (ID_LENGTH)" in output
    assert f"[{BAD_ID[:6]}********{BAD_ID[-4:]}]" in output
    assert BAD_ID not in output and "李四光" not in output
    assert nothing_sealed(client)
    # a column the resource does not have is refused as the node refuses it
    odd = write_csv(tmp_path / "odd.csv", [["公民身份号码", "工资"], [ID1, "1"]], "utf-8")
    code, output = push_data(client, "RS-SI-01", odd)
    assert code == 3 and "(E_SCHEMA)" in output and "column(s) 2 of 2" in output
    # a resource the catalog does not list is refused before sealing
    code, output = push_data(client, "NOPE-01", src)
    assert code == 3 and "(E_UNKNOWN_RESOURCE)" in output
    assert nothing_sealed(client)
