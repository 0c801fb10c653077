"""Draw the benchmark's figures (bench/results.json, written by bench/bench.py) as
PNG charts in bench/charts/, with Debian's matplotlib:

  cost.png          each operation's cost in the dialplan: the loop's own floor,
                    the raw client's round trip, and what the module adds
  throughput.png    operations per second against channels: MCD read loops, raw
                    get threads, and the dialplan's own loop
  deployments.png   the same operations over TCP, a unix socket, memcached's
                    proxy, twemproxy and stunnel + TLS, dialplan and raw client

Draws; never judges. Usage: python3 -m bench.charts [results.json] [folder]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cost(results, folder):
    rows = results["cost"]
    labels = [r["operation"] for r in rows]
    floor = [r["floor_us"] for r in rows]
    raw = [r["raw_us"] for r in rows]
    extra = [max(r["extra_us"], 0) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.barh(labels, floor, label="dialplan loop floor", color="#bbbbbb")
    ax.barh(labels, raw, left=floor, label="raw client round trip", color="#4c72b0")
    ax.barh(labels, extra, left=[f + r for f, r in zip(floor, raw)], label="module extra", color="#dd8452")
    ax.set_xlabel("microseconds per operation, one channel (fastest run)")
    ax.set_title("What an operation costs in the dialplan")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "cost.png"), dpi=100)


def throughput(results, folder):
    rows = results["throughput"]
    channels = [r["channels"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(channels, [r["raw_ops"] for r in rows], "o-", label="raw client, N threads of gets")
    ax.plot(channels, [r["floor_ops"] for r in rows], "s--", label="dialplan loop floor, N channels")
    ax.plot(channels, [r["dialplan_ops"] for r in rows], "^-", label="MCD read loops, N channels")
    ax.set_xscale("log", base=2)
    ax.set_xticks(channels, [str(c) for c in channels])
    ax.set_xlabel("concurrency (channels or threads)")
    ax.set_ylabel("operations per second")
    ax.set_title("Throughput against concurrency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "throughput.png"), dpi=100)


def deployments(results, folder):
    rows = results["deployments"]
    ops = [o["operation"] for o in rows[0]["ops"]]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, row in enumerate(rows):
        xs = [x + i * width for x in range(len(ops))]
        ax.bar(xs, [o["dialplan_us"] for o in row["ops"]], width, label=row["deployment"])
        ax.scatter(xs, [o["raw_us"] for o in row["ops"]], marker="_", s=200, color="black",
                   zorder=3, label="raw client" if i == 0 else None)
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(ops))], ops)
    ax.set_ylabel("microseconds per operation, one channel")
    ax.set_title("The same operations in each deployment (bars: dialplan; dashes: raw client)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "deployments.png"), dpi=100)


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results.json")
    folder = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "charts")
    with open(source) as f:
        results = json.load(f)
    os.makedirs(folder, exist_ok=True)
    for draw in (cost, throughput, deployments):
        draw(results, folder)
        print("drew %s" % os.path.join(folder, draw.__name__ + ".png"))


if __name__ == "__main__":
    main()
