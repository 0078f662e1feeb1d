#!/usr/bin/env python3
"""Recompute a dcms model's held-out accuracy (stdlib only).
usage: check_model.py MODEL.safetensors DATA.csv LABEL FOLDS HOLDOUT_FOLD"""
import csv, json, math, struct, sys
path, data, label, k, i = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); meta = hdr.pop("__metadata__")
def t(name):
    h = hdr[name]; a, b = h["data_offsets"]; f = "<d" if h["dtype"] == "F64" else "<f"
    v = [x[0] for x in struct.iter_unpack(f, raw[8 + n + a:8 + n + b])]
    return [v[r * h["shape"][1]:(r + 1) * h["shape"][1]] for r in range(h["shape"][0])] if len(h["shape"]) == 2 else v
feats, labels = json.loads(meta["feature_names"]), json.loads(meta["label_names"])
layers = [(t(f"layers.{j}.weight"), t(f"layers.{j}.bias")) for j in range(len(json.loads(meta["layer_sizes"])) - 1)]
mean, std = t("scaler.mean"), t("scaler.std")
ok = tot = 0
for r, row in enumerate(csv.DictReader(open(data, newline=""))):
    if r % k != i: continue
    a = [(float(row[f]) - m) / s for f, m, s in zip(feats, mean, std)]
    for j, (w, b) in enumerate(layers):
        a = [sum(x * y for x, y in zip(wr, a)) + bb for wr, bb in zip(w, b)]
        if j < len(layers) - 1: a = [max(0.0, x) for x in a]
    pred = (1 if a[0] > 0 else 0) if len(a) == 1 else a.index(max(a))
    ok += labels[pred] == row[label]; tot += 1
print(json.dumps({"rows": tot, "correct": ok, "accuracy": ok / tot}))
