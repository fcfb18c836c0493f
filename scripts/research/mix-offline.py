#!/usr/bin/env python3
"""Offline design of issue 9's online models on top of the LM, from a dump of what they would
see (`cargo run --release --example dump_tables -- FILE OUT.tsv`).

Reports, in bits per token: the LM alone; the LM's table at a fixed temperature T (freq^(1/T)
renormalised); and a token-level match model (LZP-style: the token that followed the most
recent occurrence of the longest matching context, order ≥ k) mixed with the LM as a binary
event "next token == predicted", by an online logistic mixer (paq-style) over
stretch(P_LM(predicted)) and stretch(hit rate of the match length), one weight set per match
length. Floats: this measures what the idea can gain before it is written in integers.

usage: scripts/research/mix-offline.py DUMP.tsv
"""
import math
import sys

TEMPS = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
ORDERS = 12
M = 2 ** 24


def load(path):
    rows = []
    for line in open(path):
        c = line.split('\t')
        cands = [(int(c[9 + 2 * k]), int(c[10 + 2 * k])) for k in range(ORDERS)]
        rows.append((int(c[0]), int(c[1]), [float(x) for x in c[2:9]], cands, int(c[-1])))
    return rows


def st(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sq(x):
    return 1 / (1 + math.exp(-x))


def match_mix(rows, order_min, lr):
    counts = [[0.4, 1.0] for _ in range(16)]  # hits, total per match-length bucket
    weights = {}
    bits = 0.0
    for tok, f, _, cands, longest in rows:
        ks = [k for k in range(ORDERS) if cands[k][0] >= 0 and k + 1 >= order_min]
        pl = f / M
        if not ks:
            bits -= math.log2(pl)
            continue
        k = max(ks)
        p, fp = cands[k]
        plp = fp / M
        ctx = min(max(longest, k + 1), 15)
        x = [st(plp), st(counts[ctx][0] / counts[ctx][1]), 1.0]
        w = weights.setdefault(ctx, [1.0, 0.3, 0.0])
        pi = min(max(sq(sum(a * b for a, b in zip(w, x))), 1e-5), 1 - 1e-5)
        y = 1 if tok == p else 0
        bits -= math.log2(pi) if y else math.log2(pl * (1 - pi) / (1 - plp))
        for j in range(3):
            w[j] += lr * (y - pi) * x[j]
        counts[ctx][0] += y
        counts[ctx][1] += 1
        if counts[ctx][1] > 255:
            counts[ctx] = [counts[ctx][0] / 2, counts[ctx][1] / 2]
    return bits


def main():
    rows = load(sys.argv[1])
    n = len(rows)
    base = sum(-math.log2(r[1] / M) for r in rows)
    print(f"tokens {n}; LM alone {base / n:.4f} bits/token")
    for i, t in enumerate(TEMPS):
        b = sum(r[2][i] for r in rows)
        print(f"  temperature {t:.1f}: {b / n:.4f} ({100 * (b / base - 1):+.2f} %)")
    pred = [r for r in rows if any(c[0] >= 0 for c in r[3])]
    hits = sum(1 for r in pred if r[3][max(k for k in range(ORDERS) if r[3][k][0] >= 0)][0] == r[0])
    print(f"  match model predicts {len(pred)} tokens, right {hits} times")
    for om in [1, 2, 3, 4, 6]:
        for lr in [0.002, 0.01, 0.03]:
            b = match_mix(rows, om, lr)
            print(f"  match model (order ≥ {om}) + mixer, rate {lr}: {b / n:.4f} ({100 * (b / base - 1):+.2f} %)")


if __name__ == "__main__":
    main()
