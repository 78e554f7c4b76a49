"""The dataset doctor: scan an image/video folder or list file and report what cannot be used.

Each file is opened and decoded the way training would (images fully; videos
indexed by demuxing, then the first and last frame decoded, or every frame with
``full=True``). Reported per file: unreadable (with the decoder's reason),
empty, missing, truncated (fewer frames than the header claims, or frames that
do not decode), plus notes that are not errors: variable frame rate, shorter
than a clip.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

from .sampling import clip_span
from .short import short_note
from .sources import IMAGE_EXTENSIONS, LIST_SUFFIXES, VIDEO_EXTENSIONS, SampleList, _split_line, resolve_source

__all__ = ["FileReport", "DoctorReport", "check_file", "scan"]


@dataclass
class FileReport:
    path: str
    label: int | None
    reason: str | None = None          # None = usable
    frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class DoctorReport:
    spec: str
    kind: str
    files: list[FileReport]
    classes: list[str]

    @property
    def bad(self) -> list[FileReport]:
        return [f for f in self.files if not f.ok]

    def categories(self) -> Counter:
        """Bad files counted by kind of problem."""
        return Counter(_category(f.reason) for f in self.bad)

    def to_dict(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "classes": self.classes, "total": len(self.files),
                "bad": len(self.bad), "categories": dict(self.categories()),
                "files": [asdict(f) for f in self.files]}


def _category(reason: str | None) -> str:
    r = (reason or "").lower()
    for key, name in (("missing", "missing"), ("0 bytes", "empty"), ("out of range", "label"),
                      ("label", "label"), ("cannot parse", "list line"), ("truncated", "truncated"),
                      ("no video stream", "no video stream"), ("cannot open", "unreadable"),
                      ("cannot identify", "unreadable")):
        if key in r:
            return name
    return "undecodable"


def check_file(path: str, label: int | None, video: bool, full: bool = False, span: int | None = None) -> FileReport:
    """Check one file; never raises."""
    rep = FileReport(path, label)
    try:
        if video:
            _check_video(rep, full, span)
        else:
            from .datasets import load_image

            img = load_image(path)
            rep.height, rep.width = int(img.shape[1]), int(img.shape[2])
            _note_large(rep)
    except Exception as e:  # noqa: BLE001 - the doctor reports every failure
        from .datasets import _reason

        rep.reason = _reason(e)
    return rep


def _note_large(rep: FileReport) -> None:
    from PIL import Image

    from .large import large_note

    with Image.open(rep.path) as im:
        note = large_note(im)
    if note:
        rep.notes.append(note)


def _check_video(rep: FileReport, full: bool, span: int | None) -> None:
    import av

    from .video import VideoError, _open, decode_frames, index_video

    index = index_video(rep.path)
    rep.frames, rep.fps = index.num_frames, round(index.fps, 3)
    if full:
        container = _open(rep.path)
        try:
            n = 0
            try:
                for frame in container.decode(container.streams.video[0]):
                    n += 1
                    rep.height, rep.width = frame.height, frame.width
            except av.FFmpegError as e:
                raise VideoError(f"truncated or corrupt: decode error after {n} frames ({e})") from e
        finally:
            container.close()
        if n < index.num_frames:
            raise VideoError(f"truncated or corrupt: {n} of {index.num_frames} frames decode")
    else:
        frames, _ = decode_frames(index, [0, index.num_frames - 1])
        rep.height, rep.width = int(frames.shape[2]), int(frames.shape[3])
    if index.is_vfr:
        rep.notes.append("variable frame rate")
    note = short_note(index.num_frames, span or 1)  # a one-frame "video" is always noted
    if note:
        rep.notes.append(note)


def _check_star(args):
    return check_file(*args)


def _entry_paths(spec: str, root: str | None, limit: int = 5000) -> list[str]:
    """Paths the dataset's entries name: from its list file(s) when it has them, else the files under the folder."""
    if os.path.isfile(spec):
        lists = [spec]
    else:
        lists = sorted(os.path.join(spec, n) for n in os.listdir(spec) if n.endswith(LIST_SUFFIXES)
                       and os.path.splitext(n)[0] in ("train", "val", "validation", "test"))
    if not lists:
        return [os.path.join(r, n) for r, _, names in os.walk(spec) for n in names if not n.startswith(".")][:limit]
    paths = []
    for lf in lists:
        base = root if root is not None else os.path.dirname(os.path.abspath(lf))
        with open(lf, encoding="utf-8") as f:
            for line in f:
                parts = _split_line(line, lf.lower().endswith(".csv"))
                if parts:
                    paths.append(parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0]))
                if len(paths) >= limit:
                    return paths
    return paths


