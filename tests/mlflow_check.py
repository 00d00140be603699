#!/usr/bin/env python3
"""Checks what a sprig command logs to MLflow, with MLflow itself.

Starts `mlflow server` (sqlite backend, proxied artifacts) on a free port, runs COMMAND with
`--tracking-uri http://127.0.0.1:PORT` appended (and SPRIG_MLFLOW_URI, SPRIG_MLFLOW_LOCAL_STORE,
SPRIG_MLFLOW_EXPERIMENT in its environment), then reads both stores with MlflowClient:

  server:  the experiment exists; exactly one parent run; every other run is nested under a run
           of the experiment and the parent has at least --min-children children; every run is
           FINISHED and has params or metrics; metric histories match each run's latest values
           and some metric has at least --min-steps steps; the parent's artifacts are there
           (--expect-artifact, and the file named by the command's last stdout line when that
           is a file), with the same bytes as in the local store.
  local:   the local store (a file:// MLflow store) has the same runs under the same ids with
           the same params, tags, metric histories, statuses and artifact listings.

The server is killed at the end, also on failure or interruption. In COMMAND, {local_store}
and {tmp} are replaced by the local store directory and this run's temporary directory.

usage: mlflow_check.py --experiment NAME [--local-store DIR] [--expect-artifact PATH]...
                       [--min-children N] [--min-steps N] [--keep] -- COMMAND...
"""
import argparse
import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # The server goes when this script goes, even on SIGKILL (e.g. a CTest timeout).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    def __init__(self, tmp):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(tmp, "server.log")
        self.log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
               "--artifacts-destination", os.path.join(tmp, "server-artifacts")]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer /health in {timeout} s:\n"
                           + self.log_tail())

    def log_tail(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-30:])

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()


def all_artifacts(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out += all_artifacts(client, run_id, f.path)
        else:
            out.append(f.path)
    return sorted(out)


def same_value(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                      and math.isnan(b))


def history(client, run):
    return {k: sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(
        run.info.run_id, k)) for k in run.data.metrics}


