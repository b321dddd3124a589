"""The SFTP front's virtual tree: path normalisation, name checks and the session's file rules.

The first half is property-based (hypothesis): whatever a client sends, no normalised path
escapes the virtual tree and no hostile name becomes a file name. The second half drives
:class:`DepartmentSFTPServer` directly (no network) over a temporary spool, including the
difference between a client's close request (commit) and asyncssh's end-of-session clean-up
(abort), through asyncssh's own handler code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.packet import SSHPacket, String
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange_server.crl import CrlStatus
from exchange_server.front.sftp import DepartmentSFTPServer
from exchange_server.front.sftp_paths import MAX_NAME_BYTES, VKind, name_problem, normalise, resolve
from exchange_server.front.sftp_services import SessionInfo, SFTPServices, UploadBook
from exchange_server.spool import Spool
from pki.identity import DeptCode

# --- normalisation ----------------------------------------------------------------------------

segments = st.sampled_from(["", ".", "..", "inbox", "outbox", "etc", "passwd", "..."]) | st.text(
    min_size=0, max_size=8
)
paths = st.lists(segments, max_size=12).map("/".join) | st.text(max_size=64)


@given(st.one_of(paths, paths.map(lambda p: "/" + p), st.binary(max_size=80)))
@settings(max_examples=500)
def test_no_normalised_path_escapes_the_virtual_tree(raw: str | bytes) -> None:
    norm = normalise(raw)
    if norm is None:
        return
    assert norm.startswith("/")
    parts = norm.split("/")[1:]
    if norm != "/":
        assert all(p not in {"", ".", ".."} for p in parts), norm
    assert normalise(norm) == norm  # idempotent


@given(paths)
@settings(max_examples=500)
def test_resolved_files_are_plain_names_inside_their_folder(raw: str) -> None:
    vpath = resolve(raw)
    if vpath.kind in {VKind.INBOX_FILE, VKind.OUTBOX_FILE}:
        assert vpath.name is not None
        assert name_problem(vpath.name) is None
        folder = Path("/srv/spool/depts/X/outbox")
        assert (folder / vpath.name).parent == folder
        assert (
            vpath.path == f"/{'inbox' if vpath.kind is VKind.INBOX_FILE else 'outbox'}/{vpath.name}"
        )


@pytest.mark.parametrize(
    ("raw", "kind", "path"),
    [
        (b"", VKind.ROOT, "/"),
        (b".", VKind.ROOT, "/"),
        (b"/", VKind.ROOT, "/"),
        (b"//", VKind.ROOT, "/"),
        (b"../../..", VKind.ROOT, "/"),
        (b"inbox", VKind.INBOX, "/inbox"),
        (b"//inbox//", VKind.INBOX, "/inbox"),
        (b"/outbox/./", VKind.OUTBOX, "/outbox"),
        (b"/inbox/q.bundle", VKind.INBOX_FILE, "/inbox/q.bundle"),
        (b"/outbox/../outbox/r.receipt", VKind.OUTBOX_FILE, "/outbox/r.receipt"),
        ("/inbox/民政查询.bundle".encode(), VKind.INBOX_FILE, "/inbox/民政查询.bundle"),
        (b"/inbox/../../etc/passwd", VKind.NOWHERE, "/etc/passwd"),
        (b"../x", VKind.NOWHERE, "/x"),
        (b"/etc/passwd", VKind.NOWHERE, "/etc/passwd"),
        (b"/srv/node/spool/depts/RS330100/outbox/r", VKind.NOWHERE, None),
        (b"/depts/RS330100/outbox", VKind.NOWHERE, "/depts/RS330100/outbox"),
        (b"/inbox/a/b", VKind.NOWHERE, "/inbox/a/b"),
        (b"/inbox/.hidden", VKind.NOWHERE, "/inbox/.hidden"),
        (b"/outbox/.partial", VKind.NOWHERE, "/outbox/.partial"),
    ],
)
def test_resolve_examples(raw: bytes, kind: VKind, path: str | None) -> None:
    vpath = resolve(raw)
    assert vpath.kind is kind
    if path is not None:
        assert vpath.path == path


@pytest.mark.parametrize(
    "raw", [b"/inbox/\xff\xfe", b"/inbox/a\x00b", b"/inbox/a\nb", b"/" + b"a" * 5000]
)
def test_unreadable_or_oversized_paths_name_nothing(raw: bytes) -> None:
    assert normalise(raw) is None
    assert resolve(raw).kind is VKind.NOWHERE


# --- names ------------------------------------------------------------------------------------

HOSTILE = [
    "",
    ".",
    "..",
    ".hidden",
    ".partial",
    "a/b",
    "../x",
    "a\\b",
    "a\x00b",
    "a\nb",
    "a\rb",
    "\x1b[31mred",
    "a\x7fb",
    "report\u202egpj.exe",  # right-to-left override disguising an extension
    "zero\u200bwidth",
    "line\u2028sep",
    " leading",
    "trailing ",
    "x" * (MAX_NAME_BYTES + 1),
    "民" * 86,  # 258 bytes of UTF-8
    "\ud800",  # lone surrogate
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(
    "name",
    [
        "q.bundle",
        "民政查询-2026-11.bundle",
        "a b.bundle",
        "x" * MAX_NAME_BYTES,
        "民" * 85,
        "a..b.bundle",
    ],
)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert name_problem(name) is None


@given(st.text(min_size=1, max_size=40), st.sampled_from(["/", "\x00", "\n", "\x1f", "\u202e"]))
def test_any_name_with_a_bad_character_is_refused(text: str, bad: str) -> None:
    pos = len(text) // 2
    assert name_problem(text[:pos] + bad + text[pos:]) is not None


@given(st.text(max_size=300))
@settings(max_examples=500)
def test_accepted_names_are_safe_path_components(name: str) -> None:
    if name_problem(name) is not None:
        return
    assert "/" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert normalise("/inbox/" + name) == "/inbox/" + name


# --- the upload book ----------------------------------------------------------------------------


def test_upload_book_names_and_bytes() -> None:
    book = UploadBook()
    assert book.reserve("MZ", "a")
    assert not book.reserve("MZ", "a")  # same name in progress
    assert book.reserve("RS", "a")  # other department
    book.grow("MZ", 100)
    assert book.in_flight("MZ") == 100
    book.release("MZ", "a", 100)
    assert book.in_flight("MZ") == 0
    assert book.reserve("MZ", "a")


# --- the session server, without a network --------------------------------------------------------


class FakeIngest:
    """A stand-in for the pipeline's Handover, recording what the SFTP front asked of it."""

    def __init__(self, root: Path):
        self.spool = Spool(root)
        self.accepted: list[dict[str, Any]] = []

    def new_partial(self) -> tuple[str, Path]:
        return self.spool.new_partial()

    def accept_upload(self, **kw: Any) -> None:
        partial: Path = kw["partial"]
        kw["data"] = partial.read_bytes()
        partial.replace(self.spool.incoming_path(kw["upload_id"]))
        self.accepted.append(kw)

    def discard_partial(self, partial: Path) -> None:
        partial.unlink(missing_ok=True)


