#!/usr/bin/env python3
"""Synthetic CSV datasets of any size, with the dcms schema that describes them.

    scripts/gen-csv.py --bytes 1073741824 --columns 30 --out /tmp/big.csv --schema /tmp/big.schema.json

Writes a header row (f1..fN, label) and data rows of N numeric features
and an integer label in {0, 1}, until the file is at least --bytes long
(the last row is completed, so the size is a little over). Rows come from
a pool drawn with --seed, so the same arguments give the same file. The
schema file is the "schema" member of POST /api/v1/datasets. Only the
Python standard library is used.
"""
import argparse
import json
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, required=True, help="minimum size of the file")
    ap.add_argument("--columns", type=int, default=30, help="number of feature columns")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
    ap.add_argument("--schema", help="where to write the dataset schema (JSON)")
    a = ap.parse_args()
    if a.bytes < 0 or not 1 <= a.columns <= 999:
        ap.error("--bytes must be >= 0 and --columns from 1 to 999")
    rng = random.Random(a.seed)
    names = [f"f{i + 1}" for i in range(a.columns)]
    header = ",".join(names + ["label"]) + "\n"
    pool = []
    for _ in range(4096):
        feats = ",".join(f"{rng.uniform(-1000, 1000):.6g}" for _ in names)
        pool.append(f"{feats},{rng.randint(0, 1)}\n")
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="ascii", newline="")
    written = len(header)
    out.write(header)
    while written < a.bytes:
        chunk = "".join(rng.choices(pool, k=2048))
        if written + len(chunk) > a.bytes:
            # finish with whole rows only
            rows = []
            for line in chunk.splitlines(keepends=True):
                rows.append(line)
                written += len(line)
                if written >= a.bytes:
                    break
            out.write("".join(rows))
            break
        out.write(chunk)
        written += len(chunk)
    if out is not sys.stdout:
        out.close()
    if a.schema:
        schema = {
            "columns": [{"name": n, "type": "number"} for n in names]
            + [{"name": "label", "type": "integer"}],
            "label": "label",
            "label_values": ["0", "1"],
        }
        with open(a.schema, "w", encoding="ascii") as f:
            json.dump(schema, f)
            f.write("\n")


if __name__ == "__main__":
    main()
