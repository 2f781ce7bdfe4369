#!/usr/bin/env python3
"""The functions of BINARY that ran in callgrind profiles PROFILE..., as their (mangled)
symbol names, by the instructions each executed itself across the profiles, most first: the
order `scripts/symbol-order.sh` writes to link/symbol-order.txt.

Then the names of an earlier list (`--keep FILE`) that the binary still has and these
profiles did not run: some code runs on some runs only (a RocksDB memtable flush happens in
the background, or not, within a short profile), and a name's place costs nothing if unused.

Usage: symbol_order.py BINARY [--keep FILE] PROFILE...  (profiles written with --demangle=no)."""
import collections
import re
import subprocess
import sys

FN = re.compile(r'c?fn=\((\d+)\)(?: (.*))?')


def self_costs(path, cost):
    """Adds each function's own instructions in profile `path` to `cost` (name -> count).
    Names are compressed: `fn=(id) name` the first time, `fn=(id)` after; a cost line
    following `calls=` is the call's inclusive cost, not the caller's own."""
    names, current, after_call = {}, None, False
    with open(path, errors='replace') as f:
        for line in f:
            m = FN.match(line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2).rstrip('\n')
                if line.startswith('fn='):
                    current = names.get(m.group(1))
                    cost[current] += 0
                continue
            if line.startswith('calls='):
                after_call = True
            elif line[:1].isdigit() or line[:1] in '+-*':
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if current is not None and len(fields) > 1 and fields[1].isdigit():
                    cost[current] += int(fields[1])


def main():
    binary, profiles = sys.argv[1], sys.argv[2:]
    keep = []
    if profiles[:1] == ['--keep']:
        with open(profiles[1]) as f:
            keep = [line.strip() for line in f if line.strip()]
        profiles = profiles[2:]
    nm = subprocess.run(['nm', '--defined-only', binary], capture_output=True, text=True, check=True)
    code = {fields[2] for fields in (l.split() for l in nm.stdout.splitlines())
            if len(fields) == 3 and fields[1] in 'tTwW'}
    cost = collections.Counter()
    for p in profiles:
        self_costs(p, cost)
    ran = [name for name, _ in cost.most_common() if name in code]
    listed = set(ran)
    for name in ran + [n for n in keep if n in code and n not in listed]:
        print(name)


main()
