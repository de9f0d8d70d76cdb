#!/usr/bin/env python3
"""End-to-end benchmarks of ipdrift against real BIND and HAProxy on loopback.

Run through benches/e2e/run, which installs the servers and builds the release binary.
Every scenario starts its own named and haproxy on free 127.0.0.1 ports in a temporary
directory and stops them afterwards; every loop is bounded. Results go to stdout as
Markdown table rows and to --json as raw samples.

Scenarios:
  apply   `ipdrift apply` repairing N changed records and servers, next to the floor:
          one nsupdate batch and one pipelined socat write of the same changes.
  repair  time from an all-addresses change to DNS and HAProxy both repaired: `ipdrift
          run`, a cron-style shell script, and HAProxy's own DNS following.
  idle    CPU and peak RSS of `ipdrift run` over a converged fleet; writes counted.
  read    one pass's reads of a large fleet (`ipdrift diff`) next to their floor
          (one TSIG-signed AXFR and one `show servers state`).
  stale   what a user sees: a client resolving through a caching unbound in front of
          BIND every 100 ms (and requesting a page through HAProxy), timed from an
          all-addresses change to its first answer with the new address, for an
          unannounced change, an external-dns-like setup (`--interval 1m`, DNS only) and
          an announced event with the TTL lowered ahead (`maintenance_ttl`, with and
          without `maintenance_drain`); the variants run at the same time (about 12
          minutes for 5 repetitions).
  aws     EC2 state-change events through SQS against polling at 1 s and 10 s, on
          moto (EC2, SQS, Route 53): instances stopped and started, timed from the
          start to Route 53 holding every new address.
"""

import argparse
import concurrent.futures
import datetime
import http.server
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ZONE = "example.test."
KEY_NAME = "ipdrift-key"
BACKEND = "web"
WEB_PORT = 8080
TTL = 60
HERE = Path(__file__).resolve().parent
CRON_SCRIPT = HERE / "cron-repair.sh"
# Addresses of generation g, instance i: base + g * GENERATION_STRIDE + i.
GENERATION_STRIDE = 1 << 14
PUBLIC_BASE = struct.unpack(">I", socket.inet_aton("100.64.0.0"))[0]
PRIVATE_BASE = struct.unpack(">I", socket.inet_aton("10.0.0.0"))[0]
POLL_SECONDS = 0.005
# HAProxy's default `timeout resolve`: how often its resolvers ask again.
RESOLVE_TIMEOUT_S = 1


def ipv4(value):
    return socket.inet_ntoa(struct.pack(">I", value))


def public_addr(generation, i):
    return ipv4(PUBLIC_BASE + generation * GENERATION_STRIDE + i)


def private_addr(generation, i):
    return ipv4(PRIVATE_BASE + generation * GENERATION_STRIDE + i)


def instance_name(i):
    return f"web-{i:05d}"


def free_port():
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        return port


# Set on Ctrl-C or SIGTERM: every wait of a scenario thread stops, and its servers with it.
ABORT = threading.Event()


class Aborted(Exception):
    pass


def pause(seconds):
    if ABORT.wait(max(0.0, seconds)):
        raise Aborted("interrupted")


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        pause(0.05)
    raise RuntimeError(f"{what} did not happen within {seconds} s")


def percentile(samples, fraction):
    """Nearest-rank percentile: with 20 samples, p99 is the largest."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def write_atomically(path, text):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class DnsClient:
    """Plain UDP A queries to one server, for polling what it answers."""

    def __init__(self, port):
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)

    def addresses(self, name):
        return self.answer(name)[0]

    def answer(self, name, recursion_desired=False):
        """(sorted A addresses, smallest A TTL or None) of one query for `name`."""
        query_id = random.randrange(1 << 16)
        flags = 0x0100 if recursion_desired else 0
        qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
        self.sock.sendto(struct.pack(">6H", query_id, flags, 1, 0, 0, 0) + qname + b"\0" + struct.pack(">HH", 1, 1), self.server)
        while True:
            answer = self.sock.recv(65535)
            if struct.unpack(">H", answer[:2])[0] == query_id:
                break
        count = struct.unpack(">H", answer[6:8])[0]
        offset = skip_name(answer, 12) + 4
        found, ttls = [], []
        for _ in range(count):
            offset = skip_name(answer, offset)
            rtype, _, ttl, length = struct.unpack(">HHIH", answer[offset : offset + 10])
            offset += 10
            if rtype == 1:
                found.append(socket.inet_ntoa(answer[offset : offset + 4]))
                ttls.append(ttl)
            offset += length
        return sorted(found), min(ttls, default=None)

    def close(self):
        self.sock.close()


def skip_name(message, offset):
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


class Bind:
    """named, primary for ZONE, accepting updates and transfers signed with a fresh key."""

    def __init__(self, workdir, records):
        self.dir = workdir / "bind"
        self.dir.mkdir()
        self.port = free_port()
        key_conf = subprocess.run(["tsig-keygen", "-a", "hmac-sha256", KEY_NAME], check=True, capture_output=True, text=True).stdout
        self.key_file = self.dir / "key.conf"
        self.key_file.write_text(key_conf)
        lines = [f"$ORIGIN {ZONE}", f"$TTL {TTL}", "@ IN SOA ns1 hostmaster 1 3600 600 86400 60", "@ IN NS ns1", "ns1 IN A 127.0.0.1"]
        lines += [f"{owner} IN A {addr}" for owner, addr in records]
        (self.dir / "zone.db").write_text("\n".join(lines) + "\n")
        (self.dir / "named.conf").write_text(
            f'include "{self.key_file}";\n'
            f'options {{ directory "{self.dir}"; listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n'
            f'  pid-file "{self.dir}/named.pid"; recursion no; dnssec-validation no; }};\n'
            "controls { };\n"
            f'zone "{ZONE.rstrip(".")}" {{ type primary; file "{self.dir}/zone.db";\n'
            f"  allow-update {{ key {KEY_NAME}; }}; allow-transfer {{ key {KEY_NAME}; }}; }};\n"
        )
        self.log = open(self.dir / "named.log", "w")
        self.process = subprocess.Popen(["named", "-g", "-c", str(self.dir / "named.conf")], stdout=self.log, stderr=subprocess.STDOUT)
        self.dns = DnsClient(self.port)

        def answers():
            try:
                return self.dns.addresses(f"ns1.{ZONE}") == ["127.0.0.1"]
            except OSError:
                return False

        wait_until(answers, 30, "named answering")

    def nsupdate(self, owners_to_addrs):
        """One nsupdate batch replacing each owner's A RRset: the DNS half of the floor."""
        script = [f"server 127.0.0.1 {self.port}", f"zone {ZONE}"]
        for owner, addrs in owners_to_addrs:
            script.append(f"update delete {owner} A")
            script += [f"update add {owner} {TTL} A {addr}" for addr in addrs]
        script.append("send")
        return subprocess.Popen(["nsupdate", "-k", str(self.key_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), "\n".join(script) + "\n"

    def stop(self):
        self.dns.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Haproxy:
    def __init__(self, workdir, sections):
        self.dir = workdir / "haproxy"
        self.dir.mkdir()
        self.socket = self.dir / "admin.sock"
        (self.dir / "haproxy.cfg").write_text(
            "global\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 1s\n"
            "    timeout client 5s\n"
            "    timeout server 5s\n" + sections
        )
        self.log = open(self.dir / "haproxy.log", "w")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.dir / "haproxy.cfg")], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.socket.exists, 60, "haproxy's runtime API")

    def command(self, line):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self):
        """Server name → "addr:port" in BACKEND, from `show servers state`."""
        columns, servers = None, {}
        for line in self.command(f"show servers state {BACKEND}").splitlines():
            if line.startswith("# be_id"):
                columns = {name: index for index, name in enumerate(line[2:].split())}
            elif columns and len(line.split()) == len(columns):
                fields = line.split()
                servers[fields[columns["srv_name"]]] = f"{fields[columns['srv_addr']]}:{fields[columns['srv_port']]}"
        return servers

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def backend_section(servers_cfg):
    return f"backend {BACKEND}\n    balance roundrobin\n" + "".join(f"    {line}\n" for line in servers_cfg)


