"""TF_CONFIG from gathered addresses: the pure rules, without Spark or TensorFlow."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparktf.distributed.tf_config import (
    build_tf_config,
    format_address,
    host_of,
    parse_address,
    parse_tf_config,
)
from sparktf.errors import LauncherError


def test_every_rank_gets_the_same_cluster_and_its_own_index() -> None:
    addresses = ["10.0.0.1:4001", "10.0.0.2:4002", "10.0.0.3:4003"]
    configs = [build_tf_config(addresses, rank) for rank in range(3)]
    assert all(c["cluster"] == {"worker": addresses} for c in configs)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    # What TensorFlow reads back from the environment variable.
    assert parse_tf_config(json.dumps(configs[2])).rank == 2


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=16, unique=True), st.data())
def test_round_trip_through_the_environment(ports: list[int], data: st.DataObject) -> None:
    addresses = [format_address("127.0.0.1", p) for p in ports]
    rank = data.draw(st.integers(0, len(addresses) - 1))
    cluster = parse_tf_config(json.dumps(build_tf_config(addresses, rank)))
    assert cluster.addresses == tuple(addresses)
    assert cluster.rank == rank
    assert cluster.num_workers == len(addresses)
    assert cluster.is_chief == (rank == 0)


def test_duplicate_addresses_are_refused_with_both_ranks_named() -> None:
    with pytest.raises(LauncherError, match=r"Workers 0 and 2 both reported the address '10.0.0.1:4000'"):
        build_tf_config(["10.0.0.1:4000", "10.0.0.2:4000", "10.0.0.1:4000"], 0)


@pytest.mark.parametrize("rank", [-1, 2])
def test_rank_outside_the_cluster_is_refused(rank: int) -> None:
    with pytest.raises(LauncherError, match=rf"Rank {rank} is outside the cluster of 2 workers"):
        build_tf_config(["a:1", "b:2"], rank)


def test_no_addresses_is_refused() -> None:
    with pytest.raises(LauncherError, match="No worker addresses"):
        build_tf_config([], 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host-1.example.com:2222", ("host-1.example.com", 2222)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("[::1]:4000", ("::1", 4000)),
        ("[fe80::1%eth0]:4000", ("fe80::1%eth0", 4000)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert parse_address(format_address(*expected)) == expected


@pytest.mark.parametrize("text", ["nohost", "host:", ":4000", "host:0", "host:70000", "a:b:c", "[::1]4000"])
def test_malformed_addresses_name_the_value(text: str) -> None:
    with pytest.raises(LauncherError, match=repr(text).replace("[", r"\[").replace("]", r"\]")):
        parse_address(text)


def test_host_of_an_executor_address() -> None:
    assert host_of("192.168.1.7:38211") == "192.168.1.7"
    assert host_of("[2001:db8::5]:38211") == "2001:db8::5"


def test_unset_tf_config_means_a_single_chief() -> None:
    for value in (None, "", "  "):
        cluster = parse_tf_config(value)
        assert (cluster.rank, cluster.num_workers, cluster.is_chief) == (0, 0, True)


def test_explicit_chief_layout_counts_the_chief_as_rank_zero() -> None:
    cfg = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}
    cluster = parse_tf_config(json.dumps(cfg))
    assert (cluster.rank, cluster.num_workers, cluster.is_chief) == (1, 3, False)
    cfg["task"] = {"type": "chief", "index": 0}
    assert parse_tf_config(json.dumps(cfg)).is_chief


def test_garbage_tf_config_says_what_it_expected() -> None:
    with pytest.raises(LauncherError, match=r"TF_CONFIG is not valid JSON.*got 'not json'"):
        parse_tf_config("not json")


@pytest.mark.parametrize("address", ["0.0.0.0:4000", "[::]:4000"])
def test_a_wildcard_executor_address_is_refused(address: str) -> None:
    with pytest.raises(LauncherError) as info:
        host_of(address)
    assert repr(address) in info.value.message and "wildcard" in info.value.message
    assert info.value.hint and "SPARK_LOCAL_IP" in info.value.hint
    assert host_of("127.0.0.1:4000") == "127.0.0.1" and host_of("[fe80::1]:4000") == "fe80::1"
