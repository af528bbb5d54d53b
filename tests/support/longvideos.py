"""Videos written with PyAV in the codecs and layouts that seeking must handle: B-frames, open GOPs, a key frame only
every 10 s, a variable frame rate, VP8 in WebM, MPEG-4 Part 2 in AVI, and H.264 in AVI (not seekable)."""

from fractions import Fraction

import av
import numpy as np

CODECS = {
    # name: (codec, encoder options, variable frame rate)
    "h264_bframes.mp4": ("libx264", {"bf": "3", "g": "50"}, False),
    "h264_open_gop.mp4": ("libx264", {"bf": "3", "g": "50", "x264-params": "open-gop=1"}, False),
    "h264_key_every_10s.mp4": ("libx264", {"bf": "2", "g": "250", "keyint_min": "250", "sc_threshold": "0"}, False),
    "h264_vfr.mp4": ("libx264", {"bf": "2", "g": "60"}, True),
    "vp8.webm": ("libvpx", {"g": "60"}, False),
    "mpeg4.avi": ("mpeg4", {"g": "50", "b": "2000000"}, False),
    "mpeg4_bframes.avi": ("mpeg4", {"g": "50", "bf": "2", "b": "2000000"}, False),
}


def scene_frame(index: int, fps: float, width: int, height: int) -> np.ndarray:
    """A scrolling block texture with a moving square; a new scene (a hard cut) every 4 s. Its frame-to-frame
    histogram distances sit near the shot detector's threshold: a hard case for a detector that starts mid-video."""
    scene = int(index / fps // 4)
    rng = np.random.default_rng(scene)
    base = rng.integers(0, 255, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    base = base.repeat(8, 0).repeat(8, 1)[:height, :width]
    t = index / fps
    image = np.roll(base, int(t * 20), axis=1).copy()
    x = int((np.sin(t * 1.3) + 1) / 2 * (width - 30))
    y = int((np.cos(t * 0.7) + 1) / 2 * (height - 30))
    image[y : y + 30, x : x + 30] = ((255 - 40 * scene) % 255, 80, 200)
    return image


def write(path: str, codec: str, options: dict, vfr: bool = False, seconds: float = 30.0, fps: int = 25,
          width: int = 160, height: int = 120) -> str:
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(options)
        if vfr:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        rng, t_ms = np.random.default_rng(0), 0
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(scene_frame(i, fps, width, height), format="bgr24")
            if vfr:  # 20-60 ms between frames
                frame.pts, frame.time_base = t_ms, Fraction(1, 1000)
                t_ms += int(rng.choice([20, 40, 60, 33]))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_codec(folder: str, name: str, seconds: float = 30.0) -> str:
    codec, options, vfr = CODECS[name]
    return write(f"{folder}/{name}", codec, options, vfr=vfr, seconds=seconds)
