#!/usr/bin/env bash
# Copies the table of bench/results/latest.md into README.md between the bench markers.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
md = open("bench/results/latest.md").read().split("\n")
keep = [l for l in md if l.startswith("|") or l.startswith("**Machine") or l.startswith("**Versions")]
s = open("README.md").read()
a, b = "<!-- bench:begin -->", "<!-- bench:end -->"
i, j = s.index(a) + len(a), s.index(b)
body = "\n".join(l for l in keep if not l.startswith("**")) 
head = "\n".join(l for l in keep if l.startswith("**"))
s = s[:i] + "\n" + head + "\n\n" + body + "\n" + s[j:]
open("README.md", "w").write(s)
PY
