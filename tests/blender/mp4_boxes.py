"""Reads what a test needs from an MP4 file's boxes (ISO/IEC 14496-12), without ffmpeg: the video
track's codec, frame size and frame count. The test environments have no video decoder."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


@dataclass(frozen=True)
class VideoTrack:
    codec: str  # the sample entry's four-character code: avc1 for H.264
    width: int
    height: int
    frames: int


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of each box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"broken box {kind!r} at {pos}")
        yield kind, pos + header, pos + size
        pos += size


def _find(data: bytes, start: int, end: int, kind: bytes):
    return [(s, e) for k, s, e in _boxes(data, start, end) if k == kind]


def video_tracks(path: str | Path) -> list[VideoTrack]:
    data = Path(path).read_bytes()
    kinds = [k for k, _, _ in _boxes(data, 0, len(data))]
    if not kinds or kinds[0] != b"ftyp":
        raise ValueError(f"{path}: not an MP4 file (first box {kinds[:1]})")
    tracks = []
    for moov_s, moov_e in _find(data, 0, len(data), b"moov"):
        for trak_s, trak_e in _find(data, moov_s, moov_e, b"trak"):
            (mdia_s, mdia_e), = _find(data, trak_s, trak_e, b"mdia")
            (hdlr_s, _), = _find(data, mdia_s, mdia_e, b"hdlr")
            if data[hdlr_s + 8 : hdlr_s + 12] != b"vide":
                continue
            (tkhd_s, _), = _find(data, trak_s, trak_e, b"tkhd")
            version = data[tkhd_s]
            # version/flags, then times, track id and duration (20 bytes, 32 in version 1), then
            # reserved 8, layer, group, volume, reserved (8), matrix 36: width and height in 16.16
            dims = tkhd_s + 4 + (32 if version == 1 else 20) + 8 + 8 + 36
            width, height = (v >> 16 for v in struct.unpack(">II", data[dims : dims + 8]))
            (minf_s, minf_e), = _find(data, mdia_s, mdia_e, b"minf")
            (stbl_s, stbl_e), = _find(data, minf_s, minf_e, b"stbl")
            (stsd_s, _), = _find(data, stbl_s, stbl_e, b"stsd")
            codec = data[stsd_s + 12 : stsd_s + 16].decode("ascii")
            (stsz_s, _), = _find(data, stbl_s, stbl_e, b"stsz")
            frames = struct.unpack(">I", data[stsz_s + 8 : stsz_s + 12])[0]
            tracks.append(VideoTrack(codec, width, height, frames))
    return tracks
