#!/usr/bin/env python3
"""Issue 12 acceptance 1-3 against a real `lepton serve` on 127.0.0.1 (run by
scripts/adversarial-serve.sh, which builds the binary, trains a small photon and raises `ulimit -n`).

Standard library only. Every loop is bounded in count and time; everything is loopback.

  python3 bench/serve/adversarial.py LEPTON PHOTON GGUF WORKDIR

Prints one line per measurement and a final PASS/FAIL summary (exit code 1 on any FAIL).
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

LEPTON, PHOTON, GGUF, WORK = sys.argv[1:5]
PORT = int(os.environ.get("PORT", "18490"))
TOKEN = "adversarial-token-0123456789"
IDLE_MS, HEADER_MS, DRAIN_MS = 5000, 5000, 3000
results = []


def check(name, ok, detail):
    results.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssPeak(threading.Thread):
    """Samples a process's RSS every 20 ms until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, rss_mb(pid), threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.02)


def start_server(models, name, open_files=None):
    cfg = os.path.join(WORK, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(
            f'listen = "127.0.0.1:{PORT}"\n'
            "[connections]\n"
            f"idle-timeout-ms = {IDLE_MS}\nheader-read-timeout-ms = {HEADER_MS}\n"
            f"drain-timeout-ms = {DRAIN_MS}\nmax-connections = 4096\n"
        )
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    env = dict(os.environ, LEPTON_TOKENS=f"{TOKEN}:predict,admin")
    limit = None
    if open_files:
        import resource

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    p = subprocess.Popen([LEPTON, "serve", *models, "--config", cfg], stdout=log, stderr=log, env=env,
                         preexec_fn=limit)
    deadline = time.time() + 120
    while time.time() < deadline:
        if p.poll() is not None:
            sys.exit(f"server exited: see {log.name}")
        if http_status("GET", "/readyz") == 200:
            return p
        time.sleep(0.2)
    p.kill()
    sys.exit("server did not become ready in 120 s")


def read_status(s, timeout=5.0):
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return 0
            buf += chunk
    except (socket.timeout, OSError):
        return -1
    return int(buf[9:12])


def http_status(method, path, headers="", body=b""):
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    except OSError:
        return 0
    with s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return read_status(s)


class HealthProbe(threading.Thread):
    """GET /healthz on a new connection every 10 ms; keeps each latency (ms) and failures."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lat, self.failures, self.stop = [], 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.perf_counter()
            code = http_status("GET", "/healthz")
            self.lat.append((time.perf_counter() - t) * 1e3)
            self.failures += code != 200
            time.sleep(0.01)

    def finish(self):
        self.stop.set()
        self.join()
        lat = sorted(self.lat) or [float("inf")]
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))], lat[-1], len(lat), self.failures


def png(width, height, bit_depth, color_type):
    """A valid, highly compressible (all-zero) PNG of the given header."""
    channels = {0: 1, 2: 3}[color_type]
    row = b"\x00" + bytes(width * channels * bit_depth // 8)
    raw = zlib.compress(row * height, 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def acceptance_1(server):
    print("== acceptance 1: bodies before auth", flush=True)
    routes = ["/v2/models/mnist/infer", "/v1/admin/models", "/v1/embeddings",
              "/v1/completions", "/v1/chat/completions", "/v1/models/mnist/predict"]
    base = rss_mb(server.pid)
    peak = RssPeak(server.pid)
    peak.start()
    socks, codes, firsts = [], [], []
    for i in range(150):
        s = socket.create_connection(("127.0.0.1", PORT))
        head = (f"POST {routes[i % len(routes)]} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {8 << 20}\r\n\r\n")
        t = time.perf_counter()
        s.sendall(head.encode() + b" " * 65536)
        codes.append(read_status(s))
        firsts.append((time.perf_counter() - t) * 1e3)
        socks.append(s)
    # Keep pushing body bytes (up to 8 MiB - 1 KiB each, 2 s in all): the server must not take them.
    pushed = 0
    deadline = time.time() + 2
    for s in socks:
        s.setblocking(False)
    chunk = b" " * 65536
    while time.time() < deadline:
        progress = False
        for s in socks:
            try:
                pushed += s.send(chunk)
                progress = True
            except (BlockingIOError, OSError):
                pass
        if not progress:
            time.sleep(0.05)
    time.sleep(0.5)
    peak.stop.set()
    peak.join()
    for s in socks:
        s.close()
    n401 = sum(c == 401 for c in codes)
    check("150 token-less 8 MiB uploads get 401 before their body", n401 == 150,
          f"{n401}/150 got 401, slowest {max(firsts):.1f} ms after the head; the clients could push "
          f"{pushed / 2**20:.1f} MiB in all (socket buffers) against the 1200 MiB declared")
    check("server RSS stays < 200 MB", peak.peak < 200,
          f"RSS {base:.0f} MB before, peak {peak.peak:.0f} MB")
    times = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", PORT))
        t = time.perf_counter()
        s.sendall((f"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n{}").encode())
        code = read_status(s)
        times.append(((time.perf_counter() - t) * 1e3, code))
        s.close()
    worst = max(t for t, _ in times)
    check("2e9 Content-Length -> 413 in < 100 ms", all(c == 413 for _, c in times) and worst < 100,
          f"20 tries, codes {sorted(set(c for _, c in times))}, slowest {worst:.1f} ms")


def acceptance_2(server):
    print(f"== acceptance 2: 2000 idle + 500 slowloris (idle/header timeout {IDLE_MS} ms, drain {DRAIN_MS} ms)",
          flush=True)

    def open_all():
        idle = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(2000)]
        slow = []
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(s)
        return idle, slow

    def trickle(slow, stop):
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"a")
                except OSError:
                    pass
            stop.wait(1.0)

    def closed(s):
        s.setblocking(False)
        try:
            return s.recv(1) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    probe = HealthProbe()
    probe.start()
    t0 = time.time()
    idle, slow = open_all()
    opened = time.time() - t0
    stop = threading.Event()
    threading.Thread(target=trickle, args=(slow, stop), daemon=True).start()
    time.sleep(max(IDLE_MS, HEADER_MS) / 1e3 + 2)
    stop.set()
    p99, worst, n, failures = probe.finish()
    idle_closed = sum(closed(s) for s in idle)
    slow_closed = sum(closed(s) for s in slow)
    for s in idle + slow:
        s.close()
    check("/healthz p99 < 50 ms under 2000 idle + 500 slowloris", p99 < 50 and failures == 0,
          f"{n} probes over {opened + max(IDLE_MS, HEADER_MS) / 1e3 + 2:.1f} s, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms, {failures} failures (opening the 2500 took {opened:.1f} s)")
    check("idle connections closed by the idle timeout", idle_closed == 2000,
          f"{idle_closed}/2000 idle closed, {slow_closed}/500 slowloris closed (header timeout) after "
          f"{max(IDLE_MS, HEADER_MS) + 2000} ms")
    # SIGTERM with the same load open, plus requests half-sent.
    idle, slow = open_all()
    for s in slow[:20]:
        s.sendall(b"\r\nContent-Length: 100\r\n")
    time.sleep(0.5)
    t = time.perf_counter()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=DRAIN_MS / 1e3 + 10)
    except subprocess.TimeoutExpired:
        server.kill()
    took = time.perf_counter() - t
    for s in idle + slow:
        s.close()
    check("SIGTERM exits within the drain deadline + 1 s", took < DRAIN_MS / 1e3 + 1,
          f"exit after {took:.2f} s with 2000 idle + 500 slowloris (20 half-sent bodies) open; "
          f"drain deadline {DRAIN_MS / 1e3:.0f} s, exit code {server.returncode}")


def llm_name():
    """The served language model's name (the GGUF file's stem), from GET /v1/models."""
    import json
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
              "Connection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    models = json.loads(data.split(b"\r\n\r\n", 1)[1])["data"]
    return next(m["id"] for m in models if m.get("context_length"))


def burst(requests, probe_s=0.3):
    """Send `requests` (kind, path, ctype, body) at once while probing /healthz; returns
    (results [(kind, code, ms)], probe summary)."""
    probe = HealthProbe()
    probe.start()
    time.sleep(probe_s)
    out = []
    lock = threading.Lock()

    def req(kind, path, ctype, body):
        t = time.perf_counter()
        code = http_status("POST", path, f"Authorization: Bearer {TOKEN}\r\nContent-Type: {ctype}\r\n", body)
        with lock:
            out.append((kind, code, (time.perf_counter() - t) * 1e3))

    threads = [threading.Thread(target=req, args=r) for r in requests]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    time.sleep(probe_s)
    return out, probe.finish()


def acceptance_3(server):
    print("== acceptance 3: two 8 MiB prompts and 32 large PNGs at once", flush=True)
    big = png(4096, 4096, 16, 2)  # 16-bit RGB: 96 MiB decoded, over limits.max-image-bytes
    prompt = "a" * ((8 << 20) - 200)
    model = llm_name()
    base = rss_mb(server.pid)
    peak = RssPeak(server.pid)
    peak.start()
    requests = [("prompt", "/v1/completions", "application/json",
                 ('{"model": "' + model + '", "max_tokens": 4, "prompt": "' + prompt + '"}').encode())] * 2
    requests += [("png", "/v1/models/mnist/predict", "image/png", big)] * 32
    out, (p99, worst, n, failures) = burst(requests)
    peak.stop.set()
    peak.join()
    check("/healthz p99 < 100 ms during the bad requests", p99 < 100 and failures == 0,
          f"{n} probes, p99 {p99:.1f} ms, max {worst:.1f} ms, {failures} failures")
    check("RSS growth < 150 MB", peak.peak - base < 150,
          f"RSS {base:.0f} MB before, peak {peak.peak:.0f} MB (+{peak.peak - base:.0f} MB)")
    for kind in ("prompt", "png"):
        rows = [r for r in out if r[0] == kind]
        codes = sorted(set(c for _, c, _ in rows))
        slowest = max(t for _, _, t in rows)
        check(f"each bad {kind} request 4xx within 1 s",
              len(rows) == (2 if kind == "prompt" else 32) and all(400 <= c < 500 for _, c, _ in rows)
              and slowest < 1000,
              f"{len(rows)} requests ({len(big) if kind == 'png' else len(prompt) + 60} bytes each), "
              f"codes {codes}, slowest {slowest:.0f} ms")
    # Not an acceptance point: the same burst with valid images (2048x2048 16-bit gray, 8 MiB
    # decoded each, inside the limits), which are decoded: on blocking threads, 2 at a time.
    ok_png = png(2048, 2048, 16, 0)
    base = rss_mb(server.pid)
    peak = RssPeak(server.pid)
    peak.start()
    out, (p99, worst, n, failures) = burst([("png", "/v1/models/mnist/predict", "image/png", ok_png)] * 32)
    peak.stop.set()
    peak.join()
    codes = sorted(set(c for _, c, _ in out))
    check("32 valid 2048x2048 16-bit PNGs decoded at once: /healthz p99 < 100 ms", p99 < 100 and codes == [200],
          f"codes {codes}, slowest request {max(t for _, _, t in out):.0f} ms; /healthz {n} probes, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms; RSS {base:.0f} -> peak {peak.peak:.0f} MB")


def emfile_case(server):
    print("== finding 2: 1,100 idle connections against a server with ulimit -n 1024", flush=True)
    probe = HealthProbe()
    probe.start()
    idle = []
    for _ in range(1100):
        try:
            idle.append(socket.create_connection(("127.0.0.1", PORT), timeout=5))
        except OSError:
            break
    time.sleep(2)
    p99, worst, n, failures = probe.finish()
    for s in idle:
        s.close()
    with open(os.path.join(WORK, "emfile.log")) as f:
        log = f.read()
    check("accept errors back off; /healthz keeps answering at the open-files limit",
          failures == 0 and p99 < 50 and server.poll() is None,
          f"{len(idle)} idle opened; /healthz {n} probes, p99 {p99:.1f} ms, max {worst:.1f} ms, "
          f"{failures} failures; server log: {log.count('accept failed')} back-off warnings, "
          f"{log.count('open-files limit')} start-up warning(s) about ulimit -n")


def main():
    server = start_server([PHOTON], "photon-only")
    try:
        acceptance_1(server)
        acceptance_2(server)  # ends with SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
    server = start_server([PHOTON], "emfile", open_files=1024)
    try:
        emfile_case(server)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    server = start_server([PHOTON, GGUF], "photon-and-llm")
    try:
        acceptance_3(server)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    failed = [n for n, ok in results if not ok]
    print(f"== {len(results) - len(failed)}/{len(results)} passed" + (f"; FAILED: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
