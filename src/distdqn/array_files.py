"""NumPy arrays in files without pickle: the `.npy` format inside a zstd or lz4 frame, streamed.

Replay snapshots run to gigabytes, so an array is written and read in chunks straight from and
into its own memory: neither direction makes a second full-size copy. The file's suffix names
its codec (`.npy.zst`, `.npy.lz4`, `.npy`); compressed frames carry a checksum of their content,
so damage is found even where no manifest is checked; object arrays (pickle only) are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import lz4.frame
import numpy as np
import zstandard

from distdqn.errors import CheckpointError

CODECS = ("zstd", "lz4", "none")
_SUFFIXES = {"zstd": ".npy.zst", "lz4": ".npy.lz4", "none": ".npy"}
CHUNK_BYTES = 32 << 20
ZSTD_LEVEL = 3
"""zstd's default: about as fast as level 1 on replay data and noticeably smaller."""


def array_file_name(name: str, codec: str) -> str:
    return name + _SUFFIXES[codec]


def _codec(path: Path) -> str:
    for codec, suffix in sorted(_SUFFIXES.items(), key=lambda item: -len(item[1])):
        if path.name.endswith(suffix):
            return codec
    raise CheckpointError(f"{path}: not an array file (.npy, .npy.zst or .npy.lz4)")


def _writer(file: IO[bytes], codec: str) -> Any:
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(file, closefd=False)
    if codec == "lz4":
        return lz4.frame.LZ4FrameFile(file, mode="wb", content_checksum=True)
    return file


def _reader(file: IO[bytes], codec: str) -> Any:
    if codec == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(file, closefd=False)
    if codec == "lz4":
        return lz4.frame.LZ4FrameFile(file, mode="rb")
    return file


def write_array(path: Path, array: np.ndarray) -> int:
    """Write `array` to `path` in the codec its suffix names; return the bytes on disk."""
    if array.dtype.hasobject:
        raise ValueError(f"{path.name}: an object array can only be pickled")
    codec = _codec(path)
    with path.open("wb") as file:
        stream = _writer(file, codec)
        header = np.lib.format.header_data_from_array_1_0(array)
        header["fortran_order"] = False  # the data below is always in C order
        np.lib.format.write_array_header_2_0(stream, header)
        # contiguous chunks along the first axis: a non-contiguous view is never copied whole
        rows = array.reshape(1, -1) if array.ndim == 0 else array
        step = max(1, CHUNK_BYTES // max(1, rows[:1].nbytes))
        for start in range(0, len(rows) if array.size else 0, step):
            stream.write(np.ascontiguousarray(rows[start : start + step]).data.cast("B"))
        if stream is not file:
            stream.close()
    return path.stat().st_size


def _header(stream: Any, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except (ValueError, OSError, EOFError, RuntimeError, zstandard.ZstdError) as error:
        raise CheckpointError(f"{path}: not a readable array file ({error})") from None
    if dtype.hasobject or fortran:
        raise CheckpointError(f"{path}: holds an array this project never writes ({dtype}, fortran={fortran})")
    return shape, dtype


def _fill(stream: Any, out: np.ndarray, path: Path) -> None:
    """Read exactly `out.nbytes` into `out`, then expect the end of the stream."""
    view = out.reshape(-1).data.cast("B") if out.size else memoryview(b"")
    try:
        done = 0
        while done < len(view):
            got = stream.readinto(view[done : done + CHUNK_BYTES])
            if not got:
                raise CheckpointError(f"{path}: truncated ({done} of {len(view)} bytes of data)")
            done += got
        if stream.read(1):
            raise CheckpointError(f"{path}: has data after its array")
    except (OSError, RuntimeError, zstandard.ZstdError) as error:
        raise CheckpointError(f"{path}: damaged ({error})") from None


def _open(path: Path) -> tuple[IO[bytes], Any]:
    try:
        file = path.open("rb")
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    return file, _reader(file, _codec(path))


def read_array(path: Path) -> np.ndarray:
    """The array in `path`, in a new writable array."""
    file, stream = _open(path)
    with file:
        shape, dtype = _header(stream, path)
        out = np.empty(shape, dtype)
        _fill(stream, out, path)
    return out


def read_array_into(path: Path, out: np.ndarray) -> None:
    """Fill `out` (contiguous) with the array in `path`, which must have its shape and dtype."""
    file, stream = _open(path)
    with file:
        shape, dtype = _header(stream, path)
        if shape != out.shape or dtype != out.dtype:
            raise CheckpointError(f"{path}: holds {dtype}{list(shape)}, expected {out.dtype}{list(out.shape)}")
        _fill(stream, out, path)