def check_server(client, name, args, last_line, local_exp_dir):
    exp = client.get_experiment_by_name(name)
    if not check(exp is not None, f"server: no experiment named {name!r}"):
        return None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    ids = {r.info.run_id for r in runs}
    roots = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    check(len(roots) == 1, f"server: {len(roots)} runs without mlflow.parentRunId, expected 1")
    if not roots:
        return None
    parent = roots[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    check(len(children) >= args.min_children,
          f"server: {len(children)} child runs of the parent, expected >= {args.min_children}")
    most_steps = 0
    for r in runs:
        rid, rname = r.info.run_id, r.info.run_name
        where = f"server: run {rname} ({rid})"
        p = r.data.tags.get("mlflow.parentRunId")
        check(p is None or p in ids, f"{where}: parent {p} is not a run of the experiment")
        check(r.info.status == "FINISHED", f"{where}: status {r.info.status}, not FINISHED")
        check(r.info.end_time is not None, f"{where}: no end_time")
        check(r.data.params or r.data.metrics, f"{where}: no params and no metrics")
        for key, hist in history(client, r).items():
            if not check(hist, f"{where}: metric {key} has an empty history"):
                continue
            latest = max(hist)[2]
            check(same_value(latest, r.data.metrics[key]),
                  f"{where}: metric {key}: latest {latest} != {r.data.metrics[key]}")
            most_steps = max(most_steps, len({s for s, _, _ in hist}))
    check(parent.data.params, f"server: the parent run {parent.info.run_id} has no params")
    check(most_steps >= args.min_steps,
          f"server: no metric has {args.min_steps} steps or more (most: {most_steps})")

    arts = all_artifacts(client, parent.info.run_id)
    check(arts, f"server: the parent run {parent.info.run_id} has no artifacts")
    expected = list(args.expect_artifact)
    if last_line and os.path.isfile(last_line):
        expected.append(os.path.basename(last_line))
    for e in expected:
        check(any(a == e or a.endswith("/" + e) for a in arts),
              f"server: artifact {e} missing from the parent's artifacts {arts}")
    # The uploaded bytes are the local store's bytes.
    for a in arts:
        if local_exp_dir is None:
            break
        local = os.path.join(local_exp_dir, parent.info.run_id, "artifacts", a)
        if check(os.path.isfile(local), f"artifact {a} is on the server, not in the local store"):
            got = client.download_artifacts(parent.info.run_id, a, tempfile.mkdtemp())
            with open(got, "rb") as f1, open(local, "rb") as f2:
                check(f1.read() == f2.read(), f"artifact {a}: server and local bytes differ")
    return parent, runs


def check_local(local_client, name, server_runs, server_client):
    """Returns the local experiment's id."""
    exp = local_client.get_experiment_by_name(name)
    if not check(exp is not None, f"local store: no experiment named {name!r}"):
        return None
    runs = {r.info.run_id: r for r in local_client.search_runs([exp.experiment_id],
                                                               max_results=1000)}
    check(set(runs) == {r.info.run_id for r in server_runs},
          f"local store: run ids {sorted(runs)} differ from the server's "
          f"{sorted(r.info.run_id for r in server_runs)}")
    for s in server_runs:
        rid = s.info.run_id
        if rid not in runs:
            continue
        loc = runs[rid]
        where = f"local store: run {s.info.run_name} ({rid})"
        check(loc.info.run_name == s.info.run_name, f"{where}: name {loc.info.run_name}")
        check(loc.info.status == "FINISHED", f"{where}: status {loc.info.status}")
        check(loc.data.params == s.data.params,
              f"{where}: params {loc.data.params} != server {s.data.params}")
        for k, v in s.data.tags.items():
            check(loc.data.tags.get(k) == v, f"{where}: tag {k} = {loc.data.tags.get(k)!r}, "
                  f"server {v!r}")
        hl, hs = history(local_client, loc), history(server_client, s)
        check(set(hl) == set(hs), f"{where}: metric keys {sorted(hl)} != server {sorted(hs)}")
        for k in set(hl) & set(hs):
            same = len(hl[k]) == len(hs[k]) and all(
                a[0] == b[0] and a[1] == b[1] and same_value(a[2], b[2])
                for a, b in zip(hl[k], hs[k]))
            check(same, f"{where}: metric {k} history {hl[k]} != server {hs[k]}")
        check(all_artifacts(local_client, rid) == all_artifacts(server_client, rid),
              f"{where}: artifacts {all_artifacts(local_client, rid)} != server "
              f"{all_artifacts(server_client, rid)}")
    return exp.experiment_id


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", required=True, help="experiment name the command logs to")
    ap.add_argument("--local-store", help="the command's local store (default: {tmp}/mlruns)")
    ap.add_argument("--expect-artifact", action="append", default=[],
                    help="a file the parent run must have among its artifacts")
    ap.add_argument("--min-children", type=int, default=1)
    ap.add_argument("--min-steps", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1200, help="seconds for the command")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no command given after --")

    if importlib.util.find_spec("mlflow") is None:
        print(f"mlflow_check: FAIL: mlflow is not installed for {sys.executable} "
              "(bash scripts/setup.sh --test installs it)", file=sys.stderr)
        return 1
    # A SIGTERM (CTest's timeout, Ctrl-C's cousin) still runs the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The server is local: keep any http_proxy of the environment out of the way.
    for v in ("no_proxy", "NO_PROXY"):
        os.environ[v] = ",".join(filter(None, [os.environ.get(v), "127.0.0.1,localhost"]))
    tmp = tempfile.mkdtemp(prefix="sprig_mlflow_check_")
    local_store = os.path.abspath(args.local_store or os.path.join(tmp, "mlruns"))
    cmd = [c.replace("{local_store}", local_store).replace("{tmp}", tmp) for c in cmd]
    server = None
    ok = False
    try:
        server = Server(tmp)
        t0 = time.time()
        server.wait_ready(180)
        print(f"mlflow_check: mlflow server at {server.uri} ready in {time.time() - t0:.1f} s")
        env = dict(os.environ, SPRIG_MLFLOW_URI=server.uri, SPRIG_MLFLOW_LOCAL_STORE=local_store,
                   SPRIG_MLFLOW_EXPERIMENT=args.experiment)
        full = cmd + ["--tracking-uri", server.uri]
        print("mlflow_check: running", " ".join(full), flush=True)
        t0 = time.time()
        p = subprocess.run(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=args.timeout)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        print(f"mlflow_check: the command exited with {p.returncode} after "
              f"{time.time() - t0:.1f} s")
        check(p.returncode == 0, f"the command exited with {p.returncode}")
        check("warning: MLflow server" not in p.stderr,
              "the command warned that the MLflow server failed")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        last_line = lines[-1].strip() if lines else ""

        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 reads file stores on request
        from mlflow.tracking import MlflowClient

        server_client = MlflowClient(tracking_uri=server.uri)
        local_client = MlflowClient(tracking_uri="file://" + local_store)
        exp = server_client.get_experiment_by_name(args.experiment)
        runs = server_client.search_runs([exp.experiment_id], max_results=1000) if exp else []
        local_id = check_local(local_client, args.experiment, runs, server_client)
        local_exp_dir = os.path.join(local_store, local_id) if local_id else None
        result = check_server(server_client, args.experiment, args, last_line, local_exp_dir)
        if result and not problems:
            parent, runs = result
            print(f"mlflow_check: OK: experiment {args.experiment!r}: parent run "
                  f"{parent.info.run_id} with {len(runs) - 1} nested runs, "
                  f"artifacts {all_artifacts(server_client, parent.info.run_id)}; the local "
                  f"store {local_store} holds the same runs")
            ok = True
    except Exception as e:  # report, then clean up
        problems.append(f"{type(e).__name__}: {e}")
        if server is not None and server.proc.poll() is not None:
            problems.append("server log:\n" + server.log_tail())
    finally:
        if server is not None:
            server.stop()
        if ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        for p in problems:
            print("mlflow_check: FAIL:", p, file=sys.stderr)
        print(f"mlflow_check: files kept in {tmp}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
