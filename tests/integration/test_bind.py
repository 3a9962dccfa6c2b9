"""What listens where on a local master: the driver JVM (RPC, block manager, UI) and the log server, on loopback.

The test session's own SparkSession runs with ``testing=True``, which pins loopback
by itself, so the session as ``sparktf run`` makes it (UI on, no testing settings)
is started in a child process, whose sockets are read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparktf.distributed.tf_config import host_of

pytestmark = pytest.mark.spark

CHILD = r"""
import json, os, sys
from sparktf.config import SparkConfig
from sparktf.spark import get_spark
from sparktf.distributed.logs import LogServer, log_server_hosts
from sparktf.distributed.tf_config import host_of

spark = get_spark(SparkConfig(master="local[2]", ui=True, log_level="ERROR"))
sc = spark.sparkContext
conf = sc.getConf()

def task_hosts(_rows):
    from pyspark import BarrierTaskContext
    ctx = BarrierTaskContext.get()
    yield ctx.getTaskInfos()[ctx.partitionId()].address

addresses = sc.parallelize(range(2), 2).barrier().mapPartitions(task_hosts).collect()
advertise, bind = log_server_hosts(conf.get("spark.master"), conf.get("spark.driver.host"), conf.get("spark.driver.bindAddress"))
server = LogServer(advertise_host=advertise, bind_host=bind, sink=lambda line: None)
# As the launcher builds it today: spark.driver.bindAddress, or a wildcard when unset.
legacy = LogServer(advertise_host=conf.get("spark.driver.host"), bind_host="0.0.0.0", sink=lambda line: None)
print(json.dumps({
    "jvm": sc._gateway.proc.pid,
    "ui": sc.uiWebUrl,
    "executors": addresses,
    "log_servers": [server._sock.getsockname()[1], legacy._sock.getsockname()[1]],
    "spark_local_ip_after": os.environ.get("SPARK_LOCAL_IP"),
}), flush=True)
sys.stdin.read()  # hold everything open until the test has looked
"""


def _listening(pid: int) -> list[tuple[str, int]]:
    """``(address, port)`` of every TCP socket process ``pid`` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    out = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addr = socket.inet_ntop(family, raw).removeprefix("::ffff:")
            out.append((addr, int(hex_port, 16)))
    return out


@pytest.mark.slow
def test_a_local_master_listens_on_loopback_only(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME", "SPARKTF_TESTING")
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            child.kill()
            _out, err = child.communicate(timeout=60)
            pytest.fail(f"the child session did not start:\n{err[-4000:]}")
        seen: dict[str, Any] = json.loads(line)
        driver = _listening(child.pid)
        jvm = _listening(int(seen["jvm"]))
    finally:
        if child.poll() is None:
            child.communicate(input="", timeout=120)

    ui_port = int(seen["ui"].rsplit(":", 1)[1])
    assert seen["ui"].startswith("http://127.0.0.1:")
    assert ("127.0.0.1", ui_port) in jvm, jvm
    assert len(jvm) >= 3, jvm  # the UI, the driver's RPC and block manager, py4j's gateway
    assert {a for a, _ in jvm} == {"127.0.0.1"}, f"the driver JVM listens beyond loopback: {jvm}"

    assert sorted(p for _, p in driver if p in seen["log_servers"]) == sorted(seen["log_servers"])
    assert {a for a, p in driver if p in seen["log_servers"]} == {"127.0.0.1"}, driver

    # The TF workers' cluster addresses come from here: loopback, as the driver's.
    assert [host_of(a) for a in seen["executors"]] == ["127.0.0.1", "127.0.0.1"]
    assert seen["spark_local_ip_after"] is None  # set for the JVM's start only
