"""Load test of ``glamor-fast serve`` on loopback: batching on against batching off.

    python -m bench.serve [--clients 16] [--seconds 20] [--rounds 2] [--threads 1] [--max-batch 16]
                          [--max-wait-ms 5] [--modes boxes detect] [--memory-requests 10000]
                          [--single-client] [--json PATH]

An untrained GLAMOR-Net checkpoint with the default model settings (speed does not depend on
the weights) is served by ``python -m glamor_fast serve`` in a fresh process (OMP/MKL threads =
--threads), once with ``--max-batch 1`` (off) and once with ``--max-batch N`` (on), alternating
off/on/off/on for --rounds rounds, so that both see the same background load. N client threads
(stdlib http.client, one keep-alive connection each) post matplotlib's grace_hopper.jpg (512x600
JPEG, one face) for --seconds after --warmup seconds (2) of the same load:

- ``boxes``: with ``?boxes=[[165,130,365,330]]`` (the caller's own detector): decode + model;
- ``detect``: no boxes, the server runs its Haar detector.

Reported per run: requests/s, p50 and p99 latency, errors (any non-200 or failed connection),
the server's stage shares (``GET /v1/stats``: read, decode, detect, waiting for the model; the
model thread's own time and the mean faces per forward pass), and its resident memory (VmRSS).
``--single-client``: the same with one client (latency of batching on vs off). ``--memory-requests``:
one server with batching on answers that many requests (boxes mode) and its RSS is sampled;
growth is measured from the end of a warm-up of 10% of them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .machine import machine_info
from .video import make_checkpoint

ROOT = Path(__file__).resolve().parent.parent
GRACE_BOX = "[[165,130,365,330]]"


def grace_jpeg() -> bytes:
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


def multipart(data: bytes, fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body with ``file`` (the image) and text ``fields``; (body, content type)."""
    b = "bench-boundary-7d1"
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    head = f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="g.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    return b"".join(parts) + head.encode() + data + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


class Server:
    """``glamor-fast serve`` (or, with ``stack="litserve"``, ``bench.serve_litserve``) in a subprocess on
    127.0.0.1 (free port); ``stop()`` sends SIGTERM."""

    def __init__(self, ckpt: Path, threads: int, max_batch: int, max_wait_ms: float, detect_workers: int,
                 model_workers: int, stack: str = "fastapi"):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.stack = stack
        if stack == "litserve":
            self._start_litserve(ckpt, threads, max_batch, max_wait_ms, env)
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glamor_fast", "serve", str(ckpt), "--port", "0", "--threads", str(threads),
             "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--detect-workers", str(detect_workers),
             "--model-workers", str(model_workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise SystemExit(f"bench.serve: the server did not start: {line}{self.proc.communicate()[1]}")
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def _start_litserve(self, ckpt, threads, max_batch, max_wait_ms, env) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.serve_litserve", str(ckpt), str(self.port),
                                      str(max_batch), str(max_wait_ms), str(threads)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"bench.serve: LitServe did not start: {self.proc.stderr.read()}")
            time.sleep(0.2)
        raise SystemExit("bench.serve: LitServe did not start within 120 s")

    def process_ids(self) -> list[int]:
        """The server's process and its children (LitServe's workers)."""
        pids = [self.proc.pid]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    pids += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return pids

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server's processes have used so far."""
        total = 0
        for pid in self.process_ids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def get(self, path: str) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(120)


def load(port: int, path: str, body: bytes, clients: int, seconds: float = None, requests: int = None,
         on_progress=None, content_type: str = "image/jpeg") -> dict:
    """``clients`` threads posting ``body`` to ``path`` for ``seconds`` or until ``requests`` in all."""
    latencies, errors, lock = [], [], threading.Lock()
    stop_at = None if seconds is None else time.perf_counter() + seconds
    budget = [requests]

    def take() -> bool:
        with lock:
            if budget[0] is None:
                return time.perf_counter() < stop_at
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while take():
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                reply = conn.getresponse()
                reply.read()
                ok = reply.status == 200
            except (OSError, http.client.HTTPException) as exc:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                reply = exc
            dt = time.perf_counter() - t0
            with lock:
                (latencies if ok else errors).append(dt if ok else str(getattr(reply, "status", reply)))
                if on_progress is not None:
                    on_progress(len(latencies) + len(errors))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3) if lat else (lambda p: float("nan"))
    return {"requests": len(lat), "errors": len(errors), "error_examples": errors[:3], "seconds": wall,
            "rps": len(lat) / wall, "p50_ms": q(0.50), "p99_ms": q(0.99)}