class FakeServices(SFTPServices):
    used = 0
    quota = 10_000

    def crl(self) -> CrlStatus:
        return CrlStatus(None, "current (test)")

    def usage(self, dept: str) -> tuple[int, int]:
        return self.used, self.quota

    async def pulled(self, session: SessionInfo, download: Any) -> None:
        self.__dict__.setdefault("pulls", []).append((str(session.dept), download.name))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[DepartmentSFTPServer, FakeIngest, FakeServices]]:
    ingest = FakeIngest(tmp_path / "spool")
    pool = ThreadPoolExecutor(1)
    services = FakeServices(
        node=None,  # type: ignore[arg-type]
        ingest=ingest,  # type: ignore[arg-type]
        executor=pool,
        max_upload_bytes=1000,
    )
    server = DepartmentSFTPServer(None, services, SessionInfo(DeptCode("MZ330100"), "127.0.0.1"))
    yield server, ingest, services
    pool.shutdown()


class _Log:
    def debug1(self, *args: object, **kw: object) -> None:
        pass

    info = debug1


def _handler(server: DepartmentSFTPServer, handles: dict[bytes, object]) -> Any:
    # asyncssh's real server handler, without a channel: enough for _process_close/_cleanup.
    handler: Any = asyncssh.sftp.SFTPServerHandler.__new__(asyncssh.sftp.SFTPServerHandler)
    handler._server = server
    handler._version = 3
    handler._file_handles = handles
    handler._dir_handles = {}
    handler._logger = _Log()
    handler._writer = None
    handler._reader = None
    return handler


FLAGS_PUT = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


