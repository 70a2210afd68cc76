"""NumPy arrays in files for replay snapshots: the `.npy` format, zstd- or lz4-compressed, streamed.

A replay snapshot runs to gigabytes, so both directions stream in `CHUNK_BYTES` pieces straight
from and into the array's own memory and never hold a second full-size copy. The `.npy` format
holds plain dtypes without pickle (object arrays are refused both ways), and its bytes are what
`np.save` writes, so an uncompressed file is an ordinary `.npy` and a compressed one turns into
one with the `zstd -d` or `lz4 -d` command line tools. The file's suffix names its codec.

Both codecs write a checksum of the content and the content's size into their frame, so a
flipped byte or a missing tail is found on reading (an uncompressed file has no checksum: a
checkpoint's manifest holds the SHA-256 of every file). Every way a file can be wrong (not ours,
damaged, truncated, followed by other bytes, holding another shape) is one `CheckpointError` line.

A file is small next to what it may declare (a zstd frame holds 2 GiB of zeros in 65 KB), so
nothing is allocated before the declared array is checked against what the file says it holds
(the frame's content size, or the size of an uncompressed file), against what the caller expects
(`read_array_into`'s array, `read_array`'s `max_bytes`) and against this machine's memory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

import lz4.frame
import numpy as np
import zstandard

from distdqn.errors import CheckpointError
from distdqn.memory import gib, require_memory

CODECS = ("zstd", "lz4", "none")
_SUFFIXES = {"zstd": ".npy.zst", "lz4": ".npy.lz4", "none": ".npy"}

CHUNK_BYTES = 1 << 20
"""Bytes handed to the compressor, or asked of the decompressor, at once. A thousand calls a
gigabyte cost nothing, and small chunks keep the memory beside the array small: lz4's reader
makes a bytes object per chunk, which at 16 MiB halved its speed."""

ZSTD_LEVEL = 1
"""zstd's fastest standard level. Measured with benchmarks/array_codecs.py on the 2-core
development VM: on 200k synthetic Atari frames (1,411 MB) level 3, the library's default, wrote
a *larger* file (36.5 vs 34.2 MB) in 1.1x the time (1.27x the CPU time when compressing in
memory); on MinAtar frames it saved 0.03 of 0.2 MB. Level 1 is as small and faster."""

ZSTD_THREADS = 0
"""zstd compresses on the calling thread. Its worker threads (`threads=-1`) wrote the same Atari
frames 1.13x faster (0.96 vs 1.09 s) and MinAtar's slower on the 2-core VM; in a run they
would take cores from the actors and the learner, which go on while a checkpoint is written."""


class _Sink(Protocol):
    def write(self, data: memoryview | bytes, /) -> int: ...


class _Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int: ...


class _Damaged(Exception):
    """What is wrong with a file being read; `_read` adds the file's name."""


def array_file_name(name: str, codec: str) -> str:
    """The file name of array `name` stored with `codec` (one of `CODECS`)."""
    if codec not in _SUFFIXES:
        raise ValueError(f"unknown array codec {codec!r}; expected one of {', '.join(CODECS)}")
    return name + _SUFFIXES[codec]


def _codec(path: Path) -> str | None:
    return next((codec for codec, suffix in _SUFFIXES.items() if path.name.endswith(suffix)), None)


def write_array(path: Path, array: np.ndarray) -> int:
    """Write `array` to `path` in the codec its suffix names; return the file's size in bytes.

    Syncing and atomic replacement are the caller's: a checkpoint syncs all its files at once.
    """
    codec = _codec(path)
    if codec is None:
        raise ValueError(f"{path}: the name must end in one of {', '.join(_SUFFIXES.values())}")
    if array.dtype.hasobject:
        raise ValueError(f"{path}: an array of dtype {array.dtype} can only be stored by pickling it")
    header = _npy_header(array)
    with path.open("wb") as file, _compressing(file, codec, len(header) + array.nbytes) as sink:
        sink.write(header)
        for chunk in _c_order_bytes(array):
            sink.write(chunk)
    return path.stat().st_size


