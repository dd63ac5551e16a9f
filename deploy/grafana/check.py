#!/usr/bin/env python3
"""deploy/grafana/check.py — the dashboard and the alert rules name only what the binary exports.

Reads the metric definitions of host/src/metrics/defs.rs (the `ALL` list: every metric the
binary records, with its Prometheus name and kind; label names from its `Dim`s), then every
PromQL expression of deploy/grafana/shardline-dashboard.json and deploy/grafana/alerts.yaml,
and fails when one names
  - a `shardline_*` series that is not exported (histograms only as _bucket/_sum/_count),
  - a label (in `by (...)`, `without (...)`, a selector or a legend) no metric has.
With `--metrics FILE` (a /metrics scrape of a running worker) it also checks that every
family the worker served is one of the definitions, so the list read here cannot drift from
the binary. Exit 1 on a problem. Standard library only.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFS = ROOT / "host/src/metrics/defs.rs"
DASHBOARD = ROOT / "deploy/grafana/shardline-dashboard.json"
ALERTS = ROOT / "deploy/grafana/alerts.yaml"
# Labels Prometheus itself adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"instance", "job", "pod", "namespace", "container", "service", "endpoint", "node"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}


def definitions():
    text = DEFS.read_text()
    consts = {}
    # `pub static NAME: Def = counter("Cw", "shardline_x", ...` and `Def { ..gauge("Cw", "shardline_x"`
    for m in re.finditer(
        r'pub (?:const|static) ([A-Z_]+): Def = (?:Def \{[^}]*?\.\.)?\s*(counter|gauge|distribution)\(\s*"[^"]*",\s*"(shardline_[a-z0-9_]+)"',
        text,
        re.S,
    ):
        consts[m.group(1)] = (m.group(3), m.group(2))
    all_list = re.search(r"pub (?:const|static) ALL: &\[&Def\] = &\[(.*?)\];", text, re.S)
    if not all_list:
        sys.exit("check.py: no ALL list in defs.rs")
    names = re.findall(r"&([A-Z_]+)", all_list.group(1))
    missing = [n for n in names if n not in consts]
    if missing:
        sys.exit(f"check.py: cannot read the definitions of {missing} in defs.rs")
    families = dict(consts[n] for n in names)
    labels = set(re.findall(r'label: "([a-z_]+)"', text))
    return families, labels


def series_names(families):
    ok = {}
    for name, kind in families.items():
        if kind == "distribution":
            for suffix in ("_bucket", "_sum", "_count"):
                ok[name + suffix] = kind
        else:
            ok[name] = kind
    return ok


def exprs_of_dashboard():
    dash = json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p.get('title')!r}", t["expr"], t.get("legendFormat", "")))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            out.append((f"variable {v['name']}", q, ""))
    if not out:
        sys.exit("check.py: the dashboard has no queries")
    return out


def exprs_of_alerts():
    out = []
    lines = ALERTS.read_text().splitlines()
    i = 0
    alert = "?"
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- alert: (\S+)", line)
        if m:
            alert = m.group(1)
        m = re.match(r"(\s*)expr: (.*)", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2)
            if rest.strip() == "|":
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i])
                    i += 1
                out.append((f"alert {alert}", "\n".join(block), ""))
                continue
            out.append((f"alert {alert}", rest, ""))
        m = re.search(r"\$labels\.([a-z_]+)", line)
        for lab in re.findall(r"\$labels\.([a-z_]+)", line):
            out.append((f"alert {alert} annotation", "", "{{" + lab + "}}"))
        i += 1
    if not any(w.startswith("alert ") for w, _, _ in out):
        sys.exit("check.py: no alert expressions found")
    return out


def main():
    families, labels = definitions()
    series = series_names(families)
    known_labels = labels | TARGET_LABELS
    problems = []
    used = set()
    for where, expr, legend in exprs_of_dashboard() + exprs_of_alerts():
        for name in re.findall(r"\b(shardline_[a-z0-9_]+)\b", expr):
            if name not in series:
                hint = " (a histogram: use _bucket, _sum or _count)" if families.get(name) == "distribution" else ""
                problems.append(f"{where}: {name} is not exported by the binary{hint}")
            used.add(name)
        groups = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        selectors = re.findall(r"\{([^}]*)\}", re.sub(r"\[[^\]]*\]", "", expr))
        for g in groups:
            for lab in filter(None, (s.strip() for s in g.split(","))):
                if lab != "le" and lab not in known_labels:
                    problems.append(f"{where}: label {lab!r} is not a label of Shardline's metrics")
                if lab == "le" and "_bucket" not in expr:
                    problems.append(f"{where}: 'le' without a _bucket series")
        for sel in selectors:
            for lab in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel):
                if lab not in known_labels and lab != "le":
                    problems.append(f"{where}: selector label {lab!r} is not a label of Shardline's metrics")
        for lab in re.findall(r"\{\{\s*\.?([a-z_]+)\s*\}\}", legend):
            if lab not in known_labels:
                problems.append(f"{where}: legend label {lab!r} is not a label of Shardline's metrics")

    if len(sys.argv) == 3 and sys.argv[1] == "--metrics":
        served = set(re.findall(r"^# TYPE (\S+) ", Path(sys.argv[2]).read_text(), re.M))
        if not served:
            problems.append(f"{sys.argv[2]}: no metric families in the scrape")
        for fam in sorted(served - set(families)):
            problems.append(f"the worker served {fam}, which defs.rs's ALL does not list")
        print(f"scrape: {len(served)} families served, all in the definitions" if not problems else "")

    unused = sorted(f for f in families if not any(s.startswith(f) for s in used))
    print(f"dashboard and alerts: {len(used)} series of {len(families)} exported families")
    print("exported families not shown: " + (" ".join(unused) or "none"))
    for p in problems:
        print("FAIL " + p)
    if problems:
        sys.exit(1)
    print("grafana/check.py: every metric and label named is exported by the binary")


if __name__ == "__main__":
    main()
