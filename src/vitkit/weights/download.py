"""Fetching published files into a local cache: mirror, resume, hash check, atomic write, offline use.

* Cache: ``$VITKIT_HOME`` (default: ``vitkit/`` beside torch's hub cache, i.e. ``$TORCH_HOME/vitkit``, usually
  ``~/.cache/torch/vitkit``). A file published at ``https://HOST/PATH`` is cached at ``$VITKIT_HOME/files/HOST/PATH``
  (the same tree a mirror serves, so a mirror's files can also be copied in by hand).
* Mirror: with ``VITKIT_MIRROR`` set to a base URL (or a local folder), ``https://HOST/PATH`` is fetched from
  ``$VITKIT_MIRROR/HOST/PATH``; Hugging Face hub files likewise (``huggingface.co/REPO/resolve/REV/FILE``).
* Offline: a cached file is used without any network access; ``VITKIT_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``)
  forbids downloads, and a missing file is then a clear error naming the URL and where to put the file.
* Safety: bytes go to ``<file>.part``; an interrupted download is resumed with an HTTP ``Range`` request next time
  (restarted when the server ignores it); the digest is checked (the full sha256 where known, the torch.hub
  file-name prefix, or the digest recorded on the first download in ``$VITKIT_HOME/sha256.json``) before the
  file is moved under its final name. A file that fails the check is deleted: nothing broken stays in the cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message names the URL and where to put the file by hand."""


def vitkit_home() -> Path:
    """``$VITKIT_HOME``, else ``vitkit/`` beside torch's hub cache (``$TORCH_HOME``, default ``~/.cache/torch``)."""
    env = os.environ.get("VITKIT_HOME")
    if env:
        return Path(env).expanduser()
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch")
    return Path(torch_home).expanduser() / "vitkit"


def _split(url: str) -> tuple[str, str]:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc or not u.path.strip("/"):
        raise ValueError(f"expected an http(s) URL of a file, got {url!r}")
    path = urllib.parse.unquote(u.path).lstrip("/")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"refusing a URL whose path is not a plain file path: {url!r}")
    return u.netloc, path


def cache_path(url: str) -> Path:
    """Where the file published at ``url`` is cached: ``$VITKIT_HOME/files/HOST/PATH``."""
    host, path = _split(url)
    return vitkit_home() / "files" / host / path


def mirror_url(url: str) -> str:
    """``url`` rewritten to ``$VITKIT_MIRROR/HOST/PATH`` when a mirror is set (a folder becomes a file:// URL)."""
    base = os.environ.get("VITKIT_MIRROR", "").strip()
    if not base:
        return url
    host, path = _split(url)
    if "://" not in base:
        return Path(base).expanduser().resolve().joinpath(host, path).as_uri()
    return f"{base.rstrip('/')}/{host}/{urllib.parse.quote(path)}"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("VITKIT_OFFLINE", "HF_HUB_OFFLINE"))


# -- recorded digests ------------------------------------------------------------------------------------------
def _digests_file() -> Path:
    return vitkit_home() / "sha256.json"


def recorded_sha256(url: str) -> str | None:
    try:
        return json.loads(_digests_file().read_text()).get(url)
    except (OSError, ValueError):
        return None


def record_sha256(url: str, digest: str) -> None:
    """Remember the digest of a file whose publisher gives none (written atomically)."""
    from vitkit.checkpoints.base import atomic_write

    f = _digests_file()
    try:
        table = json.loads(f.read_text())
    except (OSError, ValueError):
        table = {}
    table[url] = digest
    atomic_write(f, lambda tmp: Path(tmp).write_text(json.dumps(table, indent=1, sort_keys=True)))


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# -- fetching --------------------------------------------------------------------------------------------------
def _by_hand(url: str, dest: Path) -> str:
    return (f"download {url} yourself and put it at {dest} (or set VITKIT_MIRROR to a mirror that serves "
            f"it under HOST/PATH, or VITKIT_HOME to another cache)")


