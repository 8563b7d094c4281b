"""Write the embedded Tiny Shakespeare corpus, derf_zoo/data/assets/text/tinyshakespeare.txt.gz.

Source: the GitHub repository karpathy/char-rnn, file data/tinyshakespeare/input.txt at commit
6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e (1,115,394 bytes, sha256 SOURCE_SHA256; public-domain text: a selection
of Shakespeare's plays). The text is stored unchanged, gzip level 9 with mtime 0 and no file name in the header,
so the output is byte-for-byte reproducible.

Usage::

    python scripts/make_text_asset.py --input path/to/input.txt [--out derf_zoo/data/assets/text]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

SOURCE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
NAME = "tinyshakespeare.txt.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="char-rnn's data/tinyshakespeare/input.txt")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "derf_zoo/data/assets/text")
    args = parser.parse_args()
    data = args.input.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{args.input}: sha256 {digest} is not the char-rnn file's {SOURCE_SHA256}.")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / NAME
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(data)
    print(f"{path}: {len(data):,} bytes -> {path.stat().st_size:,} bytes, sha256 "
          f"{hashlib.sha256(path.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
