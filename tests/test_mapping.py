"""DoubleMappedBuffer: the mapping every ring stands on."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scenario import run_scenario

import aring

PAGE = aring.capabilities().page_size


def test_capabilities_report_this_platform() -> None:
    caps = aring.capabilities()
    assert caps.page_size == os.sysconf("SC_PAGESIZE")
    assert caps.allocation_granularity >= caps.page_size
    assert caps.strategy in {"memfd", "shm", "copy"}
    assert caps.double_mapped == (caps.strategy != "copy")
    assert caps.notifier in {"eventfd", "pipe"}
    if caps.strategy == "copy":
        assert caps.reason, "a missing double mapping must say why"
    # What each way of mapping says agrees with what auto picked, and with trying it.
    assert caps.has_mmap
    assert caps.strategy == ("memfd" if caps.has_memfd else "shm" if caps.has_shm_open else "copy")
    for name, works in (("memfd", caps.has_memfd), ("shm", caps.has_shm_open)):
        try:
            aring.DoubleMappedBuffer(1, strategy=name).close()
        except aring.MappingError:
            assert not works, name
        else:
            assert works, name


def test_size_is_rounded_up_to_the_page(strategy: str) -> None:
    with aring.DoubleMappedBuffer(1, strategy=strategy) as buf:
        assert buf.size == PAGE
        assert len(buf) == 2 * PAGE
        assert buf.strategy == strategy
        assert buf.double_mapped == (strategy != "copy")


def test_bytes_across_the_seam_read_back_as_one_view(strategy: str) -> None:
    with aring.DoubleMappedBuffer(2 * PAGE, strategy=strategy) as buf:
        n = buf.size
        payload = bytes(range(256)) * 4
        start = n - 300
        view = memoryview(buf)
        view[start : start + len(payload)] = payload
        buf.mirror(start, len(payload))
        # One contiguous view across the seam, and the alias of each half.
        assert bytes(view[start : start + len(payload)]) == payload
        assert bytes(view[start - n + n : start + 300]) == payload[:300]
        assert bytes(view[0 : len(payload) - 300]) == payload[300:]
        assert bytes(view[start - 0 : n]) == bytes(view[2 * n - 300 : 2 * n])
        view.release()


def test_mirror_alias_shows_every_write(strategy: str) -> None:
    with aring.DoubleMappedBuffer(PAGE, strategy=strategy) as buf:
        n = buf.size
        view = memoryview(buf)
        view[10:20] = b"0123456789"
        buf.mirror(10, 10)
        assert bytes(view[n + 10 : n + 20]) == b"0123456789"
        view[n + 30 : n + 35] = b"abcde"  # through the second half
        buf.mirror(n + 30, 5)
        assert bytes(view[30:35]) == b"abcde"
        view.release()


def test_double_mapping_aliases_without_mirror() -> None:
    strategy = aring.capabilities().strategy
    if strategy == "copy":
        pytest.skip(f"no double mapping here: {aring.capabilities().reason}")
    with aring.DoubleMappedBuffer(PAGE) as buf:
        view = memoryview(buf)
        view[buf.size - 1] = 7
        assert view[2 * buf.size - 1] == 7
        view.release()


def test_close_refuses_while_views_are_alive(strategy: str) -> None:
    buf = aring.DoubleMappedBuffer(PAGE, strategy=strategy)
    view = memoryview(buf)
    assert buf.exports == 1
    with pytest.raises(BufferError, match="exported view"):
        buf.close()
    assert not buf.closed
    view[0] = 1  # still mapped
    view.release()
    buf.close()
    assert buf.closed
    buf.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        memoryview(buf)
    with pytest.raises(ValueError, match="closed"):
        buf.fileno()


def test_fileno(strategy: str) -> None:
    with aring.DoubleMappedBuffer(PAGE, strategy=strategy) as buf:
        fd = buf.fileno()
        if strategy == "copy":
            assert fd is None
        else:
            assert isinstance(fd, int)
            assert os.fstat(fd).st_size == buf.size


def test_file_strategy_with_a_path_keeps_its_bytes(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "ring.bin")
    with aring.DoubleMappedBuffer(PAGE, path=path) as buf:
        assert buf.strategy == "file"
        view = memoryview(buf)
        view[buf.size - 2 : buf.size + 2] = b"wxyz"
        view.release()
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == PAGE
    assert data[-2:] == b"wx" and data[:2] == b"yz"


@pytest.mark.parametrize("content", [b"precious", b""], ids=["with data", "empty"])
def test_an_existing_file_is_never_taken(tmp_path: os.PathLike[str], content: bytes) -> None:
    path = os.path.join(tmp_path, "taken.bin")
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o600)
    with pytest.raises(aring.MappingError) as info:
        aring.DoubleMappedBuffer(PAGE, path=path)
    assert info.value.errno == errno.EEXIST
    assert "a file already exists at" in str(info.value)
    with open(path, "rb") as f:
        assert f.read() == content, "a refused file must be left as it was"


def test_path_that_is_a_directory_is_refused(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(aring.MappingError) as info:
        aring.DoubleMappedBuffer(PAGE, path=tmp_path)
    assert isinstance(info.value, OSError)
    assert info.value.step.startswith("open")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"size": 0}, ValueError, "size must be >= 1"),
        ({"size": -1}, ValueError, "size must be >= 1, got -1"),
        ({"size": 1.5}, TypeError, "size must be an int, not float"),
        ({"size": "4096"}, TypeError, "size must be an int, not str"),
        ({"size": True}, TypeError, "size must be an int, not bool"),
        ({"size": PAGE, "strategy": "mmap"}, ValueError, "unknown strategy 'mmap'"),
        ({"size": PAGE, "strategy": 3}, TypeError, "strategy must be a str"),
        ({"size": PAGE, "strategy": "memfd", "path": "/tmp/x"}, ValueError, "path= needs"),
        ({"size": 1 << 63}, ValueError, "too large"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    size = kwargs.pop("size")
    with pytest.raises(exc, match=match):
        aring.DoubleMappedBuffer(size, **kwargs)  # type: ignore[arg-type]


def test_mirror_arguments_are_checked() -> None:
    with aring.DoubleMappedBuffer(PAGE, strategy="copy") as buf:
        with pytest.raises(ValueError, match="past the window"):
            buf.mirror(2 * PAGE - 1, 2)
        with pytest.raises(ValueError, match="n must be <= size"):
            buf.mirror(0, PAGE + 1)
        with pytest.raises(TypeError):
            buf.mirror(0.0, 1)


def test_address_space_exhaustion_names_the_step_and_errno() -> None:
    # Ask for more than the address-space limit allows: the mapping step must
    # fail with ENOMEM and say which step, not crash.
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, hard))
    try:
        with pytest.raises(aring.MappingError) as info:
            aring.DoubleMappedBuffer(4 << 30)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert info.value.errno == errno.ENOMEM
    assert info.value.step.startswith("mmap")
    assert "ENOMEM" in str(info.value) and "vm.max_map_count" in str(info.value)


def test_too_many_open_files_is_emfile_not_a_fallback() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        with pytest.raises(aring.MappingError) as info:
            aring.DoubleMappedBuffer(PAGE)  # auto must not hide EMFILE behind "copy"
        assert info.value.errno == errno.EMFILE
        assert "EMFILE" in str(info.value)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


BLOCK_EVENTFD = r"""
#include <errno.h>
int eventfd(unsigned int initval, int flags) {
    (void)initval; (void)flags; errno = ENOSYS; return -1;
}
"""


@pytest.mark.skipif(sys.platform != "linux", reason="eventfd is Linux's")
def test_auto_notifier_is_a_pipe_where_eventfd_is_blocked(tmp_path: Path) -> None:
    # A sandbox that refuses eventfd (seccomp, gVisor) stands in for here by a
    # preloaded eventfd() that fails: capabilities() and Ring() must agree.
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the eventfd blocker")
    source = tmp_path / "block_eventfd.c"
    source.write_text(BLOCK_EVENTFD)
    blocker = tmp_path / "block_eventfd.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", blocker, source], check=True)
    outcomes = run_scenario(
        """
        outcome("probe", lambda: (aring.capabilities().notifier, aring.capabilities().reason))
        ring = aring.Ring(4096)
        outcome("auto", lambda: ring.notifier)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"wake")
        outcome("wait", lambda: (r.wait(1, 5), r.try_read()))
        outcome("eventfd", lambda: aring.Ring(4096, notifier="eventfd"))
        """,
        prefix=["env", f"LD_PRELOAD={blocker}"],
    )
    assert outcomes["probe"].startswith("returned ('pipe', "), outcomes
    assert "eventfd" in outcomes["probe"], "capabilities() must say why not eventfd"
    assert outcomes["auto"] == "returned 'pipe'"
    assert outcomes["wait"] == "returned (True, b'wake')"
    assert outcomes["eventfd"].startswith("MappingError"), outcomes["eventfd"]
    with aring.Ring(4096) as ring:  # and here, unblocked, auto is what the probe found
        assert ring.notifier == aring.capabilities().notifier


BLOCK_MEMFD = r"""
#include <errno.h>
int memfd_create(const char *name, unsigned int flags) {
    (void)name; (void)flags; errno = EPERM; return -1;
}
"""


@pytest.mark.skipif(sys.platform != "linux", reason="memfd_create is Linux's")
def test_auto_falls_back_to_shm_where_memfd_is_blocked_and_logs_why(tmp_path: Path) -> None:
    # A sandbox whose seccomp filter refuses memfd_create (EPERM), stood in
    # for by a preloaded memfd_create() that fails.
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the memfd blocker")
    source = tmp_path / "block_memfd.c"
    source.write_text(BLOCK_MEMFD)
    blocker = tmp_path / "block_memfd.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", blocker, source], check=True)
    outcomes = run_scenario(
        """
        import logging
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())
        logging.getLogger("aring").addHandler(Keep())
        caps = aring.capabilities()
        outcome("probe", lambda: (caps.strategy, caps.has_memfd, caps.has_shm_open, caps.has_mmap))
        outcome("reason", lambda: caps.reason)
        ring = aring.Ring(4096)
        aring.Ring(4096).close()
        outcome("auto", lambda: ring.strategy)
        outcome("logged", lambda: records)
        outcome("memfd", lambda: aring.Ring(4096, strategy="memfd"))
        """,
        prefix=["env", f"LD_PRELOAD={blocker}"],
    )
    assert outcomes["probe"] == "returned ('shm', False, True, True)"
    assert "memfd: [Errno 1] memfd_create failed" in outcomes["reason"], outcomes["reason"]
    assert outcomes["auto"] == "returned 'shm'"
    logged = outcomes["logged"]
    assert logged.count("fell back to a slower mapping: memfd: [Errno 1] memfd_create") == 1, (
        "logged once per process, with the reason"
    )
    assert outcomes["memfd"].startswith("MappingError: [Errno 1]")


def _shared_kib() -> int:
    """This process's resident shared memory (memfd, shm and shared anonymous pages)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    pytest.skip("no RssShmem in /proc/self/status")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("strategy", ["memfd", "copy"])
def test_populate_faults_the_ring_in_at_creation(strategy: str) -> None:
    size = 32 << 20
    before = _shared_kib()
    with aring.Ring(size, strategy=strategy) as lazy:
        assert _shared_kib() - before < 1024, "without populate, memory comes as it is touched"
        with aring.Ring(size, strategy=strategy, populate=True) as eager:
            assert _shared_kib() - before >= size // 1024, "populate=True allocated every page"
            eager.writer().try_write(b"still a ring")
            assert eager.reader().try_read() == b"still a ring"
        del lazy
