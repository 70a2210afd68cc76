"""Array files: exact round trips in every codec, plain `.npy` inside, streaming without a second
copy, and one CheckpointError line for every kind of bad file."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import hypothesis.extra.numpy as hnp
import lz4.frame
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from distdqn.errors import CheckpointError
from distdqn.storage import array_files
from distdqn.storage.array_files import CODECS, array_file_name, read_array, read_array_into, write_array

RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, (6, 84, 84), dtype=np.uint8)
ARRAYS = {
    "uint8 frames": FRAMES,
    "int64": RNG.integers(-(2**62), 2**62, (50, 3)),
    "float32 with nan and inf": np.array([[0.5, np.nan], [np.inf, -np.inf], [-0.0, 1e-40]], np.float32),
    "float64": RNG.normal(size=(7, 5, 3)),
    "bool": RNG.random((33, 10, 10, 4)) < 0.1,
    "float16": RNG.normal(size=17).astype(np.float16),
    "big-endian float32": RNG.normal(size=(4, 4)).astype(">f4"),
    "structured": np.array([(1, 2.5), (3, -1.0)], dtype=[("action", "<i4"), ("reward", "<f8")]),
    "0-d": np.array(3.25),
    "empty frames": np.empty((0, 84, 84), np.uint8),
    "empty middle axis": np.empty((3, 0, 2), np.int16),
    "transposed": np.arange(60, dtype=np.int32).reshape(3, 4, 5).T,
    "strided": FRAMES[::2, 3:70:3, ::-5],
    "fortran order": np.asfortranarray(RNG.normal(size=(6, 9))),
}


def _round_trip(tmp_path: Path, array: np.ndarray, codec: str) -> np.ndarray:
    path = tmp_path / array_file_name("array", codec)
    size = write_array(path, array)
    assert size == path.stat().st_size
    return read_array(path)


def _assert_same(read: np.ndarray, array: np.ndarray) -> None:
    assert read.dtype == array.dtype and read.shape == array.shape
    assert read.tobytes() == array.tobytes()  # byte for byte: NaNs and -0.0 included
    assert read.flags.c_contiguous and read.flags.writeable


def test_file_names_say_the_codec():
    assert [array_file_name("obs", codec) for codec in CODECS] == ["obs.npy.zst", "obs.npy.lz4", "obs.npy"]
    with pytest.raises(ValueError, match="unknown array codec 'gzip'"):
        array_file_name("obs", "gzip")


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", ARRAYS)
def test_round_trip(tmp_path: Path, codec: str, kind: str):
    _assert_same(_round_trip(tmp_path, ARRAYS[kind], codec), ARRAYS[kind])


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7)),
    codec=st.sampled_from(CODECS),
    step=st.integers(-3, 3).filter(bool),
    transpose=st.booleans(),
    chunk_bytes=st.sampled_from([1, 5, 64, 1 << 20]),
)
def test_round_trip_any_array_in_any_chunks(
    array: np.ndarray, codec: str, step: int, transpose: bool, chunk_bytes: int
):
    view = array.T if transpose else array
    if view.ndim:
        view = view[::step]
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        patch.setattr(array_files, "CHUNK_BYTES", chunk_bytes)
        _assert_same(_round_trip(Path(directory), view, codec), view)


@pytest.mark.parametrize("codec", CODECS)
def test_the_file_is_plain_npy_without_pickle(tmp_path: Path, codec: str):
    """Decompressed by the codec's own tool, every file is what `np.save` writes, and
    `np.load(allow_pickle=False)` reads it."""
    array = ARRAYS["transposed"]
    path = tmp_path / array_file_name("array", codec)
    write_array(path, array)
    decompress = {"zstd": zstandard.decompress, "lz4": lz4.frame.decompress, "none": bytes}[codec]
    npy = decompress(path.read_bytes())
    saved = io.BytesIO()
    np.save(saved, np.ascontiguousarray(array), allow_pickle=False)
    assert npy == saved.getvalue()
    assert np.array_equal(np.load(io.BytesIO(npy), allow_pickle=False), array)


def test_an_object_array_is_never_written(tmp_path: Path):
    with pytest.raises(ValueError, match="only be stored by pickling"):
        write_array(tmp_path / "a.npy.zst", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "a.npy.zst").exists()


def test_write_refuses_a_name_without_a_codec(tmp_path: Path):
    with pytest.raises(ValueError, match="must end in one of"):
        write_array(tmp_path / "a.bin", FRAMES)


@pytest.mark.parametrize("codec", CODECS)
def test_read_into_fills_the_given_array(tmp_path: Path, codec: str):
    path = tmp_path / array_file_name("frames", codec)
    write_array(path, FRAMES)
    out = np.zeros_like(FRAMES)
    address = out.ctypes.data
    assert read_array_into(path, out) is None
    assert np.array_equal(out, FRAMES) and out.ctypes.data == address


@pytest.mark.parametrize(
    ("out", "holds"),
    [
        (np.zeros((5, 84, 84), np.uint8), r"holds uint8\[6, 84, 84\], expected uint8\[5, 84, 84\]"),
        (np.zeros((6, 84, 84), np.float32), r"holds uint8\[6, 84, 84\], expected float32\[6, 84, 84\]"),
    ],
)
def test_read_into_refuses_another_shape_or_dtype(tmp_path: Path, out: np.ndarray, holds: str):
    path = tmp_path / "frames.npy.zst"
    write_array(path, FRAMES)
    with pytest.raises(CheckpointError, match=holds) as caught:
        read_array_into(path, out)
    _assert_one_line(caught.value, path)
    assert not out.any()


def test_read_into_needs_contiguous_writable_memory(tmp_path: Path):
    path = tmp_path / "frames.npy"
    write_array(path, FRAMES)
    with pytest.raises(ValueError, match="C-contiguous, writable"):
        read_array_into(path, np.zeros((6, 84, 168), np.uint8)[:, :, ::2])
    read_only = np.zeros_like(FRAMES)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="C-contiguous, writable"):
        read_array_into(path, read_only)


def _assert_one_line(error: Exception, path: Path) -> None:
    message = str(error)
    assert message.startswith(f"{path}: ") and "\n" not in message


def _damaged(path: Path, content: bytes, match: str, also_into: bool = False) -> None:
    """Both readers (`read_array_into` given FRAMES' shape if `also_into`) refuse `content` in one line."""
    path.write_bytes(content)
    readers: list[Callable[[Path], object]] = [read_array]
    if also_into:
        readers.append(lambda p: read_array_into(p, np.zeros_like(FRAMES)))
    for read in readers:
        with pytest.raises(CheckpointError, match=match) as caught:
            read(path)
        _assert_one_line(caught.value, path)


def _written(tmp_path: Path, codec: str, array: np.ndarray = FRAMES) -> tuple[Path, bytes]:
    path = tmp_path / array_file_name("frames", codec)
    write_array(path, array)
    return path, path.read_bytes()


@pytest.mark.parametrize("codec", CODECS)
def test_every_truncation_is_an_error(tmp_path: Path, codec: str):
    path, content = _written(tmp_path, codec)
    cuts = {*range(0, len(content), max(1, len(content) // 40)), *range(len(content) - 24, len(content))}
    for cut in sorted(cuts):
        _damaged(path, content[:cut], "truncated|damaged", also_into=True)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("tail", [b"\0", b"garbage" * 9, zstandard.FRAME_HEADER, b"\x04\x22\x4d\x18", "copy"])
def test_bytes_after_the_array_are_an_error(tmp_path: Path, codec: str, tail: bytes | str):
    path, content = _written(tmp_path, codec)
    _damaged(path, content + (content if tail == "copy" else tail), "after|damaged", also_into=True)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_flipped_byte_is_an_error_or_changes_nothing(tmp_path: Path, codec: str):
    """The codecs' checksums catch any change to the data; a few flips (an offset that points at
    equal bytes, say) decode to the very same array, which is then harmless."""
    array = RNG.integers(0, 4, (3, 84, 84), dtype=np.uint8)
    path, content = _written(tmp_path, codec, array)
    caught = 0
    for position in range(0, len(content), 3):
        damaged = bytearray(content)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        try:
            assert np.array_equal(read_array(path), array)
        except CheckpointError as error:
            _assert_one_line(error, path)
            caught += 1
    assert caught > 0.9 * len(range(0, len(content), 3))


def _compressed(codec: str, content: bytes) -> bytes:
    return {"zstd": zstandard.compress, "lz4": lz4.frame.compress, "none": bytes}[codec](content)


def _npy(header: dict, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + data


@pytest.mark.parametrize("codec", CODECS)
def test_an_object_array_in_a_file_is_refused_unread(tmp_path: Path, codec: str):
    pickled = io.BytesIO()
    np.save(pickled, np.array([1, "two"], dtype=object), allow_pickle=True)
    _damaged(tmp_path / array_file_name("a", codec), _compressed(codec, pickled.getvalue()), "only pickle can read")


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x80\x04\x95 a pickle, not an array", "not an array file .*magic string"),
        (b"", "not an array file .*magic string"),
        (b"\x93NUMPY\x03\x00" + b"\0" * 20, "format version 3.0"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<u1',", "damaged .npy header"),
        (_npy({"descr": "<f8", "fortran_order": True, "shape": (2, 2)}, bytes(32)), "Fortran order"),
        (_npy({"descr": "<u1", "fortran_order": False, "shape": (10**15,)}), r"\(931,322.6 GiB\); this machine has"),
        (_npy({"descr": "<u1", "fortran_order": False, "shape": (3, -2)}, bytes(6)), r"damaged .npy header \(shape"),
    ],
)
def test_foreign_content_is_refused(tmp_path: Path, codec: str, content: bytes, match: str):
    _damaged(tmp_path / array_file_name("a", codec), _compressed(codec, content), match)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_an_uncompressed_file_under_a_codec_suffix_is_refused(tmp_path: Path, codec: str):
    npy = io.BytesIO()
    np.save(npy, FRAMES)
    _damaged(tmp_path / array_file_name("a", codec), npy.getvalue(), "damaged or not an array file", also_into=True)


def test_missing_file_and_unknown_suffix_are_refused(tmp_path: Path):
    with pytest.raises(CheckpointError, match="cannot be read .FileNotFoundError: No such file or directory.$"):
        read_array(tmp_path / "missing.npy.zst")
    (tmp_path / "frames.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not an array file: the name ends in none of"):
        read_array(tmp_path / "frames.npz")


def _refused(path: Path, match: str, **kwargs) -> None:
    """`read_array` refuses `path` in one line matching `match`."""
    with pytest.raises(CheckpointError, match=match) as caught:
        read_array(path, **kwargs)
    _assert_one_line(caught.value, path)


def _zeros_file(path: Path, codec: str, shape: tuple[int, ...], data_bytes: int) -> None:
    """A file whose header declares float32[`shape`], followed by `data_bytes` zero bytes, written
    a chunk at a time: a compressed one is a few kilobytes whatever it declares."""
    header = _npy({"descr": "<f4", "fortran_order": False, "shape": shape})
    with path.open("wb") as file, array_files._compressing(file, codec, len(header) + data_bytes) as sink:
        sink.write(header)
        chunk = bytes(1 << 20)
        for start in range(0, data_bytes, len(chunk)):
            sink.write(chunk[: data_bytes - start])


@pytest.mark.parametrize("codec", CODECS)
def test_a_header_declaring_more_than_the_file_holds_is_refused_before_allocating(tmp_path: Path, codec: str):
    """A 64 KB file whose header declares float32[2**27, 4] (2 GiB) was given a 2 GiB array
    before its data ran out; the declared size is now checked against the frame's content size
    (the file's size, uncompressed) before anything is allocated."""
    path = tmp_path / array_file_name("replay", codec)
    _zeros_file(path, codec, (2**27, 4), 64_000)
    match = r"is truncated: its .npy header declares 2,147,483,776 bytes with the data, .* holds 64,128$"
    assert _peak_bytes(lambda: _refused(path, match)) < 2**20


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_declaring_less_than_it_holds_is_refused_before_allocating(tmp_path: Path, codec: str):
    path = tmp_path / array_file_name("replay", codec)
    _zeros_file(path, codec, (2, 4), 100_000)
    _damaged(path, path.read_bytes(), r"has 99,968 bytes after its array: its .npy header declares 160 bytes")


@pytest.mark.parametrize("codec", CODECS)
def test_max_bytes_refuses_a_large_array_before_allocating(tmp_path: Path, codec: str):
    """A zstd frame holds 128 MiB of zeros in 4 KB, every size consistent: only the caller knows
    that its layout has no room for it, and says so with `max_bytes`."""
    path = tmp_path / array_file_name("replay", codec)
    _zeros_file(path, codec, (2**23, 4), 2**27)
    assert codec != "zstd" or path.stat().st_size < 5_000
    match = r"declares float32\[8388608, 4\] \(134,217,728 bytes\), more than the 1,000,000 bytes expected here$"
    assert _peak_bytes(lambda: _refused(path, match, max_bytes=10**6)) < 2**20
    path.unlink()
    path, _ = _written(tmp_path, codec)
    _assert_same(read_array(path, max_bytes=FRAMES.nbytes), FRAMES)
    with pytest.raises(CheckpointError, match="more than the 42,335 bytes expected"):
        read_array(path, max_bytes=FRAMES.nbytes - 1)


@pytest.mark.parametrize(
    ("codec", "compress"),
    [
        ("zstd", zstandard.ZstdCompressor(write_content_size=False).compress),
        ("lz4", lambda content: lz4.frame.compress(content, store_size=False)),
    ],
)
def test_a_frame_without_its_content_size_is_refused(tmp_path: Path, codec: str, compress):
    npy = io.BytesIO()
    np.save(npy, FRAMES)
    _damaged(tmp_path / array_file_name("a", codec), compress(npy.getvalue()), "has no content size", also_into=True)


def _peak_bytes(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("codec", CODECS)
def test_streams_without_a_second_copy(tmp_path: Path, codec: str):
    """A 400 MB array is written, written as a strided view, and read back into place with less
    than a quarter of its size allocated beside it (tracemalloc sees NumPy's allocations: reading
    into a new array shows the array)."""
    frames = np.empty((56_700, 84, 84), np.uint8)
    frames[:] = (np.arange(84 * 84) % 251).reshape(84, 84)
    frames[::97, 0, 0] = 7
    path = tmp_path / array_file_name("frames", codec)
    limit = frames.nbytes // 4

    assert _peak_bytes(lambda: write_array(path, frames)) < limit
    assert _peak_bytes(lambda: read_array_into(path, frames)) < limit
    assert frames[97, 0, 0] == 7 and frames[98, 0, 0] == 0
    assert frames.nbytes <= _peak_bytes(lambda: read_array(path)) < frames.nbytes + limit
    assert _peak_bytes(lambda: write_array(path, frames[:, ::2, :])) < limit
    half = np.empty((56_700, 42, 84), np.uint8)
    read_array_into(path, half)
    assert np.array_equal(half, frames[:, ::2, :])
    path.unlink()  # pytest keeps the temporary directories of recent runs
