"""Download the canonical ``.gz`` files from public mirrors, trying each in turn.

For machines with internet access (``mnistlab data fetch --source mirror``). A download is held
in memory, never in the cache: it must arrive whole (Content-Length honoured), decompress within
the expected size and pass the cache's checks before the next file is fetched; a mirror that
fails any of this is reported and the next one is tried.
"""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.parse
import urllib.request

from tqdm import tqdm

from mnistlab import __version__, console
from mnistlab.data import cache, sources
from mnistlab.data.specs import spec
from mnistlab.errors import UserError

TIMEOUT_S = 30  # per socket operation, not per file
CHUNK = 1 << 16  # bytes


class DownloadError(OSError):
    """A download that did not complete (short, too long, refused)."""


def download(url: str, *, max_bytes: int, desc: str = "") -> bytes:
    """GET ``url`` into memory with a progress bar; raise unless it arrives whole."""
    request = urllib.request.Request(url, headers={"User-Agent": f"mnistlab/{__version__}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise DownloadError(f"{total} bytes announced, expected at most {max_bytes}")
        buf = bytearray()
        with console.progress(total=total, desc=desc, unit="B", unit_scale=True,
                              unit_divisor=1024) as bar:
            while chunk := resp.read(CHUNK):
                buf += chunk
                bar.update(len(chunk))
                if len(buf) > max_bytes:
                    raise DownloadError(f"more than {max_bytes} bytes, expected at most that")
    # http.client returns a short body without complaint when the peer closes early.
    if total is not None and len(buf) != total:
        raise DownloadError(f"interrupted: got {len(buf)} of {total} bytes")
    return bytes(buf)


def fetch_file(name: str, fname: str, mirrors: tuple[str, ...] | list[str]) -> tuple[bytes, str]:
    """``fname`` (raw IDX bytes) from the first mirror that serves a good copy, and its URL."""
    ds = spec(name)
    raw_max = cache.expected_nbytes(ds, fname)
    failures = []
    for base in mirrors:
        url = urllib.parse.urljoin(base, fname + ".gz")
        host = urllib.parse.urlsplit(url).netloc or url
        try:
            # A .gz of MNIST is far smaller than the raw file; allow some slack over raw size.
            gz = download(url, max_bytes=raw_max + raw_max // 8 + 4096, desc=f"{fname}.gz")
            raw = sources.gunzip(gz, raw_max)
            cache.check_bytes(ds, fname, raw)
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", None) or exc)
        else:
            return raw, url
        failures.append(f"{host}: {reason}")
        tqdm.write(f"warning: {url}: {reason}; trying the next mirror", file=sys.stderr)
    raise UserError(f"no mirror served a good {fname}.gz ({'; '.join(failures)}); check network "
                    f"access, or run `mnistlab data fetch --dataset {name} --from DIR`")


def fetch_files(name: str) -> tuple[dict[str, bytes], str]:
    """All four raw IDX files from the mirrors; returns the files and a description of origin."""
    ds = spec(name)
    files, urls = {}, []
    for fname in ds.file_names:
        files[fname], url = fetch_file(name, fname, ds.mirrors)
        urls.append(url)
    bases = sorted({u.rsplit("/", 1)[0] + "/" for u in urls})
    return files, ", ".join(bases)
