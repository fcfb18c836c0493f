#!/usr/bin/env python3
"""Replays token n-gram models mixed linearly with the coder's table, in floats (issue 9).

    cargo run --release --example dump_adapted -- FILE OUT.tsv
    python3 scripts/research/ngram-offline.py OUT.tsv [--orders 1,2,3,4]

The dump holds, per token, the adapted table's frequency of the coded token (of 2^24), the
table's entropy and its top token. A linear mixture (1-l)*q + l*p_n of two normalised
distributions gives the coded token the mixture of their probabilities of it, so the code
length of any such mixture is exact here without the whole tables.

The n-gram model: counts of what followed each context of the last k tokens in the text
coded so far, blended from order K down to a uniform base with Witten-Bell escapes (a
normalised distribution over the vocabulary). The weight l is learned online per context
class (highest order seen, its count, the table's entropy) by gradient steps on the code
length; every setting printed is an upper bound for an integer version of it.
"""
import argparse
import math
from collections import defaultdict

VOCAB = 49152


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            t, qt, h, top, qtop = line.split("\t")
            rows.append((int(t), int(qt) / 2**24, float(h), int(top), int(qtop) / 2**24))
    return rows


class WittenBell:
    """Interpolated Witten-Bell n-gram over tokens, orders 0..K, uniform base."""

    def __init__(self, k):
        self.k = k
        self.follow = [defaultdict(lambda: defaultdict(int)) for _ in range(k + 1)]
        self.total = [defaultdict(int) for _ in range(k + 1)]

    def prob(self, hist, t):
        p = 1.0 / VOCAB
        seen, count = -1, 0
        for k in range(0, self.k + 1):
            if k > len(hist):
                break
            ctx = tuple(hist[len(hist) - k:]) if k else ()
            n = self.total[k].get(ctx, 0)
            if n == 0:
                break
            d = len(self.follow[k][ctx])
            c = self.follow[k][ctx].get(t, 0)
            p = (c + d * p) / (n + d)
            seen, count = k, n
        return p, seen, count

    def update(self, hist, t):
        for k in range(0, self.k + 1):
            if k > len(hist):
                break
            ctx = tuple(hist[len(hist) - k:]) if k else ()
            self.follow[k][ctx][t] += 1
            self.total[k][ctx] += 1


def bucket(x, edges):
    for i, e in enumerate(edges):
        if x < e:
            return i
    return len(edges)


def run(rows, K, lr, classes, l0):
    wb = WittenBell(K)
    lam = defaultdict(lambda: l0)
    hist = []
    bits = 0.0
    for t, q, h, top, qtop in rows:
        pn, seen, count = wb.prob(hist, t)
        if classes == "none":
            cls = 0
        elif classes == "order":
            cls = seen
        elif classes == "order-count":
            cls = (seen, bucket(count, [2, 4, 8, 32]))
        else:
            cls = (seen, bucket(count, [2, 4, 8, 32]), bucket(h, [0.5, 1, 2, 4, 6]))
        l = min(max(lam[cls], 0.0), 0.95)
        p = (1 - l) * q + l * pn
        bits -= math.log2(p)
        # d(-log p)/dl = -(pn - q)/p
        lam[cls] = min(max(l + lr * (pn - q) / p, 0.0), 0.95)
        wb.update(hist, t)
        hist.append(t)
        if len(hist) > K:
            hist.pop(0)
    return bits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tsv")
    ap.add_argument("--orders", default="1,2,3,4")
    ap.add_argument("--lrs", default="0.001,0.003,0.01")
    ap.add_argument("--classes", default="none,order,order-count,order-count-entropy")
    args = ap.parse_args()
    rows = load(args.tsv)
    n = len(rows)
    base = -sum(math.log2(r[1]) for r in rows)
    print(f"{n} tokens; the coder's table (LM + adaptive bias): {base / n:.4f} bits/token")
    for K in map(int, args.orders.split(",")):
        for cls in args.classes.split(","):
            for lr in map(float, args.lrs.split(",")):
                b = run(rows, K, lr, cls, 0.02)
                print(f"order {K} {cls:22s} lr {lr:<6} {b / n:.4f} ({100 * (b / base - 1):+.2f} %)", flush=True)


if __name__ == "__main__":
    main()