def one_run(ckpt, args, mode: str, max_batch: int, clients: int, stack: str = "fastapi") -> dict:
    server = Server(ckpt, args.threads, max_batch, args.max_wait_ms, args.detect_workers, args.model_workers, stack)
    try:
        path = "/v1/predict" + (f"?boxes={GRACE_BOX}" if mode == "boxes" else "")
        body, ctype = grace_jpeg(), "image/jpeg"
        if args.form or stack == "litserve":
            body, ctype = multipart(body, {"boxes": GRACE_BOX} if stack == "litserve" else {})
            path = "/predict" if stack == "litserve" else path
        kw = dict(content_type=ctype)
        load(server.port, path, body, clients, seconds=args.warmup, **kw)  # warm-up: allocator, caches, threads
        empty = {"stages_s": {s: 0.0 for s in ("read", "decode", "detect", "prepare", "model_wait", "encode")},
                 "model": {"model_s": 0.0, "batches": 0, "faces": 0}}
        stats = (lambda: empty) if stack == "litserve" else (lambda: server.get("/v1/stats"))
        before, cpu0 = stats(), server.cpu_s()
        result = load(server.port, path, body, clients, seconds=args.seconds, **kw)
        after, cpu1 = stats(), server.cpu_s()
        stages = {k: after["stages_s"][k] - before["stages_s"][k] for k in after["stages_s"]}
        model_s = after["model"]["model_s"] - before["model"]["model_s"]
        batches = after["model"]["batches"] - before["model"]["batches"]
        faces = after["model"]["faces"] - before["model"]["faces"]
        n = max(result["requests"], 1)
        result.update(stack=stack, mode=mode, batching="off" if max_batch == 1 else "on", clients=clients,
                      rss_mib=round(server.rss_mib(), 1), cpu_ms_per_request=round((cpu1 - cpu0) / n * 1e3, 2),
                      stage_ms_per_request={k: round(v / n * 1e3, 2) for k, v in stages.items()},
                      model_ms_per_request=round(model_s / n * 1e3, 2),
                      mean_faces_per_pass=round(faces / batches, 2) if batches else 0.0)
    finally:
        code = server.stop()
    result["exit_status"] = code
    return result


def memory_run(ckpt, args) -> dict:
    server = Server(ckpt, args.threads, args.max_batch, args.max_wait_ms, args.detect_workers, args.model_workers)
    samples = []
    warm = args.memory_requests // 10

    def progress(done):
        if done % 250 == 0:
            samples.append((done, server.rss_mib()))

    try:
        result = load(server.port, f"/v1/predict?boxes={GRACE_BOX}", grace_jpeg(), args.clients,
                      requests=args.memory_requests, on_progress=progress)
        samples.append((args.memory_requests, server.rss_mib()))
    finally:
        code = server.stop()
    at_warm = next(rss for done, rss in samples if done >= warm)
    peak_after = max(rss for done, rss in samples if done >= warm)
    return {"requests": result["requests"], "errors": result["errors"], "rps": result["rps"],
            "rss_first_mib": samples[0][1], "rss_after_warmup_mib": at_warm, "rss_end_mib": samples[-1][1],
            "rss_max_after_warmup_mib": peak_after,
            "growth_after_warmup_pct": round(100 * (peak_after - at_warm) / at_warm, 2),
            "samples": samples, "exit_status": code}