class Fleet:
    """N web servers, each with a record `web-NNNNN.ZONE` (public address) and a server
    `web/web-NNNNN` (private address:WEB_PORT) at generation 0, and an ipdrift config."""

    def __init__(self, ipdrift, size, interval="10s", watch=False, lb=True, frontend_port=None, private=private_addr, controller_extra=""):
        """`lb = False` leaves HAProxy out (DNS only); `frontend_port` adds an HTTP frontend
        on 127.0.0.1 in front of the backend; `private(generation, i)` is each server's
        address; `controller_extra` are more `[controller]` lines."""
        self.ipdrift = ipdrift
        self.size = size
        self.private = private
        self.workdir = Path(tempfile.mkdtemp(prefix="ipdrift-e2e-"))
        self.haproxy = None
        self.bind = Bind(self.workdir, [(instance_name(i), public_addr(0, i)) for i in range(size)])
        try:
            lb_config = ""
            if lb:
                servers = [f"server {instance_name(i)} {private(0, i)}:{WEB_PORT}" for i in range(size)]
                frontend = f"frontend www\n    bind 127.0.0.1:{frontend_port}\n    default_backend {BACKEND}\n" if frontend_port else ""
                self.haproxy = Haproxy(self.workdir, frontend + backend_section(servers))
                lb_config = (
                    f'[[haproxy]]\nname = "lb-01"\nruntime_api = "unix:{self.haproxy.socket}"\n\n'
                    f'[[haproxy.backend]]\nname = "{BACKEND}"\nselect = {{ tags = {{ role = "web" }} }}\n'
                    f'address = "private_ipv4"\nport = {WEB_PORT}\nserver = "{{name}}"\n'
                )
        except BaseException:
            self.bind.stop()
            raise
        self.metrics_port = free_port()
        self.instances = self.workdir / "instances.json"
        self.config = self.workdir / "ipdrift.toml"
        self.config.write_text(
            f'[controller]\ninterval = "{interval}"\nlisten = "127.0.0.1:{self.metrics_port}"\n{controller_extra}\n'
            '[[inventory]]\nname = "local"\nkind = "file"\npath = "instances.json"\n'
            f'watch = {"true" if watch else "false"}\n\n'
            f'[[dns]]\nname = "ns1"\nkind = "rfc2136"\nserver = "127.0.0.1:{self.bind.port}"\nzone = "{ZONE}"\n'
            f'tsig = {{ key_file = "{self.bind.key_file}" }}\n\n'
            f'[[record]]\ndns = "ns1"\nname = "{{name}}.{ZONE}"\nselect = {{ tags = {{ role = "web" }} }}\n'
            f'address = "public_ipv4"\nttl = {TTL}\n\n' + lb_config
        )
        self.write_instances(0)

    def write_instances(self, generation, events=None):
        """Every instance at `generation`'s addresses; `events`, if given, is each
        instance's list of announced events (the file source's `events` key)."""
        instances = [
            {
                "id": f"i-{i:06d}",
                "name": instance_name(i),
                "state": "running",
                "public_ipv4": public_addr(generation, i),
                "private_ipv4": self.private(generation, i),
                "tags": {"role": "web"},
            }
            for i in range(self.size)
        ]
        if events is not None:
            for instance in instances:
                instance["events"] = events
        write_atomically(self.instances, json.dumps(instances))

    def converged_at(self, generation):
        servers = self.haproxy.servers()
        for i in range(self.size):
            if servers.get(instance_name(i)) != f"{self.private(generation, i)}:{WEB_PORT}":
                return False
        return all(self.bind.dns.addresses(f"{instance_name(i)}.{ZONE}") == [public_addr(generation, i)] for i in range(self.size))

    def ipdrift_command(self, *args):
        return [self.ipdrift, "--config", str(self.config), *args]

    def floor(self, generation):
        """The same repair by the reference clients, DNS and HAProxy concurrently as
        ipdrift does it: one nsupdate batch and one pipelined runtime-API line."""
        nsupdate, script = self.bind.nsupdate([(f"{instance_name(i)}.{ZONE}", [public_addr(generation, i)]) for i in range(self.size)])
        line = ";".join(f"set server {BACKEND}/{instance_name(i)} addr {self.private(generation, i)} port {WEB_PORT}" for i in range(self.size))
        started = time.perf_counter()
        nsupdate.stdin.write(script)
        nsupdate.stdin.close()
        socat = subprocess.run(["socat", "-", f"UNIX-CONNECT:{self.haproxy.socket}"], input=line + "\n", capture_output=True, text=True, check=True)
        nsupdate_output = nsupdate.stdout.read()
        nsupdate.wait()
        elapsed = time.perf_counter() - started
        if nsupdate.returncode != 0:
            raise RuntimeError(f"nsupdate failed: {nsupdate_output}")
        if socat.stdout.count("changed from") != self.size:
            raise RuntimeError(f"socat's runtime-API write was not fully applied: {socat.stdout[:500]}")
        return elapsed

    def stop(self):
        try:
            if self.haproxy:
                self.haproxy.stop()
        finally:
            self.bind.stop()
            subprocess.run(["rm", "-rf", str(self.workdir)], check=True)


def applied_changes(output):
    report = json.loads(output)
    return sum(1 for change in report["changes"] if change.get("result") == "applied")


class ApplyFailed(Exception):
    """ipdrift apply did not repair the fleet; the message quotes its errors."""


def apply_errors(output):
    try:
        return "; ".join(error["message"] for error in json.loads(output)["errors"])
    except (ValueError, KeyError):
        return output[-1000:]


