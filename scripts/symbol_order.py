#!/usr/bin/env python3
"""The functions of BINARY that ran in callgrind profiles, as their (mangled) symbol names, in
the order `scripts/symbol-order.sh` writes to link/symbol-order.txt.

`--views PROFILE...`: one profile per server, each of which ran one view (one Nexmark query).
A server maps the code it runs in 64 KiB pieces (the kernel maps a page's neighbours with
it), so its resident code is the number of pieces its functions touch: functions that run
together are best laid out together. So the functions are grouped by the set of servers that
ran them, and the groups ordered by how many servers ran them, most first (what every server
runs: start-up, pgwire, the planner, the dataflow's core, then what most views run, ..., then
what one view alone runs), groups of equally many servers by their servers, so that the groups
of one server lie near each other; within a group, by the instructions each executed itself
across the profiles, most first.

`--extra PROFILE...`: servers that ran more (ad-hoc queries, other log levels): their
functions the views did not run come next, by their instructions.

Then the names of an earlier list (`--keep FILE`) that the binary still has and these
profiles did not run: some code runs on some runs only (a RocksDB memtable flush happens in
the background, or not, within a short profile), and a name's place costs nothing if unused.

Usage: symbol_order.py BINARY [--keep FILE] --views PROFILE... [--extra PROFILE...]
(profiles written with --demangle=no)."""
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


def arguments(argv):
    """BINARY, then lists of values after `--keep`, `--views` and `--extra`."""
    binary, lists, current = argv[0], {'--keep': [], '--views': [], '--extra': []}, None
    for arg in argv[1:]:
        if arg in lists:
            current = lists[arg]
        elif current is None:
            sys.exit(f'symbol_order.py: {arg}: expected --keep, --views or --extra first')
        else:
            current.append(arg)
    return binary, lists


def main():
    binary, lists = arguments(sys.argv[1:])
    keep = []
    for path in lists['--keep']:
        with open(path) as f:
            keep += [line.strip() for line in f if line.strip()]
    nm = subprocess.run(['nm', '--defined-only', binary], capture_output=True, text=True, check=True)
    code = {fields[2] for fields in (l.split() for l in nm.stdout.splitlines())
            if len(fields) == 3 and fields[1] in 'tTwW'}
    total = collections.Counter()
    # Function -> the indices of the view profiles that ran it.
    ran_in = collections.defaultdict(set)
    for i, p in enumerate(lists['--views']):
        cost = collections.Counter()
        self_costs(p, cost)
        for name, c in cost.items():
            if name in code:
                ran_in[name].add(i)
                total[name] += c
    views = sorted(ran_in, key=lambda n: (-len(ran_in[n]), sorted(ran_in[n]), -total[n], n))
    extra = collections.Counter()
    for p in lists['--extra']:
        self_costs(p, extra)
    listed = set(views)
    more = [name for name, _ in extra.most_common() if name in code and name not in listed]
    listed.update(more)
    for name in views + more + [n for n in keep if n in code and n not in listed]:
        print(name)


if __name__ == '__main__':
    main()