def _npy_header(array: np.ndarray) -> bytes:
    """The `.npy` header `np.save` writes for `array`, in C order (the data is always written so)."""
    header = np.lib.format.header_data_from_array_1_0(array)
    header["fortran_order"] = False
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _compressing(file: io.BufferedWriter, codec: str, size: int) -> AbstractContextManager[_Sink]:
    """A writer into `file` for `size` bytes that compresses with `codec`; closing it ends the frame."""
    if codec == "zstd":
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS, write_checksum=True)
        return compressor.stream_writer(file, size=size, closefd=False)
    if codec == "lz4":
        return lz4.frame.LZ4FrameFile(file, "wb", content_checksum=True, source_size=size)
    return nullcontext(file)


def _c_order_bytes(array: np.ndarray) -> Iterator[memoryview]:
    """The bytes of `array` in C order, about `CHUNK_BYTES` at a time.

    A C-contiguous array is sliced without a copy; any other view is made contiguous one slab
    of rows along its first axis at a time, going into the rows when one row is bigger than that.
    """
    if array.flags.c_contiguous:
        data = _bytes(array)
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]
    elif array[0].nbytes > CHUNK_BYTES:
        for index in range(len(array)):
            yield from _c_order_bytes(array[index, ...])  # a view even of one element, never a scalar
    else:
        rows = CHUNK_BYTES // array[0].nbytes
        for start in range(0, len(array), rows):
            yield _bytes(np.ascontiguousarray(array[start : start + rows]))


def _bytes(array: np.ndarray) -> memoryview:
    """The memory of a C-contiguous array as bytes, shared, not copied."""
    return array.reshape(-1).view(np.uint8).data


def read_array(path: Path, max_bytes: int | None = None) -> np.ndarray:
    """The array stored in `path`, as a new writable array. A file declaring an array of more than
    `max_bytes` (when given: what the caller's layout can hold) is refused before anything is
    allocated, as is one larger than this machine's memory."""
    return _read(path, None, max_bytes)


def read_array_into(path: Path, out: np.ndarray) -> None:
    """Fill `out`, which must be C-contiguous and writable, with the array stored in `path`; the
    file must hold exactly `out`'s dtype and shape."""
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("read_array_into needs a C-contiguous, writable array to fill")
    _read(path, out, None)


def _read(path: Path, out: np.ndarray | None, max_bytes: int | None) -> np.ndarray:
    """The array in `path`, read into `out` or else a new array; turns every way the file can be
    wrong, the codec libraries' errors included, into one `CheckpointError` line."""
    codec = _codec(path)
    try:
        if codec is None:
            raise _Damaged(f"is not an array file: the name ends in none of {', '.join(_SUFFIXES.values())}")
        with path.open("rb") as file, _decompressing(file, codec) as source:
            shape, dtype, header_bytes = _read_npy_header(source)
            declared = _declared_bytes(shape, dtype)
            if out is not None and (out.shape, out.dtype) != (shape, dtype):
                raise _Damaged(f"holds {_describe(dtype, shape)}, expected {_describe(out.dtype, out.shape)}")
            if max_bytes is not None and declared > max_bytes:
                raise _Damaged(
                    f"declares {_describe(dtype, shape)} ({declared:,} bytes), more than the {max_bytes:,} "
                    "bytes expected here"
                )
            if out is None:
                require_memory(declared, f"holds {_describe(dtype, shape)} ({gib(declared)})", _Damaged)
            _check_content_size(file, codec, header_bytes + declared)
            if out is None:
                out = _allocate(shape, dtype)
            _fill(source, out)
            if source.read(1):
                raise _Damaged("has more data after its array")
            if codec == "zstd":
                _check_zstd_frame_fills(file)
    except _Damaged as error:
        raise CheckpointError(f"{path}: {error}") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({_reason(error)})") from None
    except (EOFError, ValueError, RuntimeError, zstandard.ZstdError) as error:
        raise CheckpointError(f"{path}: is damaged or not an array file ({_reason(error)})") from None
    return out


def _reason(error: Exception) -> str:
    """A library's error as one short line."""
    message = " ".join(str(getattr(error, "strerror", None) or error).split())
    return f"{type(error).__name__}: {message[:200]}"


