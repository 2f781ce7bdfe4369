#!/usr/bin/env python3
"""One Nexmark query on a fresh Freshet server, measured as `benches/nexmark.rs` measures it, with
where the server's memory is at the end: the tool behind the single-query figures in
BENCHMARKS.md (A/B runs of two builds, memory breakdowns).

Usage: scripts/nexmark_one.py BINARY QUERY [EVENTS]    (QUERY: q0 .. q22, or any SELECT)
       scripts/nexmark_one.py print QUERY              (the query's SQL)

Like the bench: a fresh server (temporary data directory, free ports), the three `nexmark`
streams as sources (3,000,000 events by default, as fast as possible, the bench's base time),
the view, then every 50 ms the bench's catalog query (simple query protocol) until the
streams are done. Prints one line: wall seconds, server CPU seconds (user + system), events
per CPU-second, view rows, peak RSS (VmHWM), anonymous and file-backed RSS at the end, and
the peak RSS once the view's rows have been counted (an ad-hoc query over it), in MiB. The
queries are read from src/connectors/generator/nexmark.rs, so they are the bench's.

Environment:
  SERVER_ENV='K=V,K=V'  extra environment for the server (e.g. MIMALLOC_PURGE_DELAY=100)
  SERVER_LOG=FILE       the server's stderr (e.g. with SERVER_ENV=MIMALLOC_SHOW_STATS=1)
  TRACE=1     RSS at every poll, on stderr
  IDLE=SECS   also anonymous / file-backed RSS after SECS seconds idle
  MAPS=1      RSS by mapping at the end (smaps): the binary's code (r-xp), its relocated
              read-only data (the anonymous part of its r--p), libraries, heap; and the
              anonymous mappings by owner: mimalloc's arenas (reserved 256 MiB or more at
              a time), glibc malloc's thread arenas (64 MiB reserved, RocksDB's memory),
              thread stacks (a guard page below) and the rest
  TOUCHED=1   with MAPS: count only pages used after the server started ("ref": the
              accessed bits are cleared once the first client has connected)
  EXTENDED=1  poll over the extended query protocol (psycopg's default) instead
"""
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, 'src/connectors/generator/nexmark.rs')
BASE_TIME = 1_700_000_000_000
POLL = 0.05
DONE = ("SELECT count(*) FROM freshet_catalog.sources WHERE connector = 'nexmark' AND state <> 'idle' "
        "AND coalesce(reason, '') NOT LIKE 'all % events generated'")


def rust_string(body):
    """A Rust string literal's text: `\\` + newline + indentation continues the line."""
    return re.sub(r'\\\n\s*', '', body).replace('\\"', '"').replace('\\\\', '\\')


def queries():
    """(name -> SQL of QUERIES, SIDE_INPUT) from the Rust source."""
    text = open(SOURCE).read()
    literal = r'"((?:[^"\\]|\\.)*)"'
    counts = rust_string(re.search(r'macro_rules! price_rank_counts \{\s*\(\) => \{\s*' + literal, text, re.S).group(1))
    side = rust_string(re.search(r'pub const SIDE_INPUT: &str = ' + literal, text, re.S).group(1))
    body = text[text.index('pub const QUERIES'):]
    body = body[:body.index('\n];')]
    found = {}
    entry = r'\(\s*(?://[^\n]*\n\s*)*"(q\d+)",\s*(concat!\((.*?)\)|' + literal + r')\s*,?\s*\)'
    for m in re.finditer(entry, body, re.S):
        if m.group(4) is not None:
            found[m.group(1)] = rust_string(m.group(4))
        else:
            parts = re.findall(literal + r'|price_rank_counts!\(\)', m.group(3), re.S)
            found[m.group(1)] = ''.join(rust_string(p) if p else counts for p in parts)
    return found, side


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def memory(pid):
    """(peak, anonymous, file-backed) RSS in MiB."""
    fields = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
    mib = lambda k: int(fields.get(k, '0 kB').split()[0]) / 1024
    return mib('VmHWM'), mib('RssAnon'), mib('RssFile')


