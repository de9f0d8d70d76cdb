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
"""

import argparse
import json
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
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


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
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
        query_id = random.randrange(1 << 16)
        qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
        self.sock.sendto(struct.pack(">6H", query_id, 0, 1, 0, 0, 0) + qname + b"\0" + struct.pack(">HH", 1, 1), self.server)
        while True:
            answer = self.sock.recv(65535)
            if struct.unpack(">H", answer[:2])[0] == query_id:
                break
        count = struct.unpack(">H", answer[6:8])[0]
        offset = skip_name(answer, 12) + 4
        found = []
        for _ in range(count):
            offset = skip_name(answer, offset)
            rtype, _, _, length = struct.unpack(">HHIH", answer[offset : offset + 10])
            offset += 10
            if rtype == 1:
                found.append(socket.inet_ntoa(answer[offset : offset + 4]))
            offset += length
        return sorted(found)

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

    def __init__(self, ipdrift, size, interval="10s", watch=False):
        self.ipdrift = ipdrift
        self.size = size
        self.workdir = Path(tempfile.mkdtemp(prefix="ipdrift-e2e-"))
        self.bind = Bind(self.workdir, [(instance_name(i), public_addr(0, i)) for i in range(size)])
        servers = [f"server {instance_name(i)} {private_addr(0, i)}:{WEB_PORT}" for i in range(size)]
        self.haproxy = Haproxy(self.workdir, backend_section(servers))
        self.metrics_port = free_port()
        self.instances = self.workdir / "instances.json"
        self.config = self.workdir / "ipdrift.toml"
        self.config.write_text(
            f'[controller]\ninterval = "{interval}"\nlisten = "127.0.0.1:{self.metrics_port}"\n\n'
            '[[inventory]]\nname = "local"\nkind = "file"\npath = "instances.json"\n'
            f'watch = {"true" if watch else "false"}\n\n'
            f'[[dns]]\nname = "ns1"\nkind = "rfc2136"\nserver = "127.0.0.1:{self.bind.port}"\nzone = "{ZONE}"\n'
            f'tsig = {{ key_file = "{self.bind.key_file}" }}\n\n'
            f'[[record]]\ndns = "ns1"\nname = "{{name}}.{ZONE}"\nselect = {{ tags = {{ role = "web" }} }}\n'
            f'address = "public_ipv4"\nttl = {TTL}\n\n'
            f'[[haproxy]]\nname = "lb-01"\nruntime_api = "unix:{self.haproxy.socket}"\n\n'
            f'[[haproxy.backend]]\nname = "{BACKEND}"\nselect = {{ tags = {{ role = "web" }} }}\n'
            f'address = "private_ipv4"\nport = {WEB_PORT}\nserver = "{{name}}"\n'
        )
        self.write_instances(0)

    def write_instances(self, generation):
        instances = [
            {
                "id": f"i-{i:06d}",
                "name": instance_name(i),
                "state": "running",
                "public_ipv4": public_addr(generation, i),
                "private_ipv4": private_addr(generation, i),
                "tags": {"role": "web"},
            }
            for i in range(self.size)
        ]
        write_atomically(self.instances, json.dumps(instances))

    def converged_at(self, generation):
        servers = self.haproxy.servers()
        for i in range(self.size):
            if servers.get(instance_name(i)) != f"{private_addr(generation, i)}:{WEB_PORT}":
                return False
        return all(self.bind.dns.addresses(f"{instance_name(i)}.{ZONE}") == [public_addr(generation, i)] for i in range(self.size))

    def ipdrift_command(self, *args):
        return [self.ipdrift, "--config", str(self.config), *args]

    def floor(self, generation):
        """The same repair by the reference clients, DNS and HAProxy concurrently as
        ipdrift does it: one nsupdate batch and one pipelined runtime-API line."""
        nsupdate, script = self.bind.nsupdate([(f"{instance_name(i)}.{ZONE}", [public_addr(generation, i)]) for i in range(self.size)])
        line = ";".join(f"set server {BACKEND}/{instance_name(i)} addr {private_addr(generation, i)} port {WEB_PORT}" for i in range(self.size))
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
        self.haproxy.stop()
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


SCENARIOS = ["apply", "repair", "idle", "read"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipdrift", required=True, help="the release binary")
    parser.add_argument("--json", type=Path, help="write every sample here")
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
    args = parser.parse_args()
    args.scenarios = args.scenarios or SCENARIOS
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
