"""MP4 videos of rendered frames: `distdqn play --video` and the replay of an exported model.

H.264 in yuv420p with the index at the front (`+faststart`), which browsers, the Hugging Face Hub's
model cards and W&B play as they download. The encoder is the static ffmpeg binary that the
imageio-ffmpeg wheel ships (the `video` extra; 165 MB installed): nothing to install on the
system, one call to stream frames into it, and a separate process, so that the encoder's
failures stay out of ours. (PyAV would encode in-process, with a codec library's API for what is
here one format.) Frames are streamed to the encoder as they come, so unlike a GIF, a video
keeps no frame in memory and needs no frame cap.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from distdqn.errors import EnvError, UserError
from distdqn.tools.atomic import temporary_sibling


def require_encoder(flag: str) -> None:
    """Refuse, in one line and before anything is played, a video without the encoder package."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserError(f"{flag} needs the imageio-ffmpeg package: pip install 'distdqn[video]'")


def even_sized(frame: np.ndarray) -> np.ndarray:
    """`frame` grown by its own edge pixels to even width and height, which H.264's 4:2:0 chroma
    (one colour sample per 2x2 pixels) needs; an even frame is returned as it is."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class Mp4Writer:
    """An MP4 file at `path`, written through a temporary file next to it that replaces `path`
    only once the encoder has finished (`close`): a reader never sees half a video, and a failed
    or interrupted recording (`abort`, or leaving the `with` block on an error) leaves none."""

    def __init__(self, path: Path, fps: float, flag: str = "--video") -> None:
        require_encoder(flag)
        self.path = path
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None
        """(width, height) of the encoded frames, once the first came."""
        self._temporary = temporary_sibling(path)
        self._encoder: Generator[Any, np.ndarray | None, None] | None = None

    def add(self, render: Callable[[], np.ndarray]) -> None:
        """Encode the frame `render()` returns; every frame must have the first one's size."""
        frame = even_sized(render())
        size = (frame.shape[1], frame.shape[0])
        if self._encoder is None:
            import imageio_ffmpeg

            self.size = size
            self._encoder = imageio_ffmpeg.write_frames(
                str(self._temporary),
                size,
                fps=self.fps,
                codec="libx264",
                pix_fmt_out="yuv420p",
                macro_block_size=1,  # even_sized made it even; larger blocks would rescale the frame
                output_params=["-f", "mp4", "-movflags", "+faststart"],
                ffmpeg_log_level="error",
            )
            self._encoder.send(None)
        elif size != self.size:
            raise EnvError(f"the env rendered frames of two sizes (width, height) for one video: {self.size}, {size}")
        self._encoder.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        """Finish the video and put it at `path` (nothing is written for no frames)."""
        if self._encoder is None:
            return
        self._encoder.close()
        self._encoder = None
        os.replace(self._temporary, self.path)

    def abort(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