def test_client_close_commits_and_session_end_aborts(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, _ = world

    async def body() -> None:
        done = await server.open(b"/inbox/done.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        cut = await server.open(b"/inbox/cut.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        # out of order, as pipelining clients write
        server.write(done, 5, b"world")
        server.write(done, 0, b"hello")
        server.write(cut, 0, b"partial")
        handler = _handler(server, {b"1": done, b"2": cut})
        await asyncssh.sftp.SFTPServerHandler._process_close(handler, SSHPacket(String(b"1")))
        assert [a["file_name"] for a in ingest.accepted] == ["done.bundle"]
        assert ingest.accepted[0]["data"] == b"helloworld"
        assert ingest.accepted[0]["remote_addr"] == "127.0.0.1"
        # the session ends with cut.bundle still open: asyncssh's clean-up closes it
        await asyncssh.sftp.SFTPServerHandler._cleanup(handler, None)

    asyncio.run(body())
    assert [a["file_name"] for a in ingest.accepted] == ["done.bundle"]
    assert list(ingest.spool.partial.iterdir()) == []
    # after the commit the name stays visible to this session (paramiko checks the size)
    attrs = server.stat(b"/inbox/done.bundle")
    assert attrs.size == 10
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        server.stat(b"/inbox/cut.bundle")


def test_a_direct_close_call_is_treated_as_an_abort(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, _ = world

    async def body() -> None:
        up = await server.open(b"/inbox/x.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        server.write(up, 0, b"data")
        result = server.close(up)  # not asyncssh's close handler: fail closed
        assert result is None

    asyncio.run(body())
    assert ingest.accepted == []
    assert list(ingest.spool.partial.iterdir()) == []


def test_oversized_write_spoils_the_upload(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, _ = world

    async def body() -> None:
        up = await server.open(b"/inbox/big.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        server.write(up, 0, b"x" * 600)
        with pytest.raises(asyncssh.SFTPQuotaExceeded):
            server.write(up, 600, b"x" * 600)
        assert list(ingest.spool.partial.iterdir()) == []  # discarded at once
        with pytest.raises(asyncssh.SFTPFailure):
            server.write(up, 0, b"y")  # and it stays spoiled
        handler = _handler(server, {b"1": up})
        with pytest.raises(asyncssh.SFTPFailure):
            await asyncssh.sftp.SFTPServerHandler._process_close(handler, SSHPacket(String(b"1")))

    asyncio.run(body())
    assert ingest.accepted == []


def test_far_offset_cannot_create_a_huge_sparse_file(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, _ = world

    async def body() -> None:
        up = await server.open(b"/inbox/sparse.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        with pytest.raises(asyncssh.SFTPQuotaExceeded):
            server.write(up, 2**62, b"x")

    asyncio.run(body())
    assert list(ingest.spool.partial.iterdir()) == []


def test_quota_counts_outstanding_bytes(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, _, services = world
    services.used, services.quota = 900, 1000

    async def body() -> None:
        up = await server.open(b"/inbox/q.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())
        server.write(up, 0, b"x" * 100)
        with pytest.raises(asyncssh.SFTPQuotaExceeded):
            server.write(up, 100, b"x")
        services.used = 1000
        with pytest.raises(asyncssh.SFTPQuotaExceeded):
            await server.open(b"/inbox/r.bundle", FLAGS_PUT, asyncssh.SFTPAttrs())

    asyncio.run(body())


@pytest.mark.parametrize(
    ("path", "flags", "error"),
    [
        (b"/inbox/q.bundle", asyncssh.FXF_READ, asyncssh.SFTPPermissionDenied),
        (b"/inbox/q.bundle", asyncssh.FXF_READ | FLAGS_PUT, asyncssh.SFTPPermissionDenied),
        (
            b"/inbox/q.bundle",
            asyncssh.FXF_WRITE | asyncssh.FXF_APPEND,
            asyncssh.SFTPPermissionDenied,
        ),
        (b"/inbox/q.bundle", asyncssh.FXF_WRITE, asyncssh.SFTPPermissionDenied),
        (b"/outbox/r.txt", FLAGS_PUT, asyncssh.SFTPPermissionDenied),
        (b"/q.bundle", FLAGS_PUT, asyncssh.SFTPPermissionDenied),
        (b"/inbox/../../tmp/q", FLAGS_PUT, asyncssh.SFTPPermissionDenied),
        (b"/inbox/.q", FLAGS_PUT, asyncssh.SFTPInvalidFilename),
        (b"/etc/passwd", asyncssh.FXF_READ, asyncssh.SFTPNoSuchFile),
        (b"/outbox/missing", asyncssh.FXF_READ, asyncssh.SFTPNoSuchFile),
        (b"/outbox", asyncssh.FXF_READ, asyncssh.SFTPFailure),
    ],
)
def test_open_rules(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
    path: bytes,
    flags: int,
    error: type[Exception],
) -> None:
    server, ingest, _ = world
    (ingest.spool.outbox("MZ330100") / "r.txt").write_bytes(b"receipt")
    with pytest.raises(error):
        asyncio.run(server.open(path, flags, asyncssh.SFTPAttrs()))
    assert list(ingest.spool.partial.iterdir()) == []


def test_outbox_shows_regular_files_only(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices], tmp_path: Path
) -> None:
    server, ingest, _ = world
    outbox = ingest.spool.outbox("MZ330100")
    (outbox / "r1.receipt").write_bytes(b"one")
    (outbox / ".r2.receipt.tmp").write_bytes(b"half-written")
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    (outbox / "link").symlink_to(secret)
    (outbox / "sub").mkdir()
    os.mkfifo(outbox / "fifo")

    async def listing(path: bytes) -> list[str]:
        return [n.filename.decode() async for n in server.scandir(path)]

    assert asyncio.run(listing(b"/outbox")) == [".", "..", "r1.receipt"]
    assert asyncio.run(listing(b"/")) == [".", "..", "inbox", "outbox"]
    assert asyncio.run(listing(b"/inbox")) == [".", ".."]
    for name in (b"link", b"sub", b"fifo", b".r2.receipt.tmp"):
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            server.stat(b"/outbox/" + name)
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            asyncio.run(server.open(b"/outbox/" + name, asyncssh.FXF_READ, asyncssh.SFTPAttrs()))
    handle = asyncio.run(
        server.open(b"/outbox/r1.receipt", asyncssh.FXF_READ, asyncssh.SFTPAttrs())
    )
    assert server.read(handle, 0, 100) == b"one"
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.write(handle, 0, b"x")
    done = server.close(handle)
    assert done is not None  # read in full: a pull
    asyncio.run(done)  # type: ignore[arg-type]


def test_only_a_download_that_read_every_byte_is_a_pull(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, services = world
    outbox = ingest.spool.outbox("MZ330100")
    (outbox / "result.bundle").write_bytes(bytes(range(256)) * 4)
    (outbox / "empty.bundle").write_bytes(b"")

    def opened(name: str) -> Any:
        path = b"/outbox/" + name.encode()
        return asyncio.run(server.open(path, asyncssh.FXF_READ, asyncssh.SFTPAttrs()))

    partial = opened("result.bundle")
    server.read(partial, 0, 512)
    server.read(partial, 600, 424)  # a gap: 512..600 never sent
    assert server.close(partial) is None
    empty = opened("empty.bundle")
    assert server.read(empty, 0, 10) == b""
    assert server.close(empty) is None
    whole = opened("result.bundle")
    # out of order and overlapping, as pipelining clients read, then the EOF probe
    for offset, size in ((512, 300), (0, 512), (700, 400), (1024, 100)):
        server.read(whole, offset, size)
    done = server.close(whole)
    assert done is not None
    asyncio.run(done)  # type: ignore[arg-type]
    assert services.__dict__["pulls"] == [("MZ330100", "result.bundle")]


def test_mutations_are_refused(
    world: tuple[DepartmentSFTPServer, FakeIngest, FakeServices],
) -> None:
    server, ingest, _ = world
    (ingest.spool.outbox("MZ330100") / "r.txt").write_bytes(b"receipt")
    denied = asyncssh.SFTPPermissionDenied
    calls = [
        lambda: server.remove(b"/outbox/r.txt"),
        lambda: server.rename(b"/outbox/r.txt", b"/inbox/r.txt"),
        lambda: server.posix_rename(b"/outbox/r.txt", b"/outbox/s.txt"),
        lambda: server.mkdir(b"/inbox/d", asyncssh.SFTPAttrs()),
        lambda: server.rmdir(b"/outbox"),
        lambda: server.symlink(b"/etc/passwd", b"/inbox/p"),
        lambda: server.link(b"/outbox/r.txt", b"/inbox/r"),
        lambda: server.setstat(b"/outbox/r.txt", asyncssh.SFTPAttrs(permissions=0o777)),
    ]
    for call in calls:
        with pytest.raises(denied):
            call()
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        server.remove(b"/etc/passwd")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.map_path(b"/etc/passwd")  # any asyncssh default we missed fails closed
    assert (ingest.spool.outbox("MZ330100") / "r.txt").read_bytes() == b"receipt"


def test_orphan_partials_are_removed_but_live_ones_kept(tmp_path: Path) -> None:
    import fcntl

    spool = Spool(tmp_path / "spool")
    _, orphan = spool.new_partial()
    orphan.write_bytes(b"left by a crash")
    _, live = spool.new_partial()
    fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert spool.remove_orphan_partials() == [orphan]
        assert live.exists() and not orphan.exists()
    finally:
        os.close(fd)