def _decompressing(file: io.BufferedReader, codec: str) -> AbstractContextManager[_Source]:
    if codec == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(file, closefd=False)
    if codec == "lz4":
        return lz4.frame.LZ4FrameFile(file, "rb")
    return nullcontext(file)


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _Counting:
    """A reader that counts the bytes read through it: how long the `.npy` header was."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data


def _read_npy_header(source: _Source) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape and dtype a `.npy` header announces, and the header's length in bytes, refusing
    what only pickle could hold."""
    counting = _Counting(source)
    version = np.lib.format.read_magic(counting)
    if version not in _HEADER_READERS:
        raise _Damaged(f"is in .npy format version {version[0]}.{version[1]}, which this project never writes")
    try:
        shape, fortran_order, dtype = _HEADER_READERS[version](counting)
    except Exception as error:  # numpy parses the text with tokenize and ast, which raise all kinds
        raise _Damaged(f"has a damaged .npy header ({_reason(error)})") from None
    if dtype.hasobject:
        raise _Damaged(f"holds an array of dtype {dtype}, which only pickle can read")
    if any(side < 0 for side in shape):
        raise _Damaged(f"has a damaged .npy header (shape {shape})")
    if fortran_order:
        raise _Damaged("holds an array in Fortran order, which this project never writes")
    return shape, dtype, counting.count


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes of data an array of `shape` and `dtype` holds, in Python's unbounded integers (a
    header may declare more than NumPy's int64 can count)."""
    count = 1
    for side in shape:
        count *= side
    return count * dtype.itemsize


def _check_content_size(file: io.BufferedReader, codec: str, expected: int) -> None:
    """Check, before the data is read, that the file holds the `expected` bytes (header and data)
    its header declares: an uncompressed file's size, or the content size a zstd or lz4 frame
    records in its header (this project always writes it: a frame without it is not ours)."""
    if codec == "none":
        present = os.fstat(file.fileno()).st_size
        what = "the file holds"
    else:
        position = file.tell()
        file.seek(0)
        head = file.read(32)  # more than the longest zstd (18) or lz4 (19) frame header
        file.seek(position)
        if codec == "zstd":
            present = zstandard.get_frame_parameters(head).content_size
            unknown = present in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR)
        else:
            present = lz4.frame.get_frame_info(head)["content_size"]
            unknown = present == 0
        if unknown:
            raise _Damaged(f"has no content size in its {codec} frame header, which this project always writes")
        what = f"its {codec} frame holds"
    if present < expected:
        raise _Damaged(f"is truncated: its .npy header declares {expected:,} bytes with the data, {what} {present:,}")
    if present > expected:
        raise _Damaged(
            f"has {present - expected:,} bytes after its array: its .npy header declares {expected:,} bytes "
            f"with the data, {what} {present:,}"
        )


def _allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        raise _Damaged(f"holds {_describe(dtype, shape)}, more than this machine can allocate") from None


def _describe(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{dtype}[{', '.join(map(str, shape))}]"


def _fill(source: _Source, out: np.ndarray) -> None:
    """Read exactly `out.nbytes` from `source` into `out`'s memory, a chunk at a time."""
    data = _bytes(out)
    done = 0
    while done < len(data):
        got = source.readinto(data[done : done + CHUNK_BYTES])
        if not got:
            raise _Damaged(f"is truncated: its data ends after {done:,} of {len(data):,} bytes")
        done += got


_ZSTD_RLE_BLOCK = 1


def _check_zstd_frame_fills(file: io.BufferedReader) -> None:
    """Check that the zstd frame at the start of `file` ends exactly where the file does.

    python-zstandard's reader returns without complaint when its input stops inside the frame's
    checksum, or when the bytes after the frame look like the start of another one, so the
    frame's length is found by walking its block headers (RFC 8878, section 3.1.1).
    """
    file.seek(0)
    head = file.read(18)  # the longest frame header
    end = zstandard.frame_header_size(head)
    last = False
    while not last:
        file.seek(end)
        block = file.read(3)
        if len(block) < 3:
            raise _Damaged("is truncated inside its last zstd block header")
        header = int.from_bytes(block, "little")
        last, kind, size = bool(header & 1), (header >> 1) & 3, header >> 3
        end += 3 + (1 if kind == _ZSTD_RLE_BLOCK else size)
    end += 4 * zstandard.get_frame_parameters(head).has_checksum
    file_size = os.fstat(file.fileno()).st_size
    if file_size < end:
        raise _Damaged(f"is truncated: its zstd frame needs {end:,} bytes, the file has {file_size:,}")
    if file_size > end:
        raise _Damaged(f"has {file_size - end:,} bytes after its zstd frame")
