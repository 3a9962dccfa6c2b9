"""An online experiment end to end: the sequential model against the `popular` baseline.

The four commands a user types, in order, each shown before it runs:

1. ``sparktf run``: the pipeline (synthetic clickstream → features → TFRecords → training →
   registry with its validation gate → index → batch recommendations), as ``make run``;
2. ``sparktf live`` with an ``[experiment]``: the server splits shoppers between the arms by a
   sticky hash, logs every shown item as an impression, and the stream applies the events;
3. ``sparktf simulate``: shoppers from the generator's own world ask for recommendations,
   click with a position bias on what they truly want next, browse and buy, and post every
   event back; it prints each arm's true CTR;
4. ``sparktf experiment report``: per arm CTR with a 95% interval (users are the unit), the
   lift over ``popular``, the sample-ratio test, guardrails, a chart, the decision;
5. ``GET /v1/monitoring`` and ``sparktf monitor report``: the champion's traffic against the
   reference profile its training saved (drift, alerts), online quality per version and hour,
   and training/serving skew, as one HTML file (the report is left out of ``--smoke-test``).

Run: ``.venv/bin/python examples/online_experiment.py`` (about 20 minutes: the full
``make run``, then 3 minutes of traffic) or with ``--smoke-test`` (a tiny pipeline and 20 s
of traffic). Add ``--workdir DIR`` to keep everything (then ``sparktf experiment conclude``
in the same folder applies the decision).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, workdir

SPARKTF = str(Path(sys.executable).with_name("sparktf"))
EXPERIMENT = [
    "experiment.name=seq-vs-popular",
    'experiment.arms=[{name="popular", model="popular"}, {name="sequential", model="@champion"}]',
]
SMOKE = [
    "spark.master=local[2]",
    "generator.num_events=10000",
    "generator.num_users=400",
    "generator.num_items=150",
    "train.models=['sequential']",
    "train.epochs=1",
    "train.num_workers=1",
    "evaluation.baselines=['most_popular']",
    "index.kind=brute_force",
    "experiment.min_users_per_arm=20",
]


def sparktf(args: list[str], sets: list[str], **kwargs: object) -> list[str]:
    """The command as a user types it (printed), with its --set options."""
    cmd = [SPARKTF, *args, *[a for s in sets for a in ("--set", s)]]
    print("$ sparktf " + " ".join(shlex.quote(a) for a in cmd[1:]), flush=True)
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = parse_args(__doc__)
    base_sets = SMOKE if args.smoke_test else []
    with workdir(args.workdir, "experiment") as work:
        w = ["--workdir", str(work)]
        subprocess.run(sparktf(["run", *w], base_sets), check=True)

        port = free_port()
        sets = [*base_sets, *EXPERIMENT, f"serve.port={port}"]
        log = open(work / "live.out", "wb")
        live = subprocess.Popen(
            sparktf(["live", *w], sets), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            import httpx

            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if live.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("sparktf live did not become ready; see " + str(work / "live.out"))
                time.sleep(1)
            status = work / "state" / "stream.json"
            while not status.exists():  # the stream has started when its status file is there
                time.sleep(1)
            print(f"server ready on http://127.0.0.1:{port}/ (the page shows the experiment)", flush=True)

            duration = "12" if args.smoke_test else "180"
            subprocess.run(sparktf(["simulate", *w, "--duration", duration, "--rate", "20"], sets), check=True)

            # Wait until the stream has applied every event the server accepted. (Waiting for its
            # count to stop moving is not enough: on a busy machine the first micro-batch can take
            # longer than any fixed pause, and the report then finds no event table.)
            saved = sorted((work / "experiments" / "seq-vs-popular").glob("simulate-*.json"))[-1]
            accepted = int(json.loads(saved.read_text())["events_accepted"])
            deadline, n = time.monotonic() + 300, -1
            while n < accepted:
                st = json.loads(status.read_text())
                n = int(st.get("events", 0)) + int(st.get("quarantined", 0))
                if n >= accepted:
                    break
                if live.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"the stream applied {n} of the {accepted} accepted events; see {work / 'live.out'}"
                    )
                time.sleep(1)
            print(f"the stream has applied {n} events (the server accepted {accepted})", flush=True)
            subprocess.run(sparktf(["experiment", "report", *w], sets), check=True)
            monitoring = httpx.get(f"http://127.0.0.1:{port}/v1/monitoring", timeout=30).json()
            for v in monitoring["versions"]:
                profile = "a reference profile" if v["reference"] else "no reference profile"
                print(
                    f"monitoring: {v['model_name']} v{v['version']} ({profile}): {v['requests']} replies in the "
                    f"window, {v['status']}, {len(v['alerts'])} alert(s)",
                    flush=True,
                )
            # The smoke run checks the window only (tests/integration/test_monitor_report.py runs the CLI).
            if not args.smoke_test:
                subprocess.run(sparktf(["monitor", "report", *w], sets), check=True)
        finally:
            os.killpg(live.pid, signal.SIGTERM)
            live.wait(timeout=60)
            log.close()
        print(f"report: {work / 'experiments' / 'seq-vs-popular' / 'report.json'}", flush=True)
        if not args.smoke_test:
            print(f"monitor report: {work / 'monitoring' / 'report.html'}", flush=True)


if __name__ == "__main__":
    main()
