#!/usr/bin/env python3
"""How well a release binary's code layout serves each server profiled: for each callgrind
profile (written with --demangle=no, as `scripts/symbol-order.sh` writes them), the functions
that ran, their bytes, and the 4 KiB pages and 64 KiB windows (what the kernel maps around
each page a server touches) they lie in. The bytes are what a perfect layout would map; the
windows, what this one maps. Then the names of `link/symbol-order.txt` that the binary holds
several copies of (an inline function compiled into several codegen units keeps its name in
each, and the linker places every copy where the list names it): their bytes, one copy and
all copies.

Usage: scripts/code_layout.py BINARY PROFILE...
"""
import collections
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from symbol_order import self_costs  # noqa: E402

ORDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'link/symbol-order.txt')


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, profiles = sys.argv[1], sys.argv[2:]
    nm = subprocess.run(['nm', '-S', '--defined-only', binary], capture_output=True, text=True, check=True)
    copies = collections.defaultdict(list)
    for line in nm.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in 'tTwW':
            copies[fields[3]].append((int(fields[0], 16), int(fields[1], 16)))
    for path in profiles:
        cost = collections.Counter()
        self_costs(path, cost)
        ran = [n for n in cost if n in copies]
        pages, windows, size = set(), set(), 0
        for name in ran:
            for start, length in copies[name]:
                end = start + max(length, 1) - 1
                pages.update(range(start >> 12, (end >> 12) + 1))
                windows.update(range(start >> 16, (end >> 16) + 1))
            size += copies[name][0][1]
        print(f'{os.path.basename(path)}: {len(ran)} functions, {size / 2**20:.2f} MiB; '
              f'in {len(pages) * 4 / 1024:.2f} MiB of 4 KiB pages, {len(windows) * 64 / 1024:.2f} MiB of 64 KiB windows')
    order = [line.strip() for line in open(ORDER) if line.strip()]
    held = [n for n in order if n in copies]
    several = [n for n in held if len(copies[n]) > 1]
    one = sum(copies[n][0][1] for n in held)
    every = sum(length for n in held for _, length in copies[n])
    print(f'{ORDER}: {len(order)} names, {len(held)} in the binary, {len(several)} of them with several copies; '
          f'{one / 2**20:.2f} MiB with one copy of each, {every / 2**20:.2f} MiB as laid out')


if __name__ == '__main__':
    main()