def _probe_video(path: str) -> bool | None:
    """Decide from the file itself: True for a video (a video stream of more than one frame), False for an image."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return bool(getattr(im, "n_frames", 1) > 1 and im.format not in ("TIFF", "MPO"))  # GIFs are clips
    except Exception:  # noqa: BLE001
        pass
    try:
        from .video import index_video

        return index_video(path).num_frames > 1
    except Exception:  # noqa: BLE001
        return None


def _detect_video(spec: str, root: str | None = None) -> bool:
    """Images or videos, from the entries the dataset names (not the folder holding its lists).

    Extensions decide when they agree; otherwise (no or unknown extensions) a few files are opened.
    """
    paths = _entry_paths(spec, root)
    exts = Counter(os.path.splitext(p)[1].lower() for p in paths)
    n_vid = sum(c for e, c in exts.items() if e in VIDEO_EXTENSIONS)
    n_img = sum(c for e, c in exts.items() if e in IMAGE_EXTENSIONS)
    if n_vid != n_img:
        return n_vid > n_img
    votes = [v for v in (_probe_video(p) for p in paths[:8] if os.path.isfile(p)) if v is not None]
    return sum(votes) * 2 > len(votes)


def scan(spec: str, split: str | None = None, video: bool | None = None, root: str | None = None,
         full: bool = False, clip: tuple[int, int] | None = None, workers: int = 0,
         num_classes: int | None = None) -> DoctorReport:
    """Check every sample of ``spec`` (every split found, or only ``split``)."""
    if not os.path.exists(spec):
        raise FileNotFoundError(f"{spec}: no such file or directory (expected an image/video folder or a "
                                "'path label' list file)")
    if video is None:
        video = _detect_video(spec, root)
    sources: list[SampleList] = []
    errors = []
    for s in ([split] if split else ["train", "val", "test"]):
        try:
            src = resolve_source(spec, s, video, root=root, num_classes=num_classes)
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            errors.append(e)
            continue
        if all(src.origin != o.origin for o in sources):
            sources.append(src)
    if not sources and os.path.isdir(spec):  # a flat folder of files: check them without labels
        exts = VIDEO_EXTENSIONS if video else IMAGE_EXTENSIONS
        files = sorted(os.path.join(r, n) for r, _, names in os.walk(spec) for n in names
                       if n.lower().endswith(exts) and not n.startswith("."))
        if files:
            sources.append(SampleList([(f, None) for f in files], [], origin=spec))
    if not sources:
        raise errors[0] if errors else FileNotFoundError(spec)
    span = clip_span(*clip) if clip else None
    jobs, reports = [], []
    for src in sources:
        jobs += [(p, y, video, full, span) for p, y in src.samples]
        reports += [FileReport(p, None, reason=r) for p, r in src.rejected.items()]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            reports += list(pool.imap(_check_star, jobs, chunksize=4))
    else:
        reports += [check_file(*j) for j in jobs]
    counts = Counter(p for p, *_ in jobs)
    for r in reports:
        if counts.get(r.path, 0) > 1:
            r.notes.append(f"listed {counts[r.path]} times")
    return DoctorReport(spec, "video" if video else "image", reports, sources[0].classes)