def _progress(total: int | None, start: int, name: str, enabled: bool | None):
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=not enabled, leave=False)


def _timeout() -> float:
    return float(os.environ.get("VITKIT_DOWNLOAD_TIMEOUT", "60"))


def _stream(source: str, part: Path, progress: bool | None) -> None:
    """Append ``source`` to ``part`` (resuming from its size with a Range request), checking the length."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(source, headers={"User-Agent": "vitkit"})
    if have and not source.startswith("file:"):
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=_timeout())
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already complete or the server cannot resume it: restart
            part.unlink()
            return _stream(source, part, progress)
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:
            have = 0  # the server sent the whole file: restart
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        got = have
        with open(part, mode) as f, _progress(expected, have, part.name[:-5], progress) as bar:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (http.client.HTTPException, OSError) as e:
                    f.write(getattr(e, "partial", b"") or b"")
                    raise DownloadError(f"the connection dropped after {got} bytes ({type(e).__name__})") from e
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    if expected is not None and got != expected:
        raise DownloadError(f"truncated: received {got} of {expected} bytes")


def _verify(url: str, path: Path, sha256: str | None, sha256_prefix: str | None) -> str:
    digest = sha256_of(path)
    want = sha256 or recorded_sha256(url)
    if want and digest != want.lower():
        what = "published" if sha256 else "recorded at the first download"
        raise DownloadError(f"sha256 mismatch: got {digest}, expected {want} ({what})")
    if sha256_prefix and not digest.startswith(sha256_prefix.lower()):
        raise DownloadError(f"sha256 mismatch: got {digest}, the file name says it starts with {sha256_prefix}")
    return digest


def fetch(url: str, *, sha256: str | None = None, sha256_prefix: str | None = None,
          progress: bool | None = None) -> Path:
    """The local path of the file published at ``url``, downloading it into the cache when needed.

    A cached file is returned without network access. Otherwise the file is fetched (from ``$VITKIT_MIRROR`` when
    set), verified and moved into place atomically; failures raise :class:`DownloadError` naming the URL, the
    reason and where to put the file by hand, and leave no file under the final name.
    """
    dest = cache_path(url)
    if dest.is_file():
        return dest
    if offline():
        raise DownloadError(f"{url} is not in the cache and downloads are off (VITKIT_OFFLINE/HF_HUB_OFFLINE); "
                            + _by_hand(url, dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest):  # one download per file, whatever the number of processes (DDP ranks) asking for it
        if dest.is_file():
            return dest
        return _download(url, dest, sha256, sha256_prefix, progress)


@contextlib.contextmanager
def _lock(dest: Path):
    """An exclusive advisory lock on ``<file>.lock`` (POSIX ``flock``; no lock where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _download(url: str, dest: Path, sha256: str | None, sha256_prefix: str | None, progress: bool | None) -> Path:
    source = mirror_url(url)
    part = dest.with_name(dest.name + ".part")
    via = f" via {source}" if source != url else ""
    try:
        _stream(source, part, progress)
    except urllib.error.HTTPError as e:
        if e.code != 416:
            part.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {url}{via}: HTTP {e.code} {e.reason}; " + _by_hand(url, dest)) from e
    except DownloadError as e:
        # keep the partial file: the next attempt resumes it (and the hash check catches a bad splice)
        raise DownloadError(f"cannot download {url}{via}: {e}; run again to resume, or "
                            + _by_hand(url, dest)) from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url}{via} (no network or the host is unreachable: {reason}); "
                            + _by_hand(url, dest)) from e
    try:
        digest = _verify(url, part, sha256, sha256_prefix)
    except DownloadError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}{via}: {e}; the download was deleted. " + _by_hand(url, dest)) from e
    os.replace(part, dest)
    if not sha256 and recorded_sha256(url) is None:
        record_sha256(url, digest)
    return dest