def cpu_seconds(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def mappings(pid):
    """Each mapping of `pid`: dict of start, end, perms, path (None if anonymous) and its
    smaps fields in KiB (Rss, Anonymous, Referenced, ..)."""
    maps = []
    for line in open(f'/proc/{pid}/smaps'):
        parts = line.split()
        if not parts[0].endswith(':'):
            start, end = (int(x, 16) for x in parts[0].split('-'))
            maps.append({'start': start, 'end': end, 'perms': parts[1],
                         'path': parts[5] if len(parts) > 5 else None})
        elif len(parts) == 3 and parts[2] == 'kB':
            maps[-1][parts[0][:-1]] = int(parts[1])
    return maps


def print_maps(pid):
    """RSS (and the part anonymous, and the part used since TOUCHED cleared it) per mapping,
    then the anonymous RSS by owner."""
    maps = mappings(pid)
    rss, anon, ref = collections.Counter(), collections.Counter(), collections.Counter()
    for m in maps:
        key = (os.path.basename(m['path']) if m['path'] else '[anonymous]', m['perms'])
        rss[key] += m['Rss']
        anon[key] += m['Anonymous']
        ref[key] += m['Referenced']
    for key, kib in rss.most_common(12):
        print(f'  {key[0]:32} {key[1]} rss {kib / 1024:6.1f}  anonymous {anon[key] / 1024:6.1f}  '
              f'referenced {ref[key] / 1024:6.1f}', file=sys.stderr)
    owners = collections.Counter()
    for owner, kib in anonymous_owners(maps):
        owners[owner] += kib
    print('  anonymous by owner: ' + ', '.join(f'{o} {kib / 1024:.1f}' for o, kib in owners.most_common()),
          file=sys.stderr)


def anonymous_owners(maps):
    """(owner, RSS KiB) of each anonymous mapping of `maps`, the owner told by its shape."""
    for i, m in enumerate(maps):
        if m['path'] or m['perms'] != 'rw-p':
            continue
        before = maps[i - 1] if i > 0 else None
        after = maps[i + 1] if i + 1 < len(maps) else None
        if m['end'] - m['start'] >= 256 << 20:
            owner = 'mimalloc'
        elif (after and after['perms'] == '---p' and after['start'] == m['end']
              and after['end'] - m['start'] == 64 << 20):
            owner = 'glibc'
        elif (before and before['perms'] == '---p' and before['end'] == m['start']
              and before['end'] - before['start'] == 4096):
            owner = 'stacks'
        else:
            owner = 'other'
        yield owner, m['Rss']


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    found, side = queries()
    if sys.argv[1] == 'print':
        print(found[sys.argv[2]])
        return
    binary, query = sys.argv[1], sys.argv[2]
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 3_000_000
    sql, name = (found[query], query) if query in found else (query, 'v')
    env = dict(os.environ, RUST_LOG='warn')
    for kv in filter(None, os.environ.get('SERVER_ENV', '').split(',')):
        key, _, value = kv.partition('=')
        env[key] = value
    data = tempfile.mkdtemp(prefix='nexmark_one_')
    port = free_port()
    server = subprocess.Popen(
        [binary, 'server', '--data-dir', os.path.join(data, 'data'), '--pg-listen', f'127.0.0.1:{port}',
         '--http-listen', f'127.0.0.1:{free_port()}'],
        env=env, stdout=subprocess.DEVNULL,
        stderr=open(os.environ['SERVER_LOG'], 'w') if os.environ.get('SERVER_LOG') else subprocess.DEVNULL)
    pid = server.pid
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(('127.0.0.1', port)).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    sys.exit('the server did not start')
                time.sleep(0.05)
        conn = psycopg.connect(f'host=127.0.0.1 port={port} user=freshet dbname=freshet', autocommit=True,
                               cursor_factory=None if os.environ.get('EXTENDED') else psycopg.ClientCursor)
        cur = conn.cursor()
        if os.environ.get('TOUCHED'):
            open(f'/proc/{pid}/clear_refs', 'w').write('1')
        cpu0, started = cpu_seconds(pid), time.time()

        def count(q):
            cur.execute(q)
            return cur.fetchone()[0]

        options = (f"nexmark.event.num = '{events}', nexmark.events.per.second = '0', "
                   f"nexmark.base.time = '{BASE_TIME}'")
        if 'side_input' in sql:
            cur.execute(side)
            while count('SELECT count(*) FROM side_input') != 10_000:
                time.sleep(0.005)
        for table in ('person', 'auction'):
            cur.execute(f"CREATE SOURCE {table} (*) WITH (connector = 'nexmark', "
                        f"nexmark.table.type = '{table}', {options})")
        cur.execute("CREATE SOURCE bid (*, p_time TIMESTAMPTZ AS PROCTIME()) WITH (connector = 'nexmark', "
                    f"nexmark.table.type = 'bid', {options})")
        cur.execute(f'CREATE MATERIALIZED VIEW {name} AS {sql}')
        while count(DONE) != 0:
            if os.environ.get('TRACE'):
                peak, anon, file = memory(pid)
                print(f'  {time.time() - started:6.2f} s: peak {peak:.1f} anonymous {anon:.1f} '
                      f'file {file:.1f}', file=sys.stderr)
            time.sleep(POLL)
        secs, cpu = time.time() - started, cpu_seconds(pid) - cpu0
        peak, anon, file = memory(pid)
        if os.environ.get('MAPS'):
            print_maps(pid)
        rows = count(f'SELECT count(*) FROM {name}')
        counted, _, _ = memory(pid)
        idle = ''
        if os.environ.get('IDLE'):
            time.sleep(float(os.environ['IDLE']))
            _, idle_anon, idle_file = memory(pid)
            idle = f' idle_anonymous={idle_anon:.1f} idle_file={idle_file:.1f}'
        print(f'{query} secs={secs:.2f} cpu={cpu:.2f} events/cpu-s={events / max(cpu, 1e-3):.0f} rows={rows} '
              f'peak={peak:.1f} anonymous={anon:.1f} file={file:.1f} peak_after_count={counted:.1f}{idle}')
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == '__main__':
    main()
