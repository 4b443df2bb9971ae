"""Cut the embedded demo data from Debian's mmseqs2-examples (20,000 real UniProtKB records).

Usage: python data/demo/make_demo_data.py [/usr/share/doc/mmseqs2/example-data/DB.fasta.gz]

A fixed seed picks 5,000 records as the target database and 150 *other* records as queries,
so the output is reproducible byte for byte (gzip mtime is fixed to 0).
"""

from __future__ import annotations

import gzip
import io
import os
import random
import sys
from pathlib import Path

SOURCE = "/usr/share/doc/mmseqs2/example-data/DB.fasta.gz"
SEED = 20261121
N_DATABASE = 5000
N_QUERIES = 150
HERE = Path(__file__).resolve().parent


def read_records(path: str) -> list[tuple[str, str]]:
    records, header, seq = [], None, []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            line = line.rstrip()
            if line.startswith(">"):
                if header is not None:
                    records.append((header, "".join(seq)))
                header, seq = line[1:].strip(), []
            elif line:
                seq.append(line)
    if header is not None:
        records.append((header, "".join(seq)))
    return records


def write_gz(path: Path, records: list[tuple[str, str]]) -> None:
    """Write deterministic gzip FASTA; leave an identical file untouched, so rerunning this
    script does not bump its mtime (which would make Snakemake redo everything downstream)."""
    buffer = io.BytesIO()
    # The header names the file, as writing it directly would.
    with gzip.GzipFile(filename=str(path), fileobj=buffer, mode="wb", mtime=0) as gz:
        for header, seq in records:
            lines = [seq[i : i + 60] for i in range(0, len(seq), 60)]
            gz.write((">" + header + "\n" + "\n".join(lines) + "\n").encode())
    data = buffer.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def main() -> None:
    records = read_records(sys.argv[1] if len(sys.argv) > 1 else SOURCE)
    picked = random.Random(SEED).sample(range(len(records)), N_DATABASE + N_QUERIES)
    database = [records[i] for i in sorted(picked[:N_DATABASE])]
    queries = [records[i] for i in sorted(picked[N_DATABASE:])]
    write_gz(HERE / "uniprot_5k.fasta.gz", database)
    write_gz(HERE / "queries_150.fasta.gz", queries)
    print(f"wrote {len(database)} database and {len(queries)} query records to {HERE}")


if __name__ == "__main__":
    main()