def summarise(runs: list) -> list[str]:
    lines = ["| mode | clients | batching | requests/s (runs) | p50 ms | p99 ms | errors | faces/pass | "
             "stage ms/request (read, decode, detect, prepare, wait for model) | model ms/request | RSS MiB |",
             "|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|"]
    keys = sorted({(r["stack"], r["mode"], r["clients"], r["batching"]) for r in runs},
                  key=lambda k: (k[0], k[1], k[2], k[3] != "off"))
    for stack, mode, clients, batching in keys:
        rs = [r for r in runs if (r["stack"], r["mode"], r["clients"], r["batching"]) == (stack, mode, clients, batching)]
        mode_label = mode if stack == "fastapi" else f"{mode} ({stack})"
        st = rs[-1]["stage_ms_per_request"]
        lines.append(
            f"| {mode_label} | {clients} | {batching} | {statistics.median(r['rps'] for r in rs):.1f} "
            f"({', '.join(format(r['rps'], '.1f') for r in rs)}) | {statistics.median(r['p50_ms'] for r in rs):.1f} | "
            f"{statistics.median(r['p99_ms'] for r in rs):.1f} | {sum(r['errors'] for r in rs)} | "
            f"{rs[-1]['mean_faces_per_pass']} | {st['read']}, {st['decode']}, {st['detect']}, {st['prepare']}, {st['model_wait']} | "
            f"{rs[-1]['model_ms_per_request']} | {rs[-1]['rss_mib']} |")
    for stack, mode, clients in sorted({k[:3] for k in keys}):
        same = [r for r in runs if (r["stack"], r["mode"], r["clients"]) == (stack, mode, clients)]
        on = [r["rps"] for r in same if r["batching"] == "on"]
        off = [r["rps"] for r in same if r["batching"] == "off"]
        if on and off:
            ratios = [a / b for a, b in zip(on, off)]
            ratio = statistics.median(on) / statistics.median(off)
            lines.append(f"- {stack}, {mode}, {clients} client(s): batching on / off = {ratio:.2f}x "
                         f"(per interleaved pair: {', '.join(format(x, '.2f') for x in ratios)}); server CPU ms/request "
                         f"off {statistics.median(r['cpu_ms_per_request'] for r in same if r['batching'] == 'off'):.2f}, "
                         f"on {statistics.median(r['cpu_ms_per_request'] for r in same if r['batching'] == 'on'):.2f}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measured run")
    p.add_argument("--rounds", type=int, default=2, help="off/on pairs per mode, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch threads per model worker (the server's default)")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--detect-workers", type=int, default=2)
    p.add_argument("--model-workers", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["boxes", "detect"], choices=["boxes", "detect"])
    p.add_argument("--single-client", action="store_true", help="also run every mode with one client")
    p.add_argument("--memory-requests", type=int, default=0, help="requests of the memory run (0: none)")
    p.add_argument("--form", action="store_true", help="post multipart forms instead of raw bodies")
    p.add_argument("--stacks", nargs="+", default=["fastapi"], choices=["fastapi", "litserve"],
                   help="servers to compare (litserve: bench.serve_litserve, boxes mode only), interleaved")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    info = machine_info(args.threads)
    print(f"bench.serve on {info['cpu_model']}; {args.threads} threads; load average {info['load_average']}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(Path(tmp) / "ckpt.pt")
        for mode in args.modes:
            for clients in ([args.clients, 1] if args.single_client else [args.clients]):
                for _ in range(args.rounds):
                    for max_batch, stack in [(b, st) for st in args.stacks for b in (1, args.max_batch)]:
                        r = one_run(ckpt, args, mode, max_batch, clients, stack)
                        runs.append(r)
                        print(json.dumps({k: v for k, v in r.items() if k != "error_examples"}), flush=True)
        memory = memory_run(ckpt, args) if args.memory_requests else None
    print("\n".join(summarise(runs)))
    if memory is not None:
        print(f"- memory over {memory['requests']} requests (boxes, batching on, {args.clients} clients): "
              f"{memory['rss_after_warmup_mib']:.0f} MiB after warm-up ({args.memory_requests // 10} requests), "
              f"max after it {memory['rss_max_after_warmup_mib']:.0f} MiB, end {memory['rss_end_mib']:.0f} MiB "
              f"(+{memory['growth_after_warmup_pct']}%); errors {memory['errors']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": vars(args) | {"json": str(args.json)},
                                         "runs": runs, "memory": memory}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