def bench_apply(ipdrift, sizes, repetitions):
    rows = []
    for size in sizes:
        fleet = Fleet(ipdrift, size)
        ipdrift_times, floor_times, generation = [], [], 0
        try:
            in_sync = subprocess.run(fleet.ipdrift_command("apply", "--output", "json"), capture_output=True, text=True)
            if in_sync.returncode != 0 or applied_changes(in_sync.stdout) != 0:
                raise RuntimeError(f"the fleet of {size} did not start in sync: {in_sync.stdout}{in_sync.stderr}")
            for _ in range(repetitions):
                generation += 1
                fleet.write_instances(generation)
                started = time.perf_counter()
                applied = subprocess.run(fleet.ipdrift_command("apply", "--output", "json"), capture_output=True, text=True)
                ipdrift_times.append(time.perf_counter() - started)
                if applied.returncode != 0 or applied_changes(applied.stdout) != 2 * size:
                    raise ApplyFailed(apply_errors(applied.stdout) or applied.stderr[-1000:])
                if not fleet.converged_at(generation):
                    raise RuntimeError(f"ipdrift apply of {size}: targets not at generation {generation}")
                generation += 1
                floor_times.append(fleet.floor(generation))
                if not fleet.converged_at(generation):
                    raise RuntimeError(f"floor of {size}: targets not at generation {generation}")
        except ApplyFailed as failure:
            # Time the floor once anyway, so the row shows what ipdrift failed to match.
            floor = fleet.floor(generation + 1)
            rows.append({"scenario": "apply", "size": size, "failed": str(failure), "floor_s": [floor]})
            print(f"| apply, N = {size} | failed: {failure} | {floor * 1000:.1f} ms | — |", flush=True)
            continue
        finally:
            fleet.stop()
        ipdrift_median, floor_median = statistics.median(ipdrift_times), statistics.median(floor_times)
        rows.append(
            {
                "scenario": "apply",
                "size": size,
                "repetitions": repetitions,
                "ipdrift_s": ipdrift_times,
                "floor_s": floor_times,
                "ipdrift_median_ms": round(ipdrift_median * 1000, 1),
                "floor_median_ms": round(floor_median * 1000, 1),
                "ratio": round(ipdrift_median / floor_median, 2),
            }
        )
        print(f"| apply, N = {size} | {rows[-1]['ipdrift_median_ms']} ms | {rows[-1]['floor_median_ms']} ms | **{rows[-1]['ratio']}×** |", flush=True)
    return rows


def time_repairs(converged_at, change_to, interval_s, repetitions, label):
    """Changes everything `repetitions` times at a random phase and times each repair."""
    samples = []
    for generation in range(1, repetitions + 1):
        time.sleep(random.uniform(0, interval_s))
        started = change_to(generation)
        deadline = started + 3 * interval_s + 10
        while not converged_at(generation):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{label}: generation {generation} not repaired within {deadline - started:.0f} s")
            time.sleep(POLL_SECONDS)
        samples.append(time.perf_counter() - started)
    return samples


def repair_row(label, interval_s, samples):
    row = {
        "scenario": "repair",
        "label": label,
        "interval_s": interval_s,
        "samples_s": samples,
        "p50_ms": round(percentile(samples, 0.5) * 1000),
        "p99_ms": round(percentile(samples, 0.99) * 1000),
    }
    print(f"| {label} | {len(samples)} | {row['p50_ms']} ms | {row['p99_ms']} ms |", flush=True)
    return row


def wait_ready(fleet, seconds):
    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{fleet.metrics_port}/readyz", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    wait_until(ready, seconds, "ipdrift /readyz")


