"""Cut the comparison experiment's sequences from Debian's mmseqs2-examples (20,000 real
UniProtKB records, CC BY 4.0): 2,400 queries and the other 17,600 records as the target
database. Deterministic (fixed seed, gzip mtime 0); writes into work/ beside this file.

Usage: python experiments/comparison/make_data.py [/usr/share/doc/mmseqs2/example-data/DB.fasta.gz]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "data" / "demo"))
from make_demo_data import SOURCE, read_records, write_gz  # noqa: E402

SEED = 20261121
N_QUERIES = 2400
WORK = Path(__file__).resolve().parent / "work"


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else SOURCE
    if not Path(source).is_file():
        sys.exit(f"make_data.py: {source} not found (apt-get install mmseqs2-examples)")
    records = read_records(source)
    picked = set(random.Random(SEED).sample(range(len(records)), N_QUERIES))
    WORK.mkdir(exist_ok=True)
    write_gz(WORK / "queries.fasta.gz", [r for i, r in enumerate(records) if i in picked])
    write_gz(WORK / "database.fasta.gz", [r for i, r in enumerate(records) if i not in picked])
    print(f"wrote {N_QUERIES} queries and {len(records) - N_QUERIES} database records to {WORK}")


if __name__ == "__main__":
    main()
