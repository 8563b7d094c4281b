"""Write the embedded genomes of derf_zoo/data/assets/dna/ from the Debian example packages.

Sources (Debian bookworm, architecture all; sequences from NCBI RefSeq):
- bowtie2-examples 2.5.0-3: usr/share/doc/bowtie2/examples/reference/lambda_virus.fa.gz
  = NC_001416.1 Enterobacteria phage lambda, complete genome (48,502 bp), stored whole.
- bowtie-examples 1.3.1-1: usr/share/doc/bowtie/examples/genomes/NC_008253.fna.gz
  = NC_008253.1 Escherichia coli 536, complete genome (4,938,920 bp); the first ECOLI_BP bases are stored
  (the whole genome would add 1.48 MB to the package; 1 Mbp is far more than the CPU demo and the tests read).

Headers are rewritten to the accession and a description (pyfaidx keys a record by the header's first word;
``gi|110640213|ref|NC_008253.1|`` is no name to type). Sequence letters are kept exactly (upper case, 70 per line).

Usage::

    apt-get download bowtie-examples bowtie2-examples      # or use the .deb files you have
    python scripts/make_dna_assets.py --debs . [--out derf_zoo/data/assets/dna]

The output is byte-for-byte reproducible (gzip mtime 0, no file name in the gzip header).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import tempfile
from pathlib import Path

ECOLI_BP = 1_000_000
LINE = 70
SOURCES = {
    # asset file: (package glob, path in the package, new header, number of bases kept or None for all)
    "lambda_phage.fa.gz": ("bowtie2-examples_*.deb", "usr/share/doc/bowtie2/examples/reference/lambda_virus.fa.gz",
                           "NC_001416.1 Enterobacteria phage lambda, complete genome", None),
    "ecoli_536_1mbp.fa.gz": ("bowtie-examples_*.deb", "usr/share/doc/bowtie/examples/genomes/NC_008253.fna.gz",
                             f"NC_008253.1 Escherichia coli 536, complete genome, bases 1-{ECOLI_BP:,}", ECOLI_BP),
}


def read_single_record(path: Path) -> str:
    """The sequence of a one-record gzipped FASTA file."""
    with gzip.open(path, "rt", encoding="ascii") as f:
        lines = f.read().split("\n")
    headers = [line for line in lines if line.startswith(">")]
    if len(headers) != 1:
        raise ValueError(f"{path}: expected one FASTA record, found {len(headers)}.")
    return "".join(line.strip() for line in lines if line and not line.startswith(">"))


def write_fasta_gz(path: Path, header: str, seq: str) -> None:
    body = "\n".join(seq[i : i + LINE] for i in range(0, len(seq), LINE))
    data = f">{header}\n{body}\n".encode("ascii")
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debs", type=Path, required=True, help="folder with the two *-examples .deb files")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "derf_zoo/data/assets/dna")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (pattern, member, header, keep) in SOURCES.items():
            debs = sorted(args.debs.glob(pattern))
            if not debs:
                raise FileNotFoundError(f"No {pattern} in {args.debs} (apt-get download {pattern.split('_')[0]}).")
            subprocess.run(["dpkg", "-x", str(debs[-1]), tmp], check=True)
            seq = read_single_record(Path(tmp) / member)
            full = len(seq)
            seq = seq[:keep] if keep else seq
            write_fasta_gz(args.out / name, header, seq)
            digest = hashlib.sha256((args.out / name).read_bytes()).hexdigest()
            print(f"{name}: {len(seq):,} of {full:,} bp from {debs[-1].name}, "
                  f"{(args.out / name).stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