def bench_repair_ipdrift(ipdrift, size, interval_s, repetitions, watch=False):
    fleet = Fleet(ipdrift, size, interval=f"{interval_s}s", watch=watch)
    log = open(fleet.workdir / "ipdrift.log", "w")
    run = subprocess.Popen(fleet.ipdrift_command("run"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(fleet, 30)

        def change_to(generation):
            fleet.write_instances(generation)
            return time.perf_counter()

        samples = time_repairs(fleet.converged_at, change_to, interval_s, repetitions, "ipdrift run")
    finally:
        run.terminate()
        run.wait(timeout=30)
        log.close()
        fleet.stop()
    how = "watching instances.json" if watch else "polling only (`watch = false`)"
    return repair_row(f"`ipdrift run --interval {interval_s}s`, {how}", interval_s, samples)


def bench_repair_cron(ipdrift, size, interval_s, repetitions):
    fleet = Fleet(ipdrift, size)
    duration = repetitions * (2 * interval_s + 2) + 60
    cron = subprocess.Popen(
        [str(CRON_SCRIPT), str(fleet.instances), f"127.0.0.1:{fleet.bind.port}", ZONE, str(fleet.bind.key_file), str(fleet.haproxy.socket), BACKEND, str(WEB_PORT), str(interval_s), str(duration)],
        stdout=subprocess.DEVNULL,
        stderr=open(fleet.workdir / "cron.log", "w"),
    )
    try:

        def change_to(generation):
            fleet.write_instances(generation)
            return time.perf_counter()

        samples = time_repairs(fleet.converged_at, change_to, interval_s, repetitions, "cron script")
    finally:
        cron.terminate()
        cron.wait(timeout=30)
        fleet.stop()
    return repair_row(f"cron-style script, every {interval_s}s", interval_s, samples)


def bench_repair_haproxy_dns(size, hold_valid_s, repetitions):
    """HAProxy following DNS itself: server-template over one name holding every address."""
    workdir = Path(tempfile.mkdtemp(prefix="ipdrift-e2e-"))
    owner = f"web.{ZONE}"
    bind = Bind(workdir, [("web", private_addr(0, i)) for i in range(size)])
    hold = f"    hold valid {hold_valid_s}s\n" if hold_valid_s is not None else ""
    haproxy = Haproxy(
        workdir,
        f"resolvers ns1\n    nameserver ns1 127.0.0.1:{bind.port}\n    accepted_payload_size 8192\n{hold}"
        + backend_section([f"server-template web {size} {owner.rstrip('.')}:{WEB_PORT} resolvers ns1 resolve-prefer ipv4 init-addr none"]),
    )

    def converged_at(generation):
        want = sorted(f"{private_addr(generation, i)}:{WEB_PORT}" for i in range(size))
        return sorted(haproxy.servers().values()) == want

    def change_to(generation):
        nsupdate, script = bind.nsupdate([(owner, [private_addr(generation, i) for i in range(size)])])
        output, _ = nsupdate.communicate(script)
        if nsupdate.returncode != 0:
            raise RuntimeError(f"nsupdate failed: {output}")
        return time.perf_counter()

    label = f"HAProxy DNS following, `hold valid` {'default (10s)' if hold_valid_s is None else f'{hold_valid_s}s'}"
    try:
        wait_until(lambda: converged_at(0), 60, "haproxy resolving the initial addresses")
        # HAProxy re-resolves every `timeout resolve` (default 1 s), whatever `hold valid` says.
        samples = time_repairs(converged_at, change_to, RESOLVE_TIMEOUT_S, repetitions, label)
    finally:
        haproxy.stop()
        bind.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    return repair_row(label, hold_valid_s, samples)


def cpu_seconds(pid):
    # Fields 14 and 15 of /proc/PID/stat (utime, stime) in clock ticks; the name may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1))


def scrape(fleet):
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.metrics_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()

    def total(pattern):
        return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern}\S* (\S+)$", text, re.M))

    return {
        "changes": total("ipdrift_changes_total"),
        "errors": total("ipdrift_errors_total"),
        "passes": total("ipdrift_reconcile_duration_seconds_count"),
        "pass_seconds": total("ipdrift_reconcile_duration_seconds_sum"),
    }


def bench_idle(ipdrift, size, interval_s, window_s):
    fleet = Fleet(ipdrift, size, interval=f"{interval_s}s")
    log = open(fleet.workdir / "ipdrift.log", "w")
    run = subprocess.Popen(fleet.ipdrift_command("run"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(fleet, 120)
        before, cpu_before = scrape(fleet), cpu_seconds(run.pid)
        time.sleep(window_s)
        after, cpu_after, peak = scrape(fleet), cpu_seconds(run.pid), peak_rss_kib(run.pid)
        journal = fleet.bind.dir / "zone.db.jnl"
        row = {
            "scenario": "idle",
            "size": size,
            "interval_s": interval_s,
            "window_s": window_s,
            "cpu_s_in_window": round(cpu_after - cpu_before, 2),
            "cpu_s_per_hour": round((cpu_after - cpu_before) * 3600 / window_s, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "changes_total": after["changes"],
            "errors_total": after["errors"],
            "zone_journal_exists": journal.exists(),
            "passes_in_window": after["passes"] - before["passes"],
            "mean_pass_ms": round(1000 * (after["pass_seconds"] - before["pass_seconds"]) / max(1, after["passes"] - before["passes"]), 1),
        }
    finally:
        run.terminate()
        run.wait(timeout=30)
        log.close()
        fleet.stop()
    print(
        f"| idle, {size} instances, interval {interval_s}s | {row['cpu_s_in_window']} CPU s in {window_s} s "
        f"→ {row['cpu_s_per_hour']} CPU s/h | {row['peak_rss_mib']} MiB | {row['changes_total']:.0f} changes, "
        f"journal {'written' if row['zone_journal_exists'] else 'untouched'} | {row['passes_in_window']:.0f} passes, mean {row['mean_pass_ms']} ms |",
        flush=True,
    )
    return row


def timed_median(command, repetitions, check, stdin=None):
    times = []
    for _ in range(repetitions):
        started = time.perf_counter()
        done = subprocess.run(command, input=stdin, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if not check(done):
            raise RuntimeError(f"{command[0]} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    return statistics.median(times)


def bench_read(ipdrift, size, repetitions):
    fleet = Fleet(ipdrift, size)
    try:
        diff = timed_median(fleet.ipdrift_command("diff"), repetitions, lambda done: done.returncode == 0)
        axfr = timed_median(
            ["dig", "-k", str(fleet.bind.key_file), "-p", str(fleet.bind.port), "@127.0.0.1", ZONE, "AXFR", "+noall", "+answer"],
            repetitions,
            lambda done: done.returncode == 0 and done.stdout.count("\tA\t") >= size,
        )
        show = timed_median(
            ["socat", "-", f"UNIX-CONNECT:{fleet.haproxy.socket}"],
            repetitions,
            lambda done: done.returncode == 0 and done.stdout.count(f" {BACKEND} ") >= size,
            stdin=f"show servers state {BACKEND}\n",
        )
    finally:
        fleet.stop()
    row = {
        "scenario": "read",
        "size": size,
        "diff_median_ms": round(diff * 1000, 1),
        "axfr_median_ms": round(axfr * 1000, 1),
        "show_servers_state_ms": round(show * 1000, 1),
        "ratio": round(diff / (axfr + show), 2),
    }
    print(f"| read, {size} in sync: `ipdrift diff` vs `dig AXFR` + `show servers state` | {row['diff_median_ms']} ms | {row['axfr_median_ms']} + {row['show_servers_state_ms']} ms | **{row['ratio']}×** |", flush=True)
    return row


# What a user sees: a client resolving through a caching resolver.

STALE_NAME = f"{instance_name(0)}.{ZONE}"
# How often the client resolves (and, with HAProxy, requests a page).
CLIENT_PERIOD_S = 0.1
# After its first answer with the new address the client keeps watching this long; an old
# address in that time fails the repetition.
CONFIRM_S = 1.0
# The instances' web servers listen on loopback addresses from here, each variant 1 << 20
# addresses apart, so that variants running at once never share one.
LOOPBACK_WEB_BASE = struct.unpack(">I", socket.inet_aton("127.100.0.10"))[0]
VARIANT_STRIDE = 1 << 20
# How long after the change the announced variant waits for the TTL to be back at TTL.
RESTORE_LIMIT_S = 150


class Unbound:
    """Debian's unbound on a free loopback port, caching, asking BIND (a stub zone) for ZONE."""

    def __init__(self, workdir, bind_port):
        self.dir = workdir / "unbound"
        self.dir.mkdir()
        self.port = free_port()
        conf = self.dir / "unbound.conf"
        conf.write_text(
            "server:\n"
            f"    interface: 127.0.0.1\n    port: {self.port}\n    do-ip6: no\n    num-threads: 1\n"
            f'    do-daemonize: no\n    username: ""\n    chroot: ""\n    directory: "{self.dir}"\n'
            f'    pidfile: "{self.dir}/unbound.pid"\n    use-syslog: no\n    logfile: ""\n    verbosity: 1\n'
            '    do-not-query-localhost: no\n    module-config: "iterator"\n'
            f'    domain-insecure: "{ZONE}"\n'
            # Unbound answers NXDOMAIN for the reserved test. itself unless told not to.
            '    local-zone: "test." nodefault\n'
            # Its defaults, written out because the stale window depends on them: answers are
            # kept exactly their TTL, never served expired, never refreshed early.
            "    cache-min-ttl: 0\n    serve-expired: no\n    prefetch: no\n"
            f'stub-zone:\n    name: "{ZONE}"\n    stub-addr: 127.0.0.1@{bind_port}\n'
            # A local socket for `unbound-control flush`, which sets the cache's phase.
            f'remote-control:\n    control-enable: yes\n    control-interface: "{self.dir}/unbound.ctl"\n    control-use-cert: no\n'
        )
        self.conf = conf
        checked = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"unbound-checkconf {conf}: {checked.stdout}{checked.stderr}")
        self.log = open(self.dir / "unbound.log", "w")
        self.process = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            dns = DnsClient(self.port)
            try:

                def answers():
                    try:
                        return dns.answer(f"ns1.{ZONE}", recursion_desired=True)[0] == ["127.0.0.1"]
                    except OSError:
                        return False

                wait_until(answers, 30, f"unbound answering for {ZONE} (log: {self.dir}/unbound.log)")
            finally:
                dns.close()
        except BaseException:
            self.stop()
            raise

    def flush(self, name):
        """Drops `name` from the cache: the next query fetches it afresh from BIND."""
        done = subprocess.run(["unbound-control", "-c", str(self.conf), "flush", name], capture_output=True, text=True, timeout=10)
        if done.returncode != 0 or "ok" not in done.stdout:
            raise RuntimeError(f"unbound-control flush {name}: {done.stdout}{done.stderr}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class WebServers:
    """The instances' web servers: one small HTTP server per loopback address and WEB_PORT."""

    def __init__(self):
        self.running = {}

    def start(self, addrs):
        for addr in addrs:
            server = http.server.ThreadingHTTPServer((addr, WEB_PORT), QuietHandler)
            server.daemon_threads = True
            # A short poll: shutdown() waits for it, and an old address should die at once.
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
            self.running[addr] = server

    def stop(self, addrs):
        for addr in addrs:
            server = self.running.pop(addr)
            server.shutdown()
            server.server_close()

    def stop_all(self):
        self.stop(list(self.running))


class StaleClient:
    """A user: every CLIENT_PERIOD_S it resolves STALE_NAME through the caching resolver and,
    given HAProxy's frontend, requests a page through it; every answer is kept with its time."""

    def __init__(self, resolver_port, authoritative_port, http_port=None):
        self.resolver_port = resolver_port
        self.authoritative_port = authoritative_port
        self.http_port = http_port
        self.lock = threading.Lock()
        # (monotonic time, sorted addresses or None on a failed query, TTL): what the user
        # gets through the resolver, and what BIND itself holds at that moment.
        self.dns_samples = []
        self.bind_samples = []
        self.http_samples = []  # (monotonic time, whether the answer was 200)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.resolve_loop, daemon=True)]
        if http_port:
            self.threads.append(threading.Thread(target=self.http_loop, daemon=True))
        for thread in self.threads:
            thread.start()

    def every_period(self, once):
        next_at = time.monotonic()
        while not self.stopping.is_set():
            once()
            next_at += CLIENT_PERIOD_S
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def resolve_loop(self):
        resolver, authoritative = DnsClient(self.resolver_port), DnsClient(self.authoritative_port)

        def ask(dns, samples, recursion_desired):
            asked = time.monotonic()
            try:
                addrs, ttl = dns.answer(STALE_NAME, recursion_desired)
            except OSError:
                addrs, ttl = None, None
            with self.lock:
                samples.append((asked, addrs, ttl))

        def once():
            ask(resolver, self.dns_samples, True)
            ask(authoritative, self.bind_samples, False)

        try:
            self.every_period(once)
        finally:
            resolver.close()
            authoritative.close()

    def http_loop(self):
        def once():
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/", timeout=2) as answer:
                    ok = answer.status == 200
            except OSError:  # urllib's HTTPError (a 503) is an OSError too
                ok = False
            with self.lock:
                self.http_samples.append((asked, ok))

        self.every_period(once)

    def dns_between(self, start, end=float("inf")):
        with self.lock:
            return [sample for sample in self.dns_samples if start <= sample[0] < end]

    def first_at_bind(self, start, wanted):
        """When BIND first answered (addresses, TTL) satisfying `wanted` since `start`."""
        with self.lock:
            return next((asked for asked, addrs, ttl in self.bind_samples if asked >= start and wanted(addrs, ttl)), None)

    def http_between(self, start, end=float("inf")):
        with self.lock:
            return [sample for sample in self.http_samples if start <= sample[0] < end]

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)


def observe_stale(client, changed_at, old, new, limit_s):
    """Seconds from the change to the client's first answer with the new address; no old
    address may follow within CONFIRM_S. Also the old answers and failed queries seen."""
    deadline = changed_at + limit_s
    while True:
        samples = client.dns_between(changed_at)
        first_new = next((asked for asked, addrs, _ in samples if addrs == new), None)
        if first_new is not None and time.monotonic() >= first_new + CONFIRM_S:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the client still saw no {new} {limit_s:.0f} s after the change; last answers {samples[-3:]}")
        pause(0.05)
    if any(addrs == old for asked, addrs, _ in samples if asked > first_new):
        raise RuntimeError(f"the client saw the old {old} again after the new {new}")
    before = [addrs for asked, addrs, _ in samples if asked < first_new]
    return first_new - changed_at, sum(addrs == old for addrs in before), sum(addrs != old for addrs in before)


def ttl_at(dns, name):
    try:
        return dns.answer(name)[1]
    except OSError:
        return None


def rfc3339(unix_seconds):
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def bench_stale_variant(ipdrift, variant, index, size, repetitions, maintenance_ttl, logs=None):
    """One variant of the stale scenario: `repetitions` all-addresses changes, each at a
    random phase of the resolver's cache, timed as the client behind unbound sees them."""
    announced = variant["announced"]
    http_port = free_port() if variant["lb"] else None

    def private(generation, i):
        return ipv4(LOOPBACK_WEB_BASE + index * VARIANT_STRIDE + generation * GENERATION_STRIDE + i)

    drain = "true" if variant.get("drain") else "false"
    extra = f'maintenance_ttl = {maintenance_ttl}\nmaintenance_lead = "2m"\nmaintenance_drain = {drain}\n' if announced else ""
    web = WebServers()
    fleet = unbound = client = run = log = None
    try:
        if http_port:
            web.start([private(0, i) for i in range(size)])
        fleet = Fleet(ipdrift, size, interval=variant["interval"], watch=variant["watch"], lb=variant["lb"], frontend_port=http_port, private=private, controller_extra=extra)
        unbound = Unbound(fleet.workdir, fleet.bind.port)
        log = open(fleet.workdir / "ipdrift.log", "w")
        run = subprocess.Popen(fleet.ipdrift_command("run", "--interval", variant["interval"]), stdout=log, stderr=subprocess.STDOUT)
        wait_ready(fleet, 60)
        client = StaleClient(unbound.port, fleet.bind.port, http_port)
        wait_until(lambda: any(addrs == [public_addr(0, 0)] for _, addrs, _ in client.dns_between(0)), 30, "the client's first answer")
        interval_s = parse_seconds(variant["interval"])
        samples = []
        for generation in range(1, repetitions + 1):
            old, new = [public_addr(generation - 1, 0)], [public_addr(generation, 0)]
            started = time.monotonic()
            lowered_after = restored_after = None
            if announced:
                # The provider announces a stop of every instance; ipdrift lowers the TTL at
                # once (the event is within maintenance_lead). The stop comes when both the
                # event's time has come and every copy cached with the old TTL has expired.
                not_before = math.ceil(time.time()) + TTL + 15
                events = [{"code": "instance-stop", "not_before": rfc3339(not_before), "description": "scheduled stop", "changes_addresses": True}]
                fleet.write_instances(generation - 1, events=events)
                wait_until(lambda: client.first_at_bind(started, lambda addrs, ttl: ttl == maintenance_ttl), 60, f"ipdrift lowering {STALE_NAME}'s TTL to {maintenance_ttl} at BIND")
                lowered_at = client.first_at_bind(started, lambda addrs, ttl: ttl == maintenance_ttl)
                lowered_after = lowered_at - started
                due = max(lowered_at + TTL + 1, time.monotonic() + not_before - time.time())
                pause(due - time.monotonic() + random.uniform(0, maintenance_ttl))
            else:
                # Two independent random phases, as for any one resolver among many: of
                # the controller's passes (a pause of up to one interval), then of the
                # cache (flushed, so refetched within 100 ms, then up to one TTL old).
                pause(random.uniform(0, interval_s))
                unbound.flush(STALE_NAME)
                pause(random.uniform(0, TTL))
            seen = client.dns_between(started)
            cached_ttl = seen[-1][2] if seen else None
            # The instances stop and start: the old addresses die, the new ones serve, and
            # the provider lists the new ones (and no more events).
            if http_port:
                web.start([private(generation, i) for i in range(size)])
            changed_at = time.monotonic()
            if http_port:
                web.stop([private(generation - 1, i) for i in range(size)])
            fleet.write_instances(generation)
            stale_s, old_answers, failed_queries = observe_stale(client, changed_at, old, new, TTL + 1.1 * interval_s + 30)
            repaired_after = client.first_at_bind(changed_at, lambda addrs, ttl: addrs == new) - changed_at
            if announced:
                def restored(addrs, ttl):
                    return addrs == new and ttl == TTL

                try:
                    wait_until(lambda: client.first_at_bind(changed_at, restored), RESTORE_LIMIT_S, "TTL restored")
                    restored_after = client.first_at_bind(changed_at, restored) - changed_at
                except RuntimeError:
                    # A finding, not a failed run: the row says the TTL stayed low.
                    print(f"stale {variant['name']}: {STALE_NAME}'s TTL at BIND is still {ttl_at(fleet.bind.dns, STALE_NAME)}, not {TTL}, {RESTORE_LIMIT_S} s after the change", file=sys.stderr)
            http_before = client.http_between(started, changed_at)
            http_after = client.http_between(changed_at)
            samples.append(
                {
                    "stale_s": round(stale_s, 3),
                    "repaired_at_bind_after_s": round(repaired_after, 3),
                    "cached_ttl_at_change": cached_ttl,
                    "old_answers": old_answers,
                    "failed_queries": failed_queries,
                    "ttl_lowered_after_s": None if lowered_after is None else round(lowered_after, 3),
                    "ttl_restored_after_s": None if restored_after is None else round(restored_after, 3),
                    "http_requests": len(http_before) + len(http_after),
                    "http_failed_before_change": sum(not ok for _, ok in http_before),
                    "http_failed_after_change": sum(not ok for _, ok in http_after),
                }
            )
            print(f"  stale {variant['name']} #{generation}: {samples[-1]}", file=sys.stderr, flush=True)
    finally:
        keep = fleet and logs and (lambda: keep_logs(fleet.workdir, logs, f"stale-{variant['name']}"))
        for stop in [client and client.stop, run and (lambda: (run.terminate(), run.wait(timeout=30))), unbound and unbound.stop, keep, fleet and fleet.stop, web.stop_all]:
            if stop:
                try:
                    stop()
                except Exception as error:  # noqa: BLE001 - stop the rest, then report
                    print(f"stale {variant['name']}: stopping: {error}", file=sys.stderr)
        if log:
            log.close()
    stale = [sample["stale_s"] for sample in samples]
    row = {
        "scenario": "stale",
        "variant": variant["name"],
        "label": variant["label"],
        "size": size,
        "repetitions": repetitions,
        "samples": samples,
        "stale_p50_s": round(percentile(stale, 0.5), 1),
        "stale_p99_s": round(percentile(stale, 0.99), 1),
        "repair_p50_s": round(percentile([s["repaired_at_bind_after_s"] for s in samples], 0.5), 1),
        "repair_p99_s": round(percentile([s["repaired_at_bind_after_s"] for s in samples], 0.99), 1),
        "http_failed": sum(s["http_failed_before_change"] + s["http_failed_after_change"] for s in samples) if http_port else None,
        "http_requests": sum(s["http_requests"] for s in samples) if http_port else None,
    }
    return row


def keep_logs(workdir, logs, prefix):
    """Copies the servers' and ipdrift's logs out of `workdir` before it is removed."""
    logs.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("**/*.log"):
        shutil.copy(log, logs / f"{prefix}-{log.name}")


def parse_seconds(text):
    value, unit = re.fullmatch(r"(\d+)(s|m)", text).groups()
    return int(value) * (60 if unit == "m" else 1)


STALE_VARIANTS = [
    {"name": "unannounced", "label": "unannounced change; `ipdrift run --interval 10s`, file watch, HAProxy repaired", "interval": "10s", "watch": True, "lb": True, "announced": False},
    {"name": "external-dns", "label": "external-dns-like: `ipdrift run --interval 1m`, `watch = false`, DNS only", "interval": "1m", "watch": False, "lb": False, "announced": False},
    {"name": "announced", "label": "announced event 75 s ahead (within `maintenance_lead = \"2m\"`), TTL lowered to `maintenance_ttl`; `--interval 10s`, file watch, HAProxy repaired, `maintenance_drain = true`", "interval": "10s", "watch": True, "lb": True, "announced": True, "drain": True},
    {"name": "announced-nodrain", "label": "the same with `maintenance_drain = false`", "interval": "10s", "watch": True, "lb": True, "announced": True, "drain": False},
]


def bench_stale(ipdrift, names, size, repetitions, maintenance_ttl, logs=None):
    """The variants run at the same time (each with its own BIND, unbound, HAProxy and
    addresses): they are minutes of waiting for TTLs, not CPU."""
    chosen = [(index, variant) for index, variant in enumerate(STALE_VARIANTS) if variant["name"] in names]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(chosen))
    try:
        futures = [(variant, pool.submit(bench_stale_variant, ipdrift, variant, index, size, repetitions, maintenance_ttl, logs)) for index, variant in chosen]
        concurrent.futures.wait([future for _, future in futures])
    except KeyboardInterrupt:
        ABORT.set()
        raise
    finally:
        # After an interrupt too: each variant stops its own servers on the way out.
        pool.shutdown(wait=True)
    rows = []
    for variant, future in futures:
        try:
            row = future.result()
        except Exception as error:  # noqa: BLE001 - one failed variant still shows the others
            rows.append({"scenario": "stale", "variant": variant["name"], "failed": str(error)})
            print(f"| {variant['label']} | failed: {error} | | | | |", flush=True)
            continue
        rows.append(row)
        http = "— (not managed)" if row["http_failed"] is None else f"{row['http_failed']} of {row['http_requests']}"
        print(f"| {row['label']} | {row['repetitions']} | {row['repair_p50_s']} / {row['repair_p99_s']} s | {row['stale_p50_s']} s | {row['stale_p99_s']} s | {http} |", flush=True)
    by_name = {row["variant"]: row for row in rows if "failed" not in row}
    for name in [n for n in ["announced", "announced-nodrain"] if n in by_name]:
        row = by_name[name]
        lowered = [s["ttl_lowered_after_s"] for s in row["samples"]]
        restored = [s["ttl_restored_after_s"] for s in row["samples"]]
        bound = maintenance_ttl + 1
        print(
            f"\n{name}: TTL at BIND lowered to {maintenance_ttl} a median {statistics.median(lowered):.2f} s after the announcement; "
            + (f"back at {TTL} a median {statistics.median(restored):.2f} s after the change" if None not in restored else f"NOT back at {TTL} within {RESTORE_LIMIT_S} s after {restored.count(None)} of {len(restored)} changes")
            + f"; stale p99 {row['stale_p99_s']} s ≤ maintenance_ttl + 1 s ({bound} s): {'**met**' if row['stale_p99_s'] <= bound else '**missed**'}",
            flush=True,
        )
    for name in ["external-dns", "announced", "announced-nodrain"]:
        if name in by_name and "unannounced" in by_name:
            p50 = by_name[name]["stale_p50_s"] / max(by_name["unannounced"]["stale_p50_s"], 0.001)
            p99 = by_name[name]["stale_p99_s"] / max(by_name["unannounced"]["stale_p99_s"], 0.001)
            print(f"\n{name} / unannounced: p50 **{p50:.2f}×**, p99 **{p99:.2f}×**", flush=True)
    return rows


# AWS: EC2 state-change events through SQS against polling, on moto.

AWS_REGION = "eu-west-1"
# Credentials moto accepts, and nothing that could send the SDK elsewhere.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": AWS_REGION,
    "AWS_CONFIG_FILE": "/nonexistent/ipdrift-bench/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/ipdrift-bench/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Moto:
    """moto_server (a local AWS) on a free loopback port, with boto3 clients for it."""

    def __init__(self, workdir):
        binary = shutil.which("moto_server") or str(Path.home() / ".pyenv/shims/moto_server")
        if not Path(binary).exists():
            raise RuntimeError("moto_server is not installed: python3 -m pip install 'moto[server]'")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "moto.log", "w")
        self.process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)

        def answers():
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                return False

        try:
            wait_until(answers, 60, "moto_server answering")
        except BaseException:
            self.stop()
            raise

    def client(self, service):
        import boto3  # only this scenario needs it

        return boto3.client(service, endpoint_url=self.endpoint, region_name=AWS_REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10).close()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def ec2_state_change(instance_id, state):
    """An EC2 state-change event as EventBridge delivers it to an SQS target."""
    return json.dumps(
        {
            "version": "0",
            "id": f"bench-{random.randrange(1 << 32):08x}",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": rfc3339(time.time()),
            "region": AWS_REGION,
            "resources": [f"arn:aws:ec2:{AWS_REGION}:123456789012:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": state},
        }
    )


def bench_aws_variant(ipdrift, moto, workdir, size, repetitions, interval_s, events, early=False):
    """`size` instances stopped and started at once (each gets a new public address),
    `repetitions` times at a random phase of the poll; timed from the start to every record
    holding the new address in Route 53. With `events`, each instance's "running" event is
    put on the queue right after the start, as EventBridge does; with `early` too, 2 s
    before the start instead (an event ahead of what DescribeInstances shows, which the
    source settles by describing again with back-off, as tests/aws_events.rs does)."""
    moto.reset()
    ec2, route53, sqs = moto.client("ec2"), moto.client("route53"), moto.client("sqs")
    zone_id = route53.create_hosted_zone(Name=ZONE, CallerReference=f"bench-{time.time()}")["HostedZone"]["Id"].split("/")[-1]
    queue = sqs.create_queue(QueueName="ipdrift-events")["QueueUrl"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    ids = []
    for i in range(size):
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": instance_name(i)}, {"Key": "role", "Value": "web"}]}]
        ids.append(ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=subnet, TagSpecifications=tags)["Instances"][0]["InstanceId"])

    def public_ips():
        found = {}
        for reservation in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance.get("PublicIpAddress")
        return [found[i] for i in ids]

    def in_route53(addrs):
        sets = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        have = {s["Name"]: sorted(r["Value"] for r in s.get("ResourceRecords", [])) for s in sets if s["Type"] == "A"}
        return all(have.get(f"{instance_name(i)}.{ZONE}") == [addr] for i, addr in enumerate(addrs))

    metrics_port = free_port()
    kind = ("early-events" if early else "events") if events else f"poll-{interval_s}s"
    config = workdir / f"ipdrift-aws-{kind}.toml"
    config.write_text(
        f'[controller]\ntimeout = "5s"\nlisten = "127.0.0.1:{metrics_port}"\n\n'
        f'[[inventory]]\nname = "ec2"\nkind = "aws"\nregion = "{AWS_REGION}"\nendpoint = "{moto.endpoint}"\n'
        + (f'events_queue = "{queue}"\n' if events else "")
        + f'\n[[dns]]\nname = "r53"\nkind = "route53"\nzone = "{ZONE}"\nendpoint = "{moto.endpoint}"\n\n'
        f'[[record]]\ndns = "r53"\nname = "{{name}}.{ZONE}"\nselect = {{ tags = {{ role = "web" }} }}\naddress = "public_ipv4"\n'
    )
    env = {key: value for key, value in os.environ.items() if key not in ("RUST_LOG", "IPDRIFT_CONFIG", "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    env.update(AWS_TEST_ENV)
    log_path = config.with_suffix(".log")
    log = open(log_path, "w")
    run = subprocess.Popen([ipdrift, "--config", str(config), "run", "--interval", f"{interval_s}s"], stdout=log, stderr=subprocess.STDOUT, env=env)
    samples = []
    try:
        addrs = public_ips()
        wait_until(lambda: in_route53(addrs), 60, "ipdrift's first pass writing the records to Route 53")
        for _ in range(repetitions):
            # Events need no phase: the poll is 10 minutes away. Polls do.
            time.sleep(random.uniform(0, 2 if events else interval_s))
            ec2.stop_instances(InstanceIds=ids)
            if early:
                for instance_id in ids:
                    sqs.send_message(QueueUrl=queue, MessageBody=ec2_state_change(instance_id, "running"))
                time.sleep(2)
            ec2.start_instances(InstanceIds=ids)
            started = time.monotonic()
            if events and not early:
                for instance_id in ids:
                    sqs.send_message(QueueUrl=queue, MessageBody=ec2_state_change(instance_id, "running"))
            new = public_ips()
            if new == addrs:
                raise RuntimeError("a stop and start in moto gave the same public addresses")
            deadline = started + 2 * interval_s + 30
            while not in_route53(new):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Route 53 did not show {new} within {deadline - started:.0f} s (log: {log_path})")
                time.sleep(0.02)
            samples.append(round(time.monotonic() - started, 3))
            addrs = new
            print(f"  aws {kind}: {samples[-1]} s", file=sys.stderr, flush=True)
    finally:
        run.terminate()
        run.wait(timeout=30)
        log.close()
    if events and "EC2 state change; pass asked for" not in log_path.read_text():
        raise RuntimeError(f"no pass was the event's (log: {log_path})")
    label = f"polling only, `--interval {interval_s}s`"
    if events:
        label = "event on the queue right after the start (`events_queue`), `--interval 10m`"
    if early:
        label = "event on the queue 2 s before the start (settled by re-describing), `--interval 10m`"
    row = {
        "scenario": "aws",
        "kind": kind,
        "label": label,
        "size": size,
        "interval_s": interval_s,
        "samples_s": samples,
        "p50_ms": round(percentile(samples, 0.5) * 1000),
        "p99_ms": round(percentile(samples, 0.99) * 1000),
    }
    print(f"| {label} | {len(samples)} | {row['p50_ms']} ms | {row['p99_ms']} ms |", flush=True)
    return row


def bench_aws(ipdrift, size, repetitions, poll_intervals):
    workdir = Path(tempfile.mkdtemp(prefix="ipdrift-e2e-aws-"))
    moto = Moto(workdir)
    rows = []
    try:
        rows.append(bench_aws_variant(ipdrift, moto, workdir, size, repetitions, 600, events=True))
        rows.append(bench_aws_variant(ipdrift, moto, workdir, size, repetitions, 600, events=True, early=True))
        for interval_s in poll_intervals:
            rows.append(bench_aws_variant(ipdrift, moto, workdir, size, repetitions, interval_s, events=False))
    finally:
        moto.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    for row in rows[2:]:
        print(f"\nevents / polling at {row['interval_s']} s: p50 **{rows[0]['p50_ms'] / row['p50_ms']:.3f}×**, p99 **{rows[0]['p99_ms'] / row['p99_ms']:.3f}×**", flush=True)
    return rows


SCENARIOS = ["apply", "repair", "idle", "read", "stale", "aws"]


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    # SIGTERM unwinds like Ctrl-C, so that every `finally` stops its servers.
    signal.signal(signal.SIGTERM, interrupted)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipdrift", required=True, help="the release binary")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--logs", type=Path, help="stale: keep ipdrift's and the servers' logs in this directory")
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--apply-sizes", default="1,10,100,1000")
    parser.add_argument("--apply-repetitions", type=int, default=7)
    parser.add_argument("--repair-size", type=int, default=10, help="instances changed at once")
    parser.add_argument("--repair-repetitions", type=int, default=20)
    parser.add_argument("--repair-intervals", default="1,10", help="seconds")
    parser.add_argument("--idle-size", type=int, default=10_000)
    parser.add_argument("--idle-interval", type=int, default=10, help="seconds")
    parser.add_argument("--idle-window", type=int, default=60, help="seconds of CPU measured")
    parser.add_argument("--read-repetitions", type=int, default=5)
    parser.add_argument("--stale-variants", default="unannounced,external-dns,announced,announced-nodrain", help="any of " + ", ".join(v["name"] for v in STALE_VARIANTS))
    parser.add_argument("--stale-size", type=int, default=3, help="instances; the client resolves the first")
    parser.add_argument("--stale-repetitions", type=int, default=5)
    parser.add_argument("--aws-size", type=int, default=3, help="instances stopped and started at once")
    parser.add_argument("--aws-repetitions", type=int, default=10)
    parser.add_argument("--aws-poll-intervals", default="1,10", help="seconds, polling without events")
    parser.add_argument("--maintenance-ttl", type=int, default=10, help="seconds; the announced variant's controller.maintenance_ttl")
    args = parser.parse_args()
    args.scenarios = args.scenarios or SCENARIOS
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    unknown = set(args.stale_variants.split(",")) - {variant["name"] for variant in STALE_VARIANTS}
    if unknown:
        parser.error(f"unknown --stale-variants {', '.join(sorted(unknown))}; choose from {', '.join(v['name'] for v in STALE_VARIANTS)}")
    results = []
    if "apply" in args.scenarios:
        print("| apply latency | ipdrift apply (median) | floor: nsupdate ‖ socat (median) | ratio |\n|---|---|---|---|", flush=True)
        results += bench_apply(args.ipdrift, [int(n) for n in args.apply_sizes.split(",")], args.apply_repetitions)
    if "repair" in args.scenarios:
        print(f"\n| time to repair ({args.repair_size} records + servers all changed) | repetitions | p50 | p99 |\n|---|---|---|---|", flush=True)
        for interval_s in [int(s) for s in args.repair_intervals.split(",")]:
            results.append(bench_repair_ipdrift(args.ipdrift, args.repair_size, interval_s, args.repair_repetitions))
            results.append(bench_repair_ipdrift(args.ipdrift, args.repair_size, interval_s, args.repair_repetitions, watch=True))
            results.append(bench_repair_cron(args.ipdrift, args.repair_size, interval_s, args.repair_repetitions))
        for hold_valid_s in [None, 1]:
            results.append(bench_repair_haproxy_dns(args.repair_size, hold_valid_s, args.repair_repetitions))
    if "idle" in args.scenarios:
        print("\n| idle | CPU | peak RSS (VmHWM) | writes | passes |\n|---|---|---|---|---|", flush=True)
        results.append(bench_idle(args.ipdrift, args.idle_size, args.idle_interval, args.idle_window))
    if "read" in args.scenarios:
        print("\n| reads of one pass | ipdrift (median) | floor (median) | ratio |\n|---|---|---|---|", flush=True)
        results.append(bench_read(args.ipdrift, args.idle_size, args.read_repetitions))
    if "stale" in args.scenarios:
        print(
            f"\n| what a client behind unbound sees ({args.stale_size} instances, TTL {TTL} s, all addresses changed) | repetitions | repaired at BIND p50 / p99 | stale p50 | stale p99 | HTTP requests failed |\n|---|---|---|---|---|---|",
            flush=True,
        )
        results += bench_stale(args.ipdrift, args.stale_variants.split(","), args.stale_size, args.stale_repetitions, args.maintenance_ttl, args.logs)
    if "aws" in args.scenarios:
        print(f"\n| time to repair on moto ({args.aws_size} instances stopped and started) | repetitions | p50 | p99 |\n|---|---|---|---|", flush=True)
        results += bench_aws(args.ipdrift, args.aws_size, args.aws_repetitions, [int(s) for s in args.aws_poll_intervals.split(",")])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
