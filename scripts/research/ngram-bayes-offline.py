#!/usr/bin/env python3
"""The n-gram mixer of crate/src/ngram.rs in floats, plus the models measured beside it and
not built (an LZP match model, an APM/SSE stage), replayed on a dump of the coder's tables
(issue 9, session 14; BENCHMARKS.md, "The n-gram mixer").

    cargo run --release --example dump_adapted -- FILE OUT.tsv
    python3 scripts/research/ngram-bayes-offline.py OUT.tsv '[dict(K=4, classes="full", chunk=20967)]'
    python3 scripts/research/ngram-bayes-offline.py OUT.tsv apm

Each dict is one run of `run` below: K orders (Witten-Bell, the last escape to the dumped
table q), the weight lambda the posterior mean of LAMS per class ("order": the longest order
seen; "full": that, its count up to 4, one follower or more), `match=True` adds an LZP match
model (minlen tokens) mixed the same way, `chunk=N` restarts every model each N tokens as
the file's chunks do. `apm` runs the APM stage on the top token instead.
"""
import math, sys
from collections import defaultdict

def load(path):
    rows = []
    for line in open(path):
        t, qt, h, top, qtop = line.split("\t")
        rows.append((int(t), int(qt) / 2**24))
    return rows

LAMS = [0, 1/64, 1/32, 1/16, 1/8, 1/4, 1/2]
MLAMS = [0, 1/16, 1/8, 1/4, 1/2, 3/4]

def run(rows, K=4, classes="order", match=False, minlen=8, chunk=None, base="q", bayes=True):
    follow = [dict() for _ in range(K + 1)]
    tot = [dict() for _ in range(K + 1)]
    loss = defaultdict(lambda: [0.0] * (len(LAMS) * (len(MLAMS) if match else 1)))
    hist = []
    bits = 0.0
    # match model state: hash of last minlen tokens -> last position
    mh = {}
    mptr = None
    mlen = 0
    for i, (t, q) in enumerate(rows):
        if chunk and i % chunk == 0:
            follow = [dict() for _ in range(K + 1)]; tot = [dict() for _ in range(K + 1)]
            loss.clear(); hist = []; mh = {}; mptr = None; mlen = 0
        # n-gram: a (escape to q), s(t)
        a, s, seen, cnt, det = 1.0, 0.0, 0, 0, False
        for k in range(1, K + 1):
            if k > len(hist): break
            ctx = tuple(hist[-k:])
            n = tot[k].get(ctx, 0)
            if n == 0: break
            fl = follow[k][ctx]
            d = len(fl)
            c = fl.get(t, 0)
            # p_k = (c + d p_{k-1}) / (n + d)
            s = (c + d * s) / (n + d)
            a = a * d / (n + d)
            seen, cnt, det = k, n, d == 1
        if base == "u":
            pn = s + a / 49152
        pred = None
        if match and mptr is not None:
            pred = hist_all[mptr]
        if classes == "order":
            cls = seen
        elif classes == "order-det":
            cls = (seen, det)
        else:
            cls = (seen, min(cnt, 4), det)
        if match:
            mb = 0 if pred is None else min(mlen // 4, 4)
            cls = (cls, mb)
        L = loss[cls]
        # probabilities under each lambda pair
        ps = []
        for j, l in enumerate(LAMS):
            pn_t = (a * q + s) if base == "q" else pn
            p0 = (1 - l) * q + l * pn_t
            if match:
                for m in MLAMS:
                    hit = 1.0 if pred == t else 0.0
                    ps.append((1 - m) * p0 + m * hit)
            else:
                ps.append(p0)
        if bayes:
            mn = min(L)
            w = [2 ** -(x - mn) for x in L]
            W = sum(w)
            p = sum(wi * pi for wi, pi in zip(w, ps)) / W
        else:
            p = ps[0]
        bits -= math.log2(max(p, 1e-12))
        for j in range(len(L)):
            L[j] -= math.log2(max(ps[j], 1e-12))
        # update
        for k in range(1, K + 1):
            if k > len(hist): break
            ctx = tuple(hist[-k:])
            fl = follow[k].setdefault(ctx, {})
            fl[t] = fl.get(t, 0) + 1
            tot[k][ctx] = tot[k].get(ctx, 0) + 1
        hist.append(t)
        if match:
            hist_all = hist
            # extend or find match
            if mptr is not None and pred == t:
                mptr += 1; mlen += 1
            else:
                mptr = None; mlen = 0
            if len(hist) >= minlen:
                key = tuple(hist[-minlen:])
                if mptr is None and key in mh:
                    mptr = mh[key]; mlen = minlen
                mh[key] = len(hist)
    return bits

def apm(path):
    """An APM on the event 'the token is the table's top token'."""
    rows=[]
    for line in open(path):
        t,qt,h,top,qtop=line.split("\t")
        rows.append((int(t),int(qt)/2**24,float(h),int(top),int(qtop)/2**24))
    def st(p): p=min(max(p,1e-6),1-1e-6); return math.log(p/(1-p))
    def sq(x): return 1/(1+math.exp(-x))
    base=sum(-math.log2(q) for t,q,h,tp,qtp in rows)
    N=33
    for rate in [0.02,0.05]:
      for ctxmode in ["none","h"]:
        apm={}
        bits=0
        for t,q,h,tp,qtp in rows:
            c = 0 if ctxmode=="none" else min(int(h),7)
            tbl=apm.setdefault(c,[sq((i-16)/2) for i in range(N)])
            x=(st(qtp)*2+16); x=min(max(x,0),N-1.001); i=int(x); f=x-i
            pa=tbl[i]*(1-f)+tbl[i+1]*f
            p=(pa+qtp)/2
            if t==tp: pt=p
            else: pt=q*(1-p)/max(1-qtp,1e-9)
            bits-=math.log2(max(pt,1e-12))
            y=1.0 if t==tp else 0.0
            tbl[i]+=rate*(1-f)*(y-tbl[i]); tbl[i+1]+=rate*f*(y-tbl[i+1])
        print(rate,ctxmode,f"{bits/len(rows):.4f} ({100*(bits/base-1):+.2f} %)")


if len(sys.argv) > 2 and sys.argv[2] == "apm":
    apm(sys.argv[1])
    sys.exit(0)
rows = load(sys.argv[1])
n = len(rows)
base = -sum(math.log2(q) for _, q in rows)
print(f"{sys.argv[1]}: {n} tokens, table {base/n:.4f} bits/token")
for cfg in eval(sys.argv[2]) if len(sys.argv) > 2 else [dict()]:
    b = run(rows, **cfg)
    print(f"{cfg}: {b/n:.4f} ({100*(b/base-1):+.2f} %)", flush=True)
