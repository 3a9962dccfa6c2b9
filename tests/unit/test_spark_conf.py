"""The session factory's settings, checked without starting Spark."""

from __future__ import annotations

from sparktf.config import SparkConfig
from sparktf.spark import default_parallelism, spark_conf


def test_embedded_default_sizes_shuffle_to_cores() -> None:
    conf = spark_conf(SparkConfig(master="local[3]"))
    assert conf["spark.master"] == "local[3]"
    assert conf["spark.sql.shuffle.partitions"] == "6"
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert conf["spark.executorEnv.TF_USE_LEGACY_KERAS"] == "1"
    assert conf["spark.ui.enabled"] == "true"


def test_testing_turns_ui_off_and_pins_loopback() -> None:
    conf = spark_conf(SparkConfig(master="local[2]"), testing=True)
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.driver.host"] == "127.0.0.1"


def test_user_conf_wins_and_any_master_is_passed_through() -> None:
    conf = spark_conf(
        SparkConfig(master="spark://10.0.0.1:7077", shuffle_partitions=64, conf={"spark.ui.enabled": "false"})
    )
    assert conf["spark.master"] == "spark://10.0.0.1:7077"
    assert conf["spark.sql.shuffle.partitions"] == "64"
    assert conf["spark.ui.enabled"] == "false"


def test_default_parallelism() -> None:
    assert default_parallelism("local[4]") == 4
    assert default_parallelism("local") == 1
    assert default_parallelism("local[*]") >= 1


def test_a_local_master_keeps_the_driver_on_loopback() -> None:
    for master in ("local", "local[2]", "local[*]"):
        conf = spark_conf(SparkConfig(master=master))
        assert conf["spark.driver.host"] == "127.0.0.1" and conf["spark.driver.bindAddress"] == "127.0.0.1"
    cluster = spark_conf(SparkConfig(master="spark://10.0.0.1:7077"))
    assert "spark.driver.host" not in cluster and "spark.driver.bindAddress" not in cluster
    own = spark_conf(SparkConfig(master="local[2]", conf={"spark.driver.bindAddress": "10.0.0.3"}))
    assert own["spark.driver.bindAddress"] == "10.0.0.3"  # the user's setting wins


def test_the_ui_of_a_local_master_listens_on_loopback() -> None:
    from sparktf.spark import jvm_env

    # Spark's UI listens on $SPARK_LOCAL_IP, or on every interface without it.
    assert jvm_env(SparkConfig(master="local[2]"), {}) == {"SPARK_LOCAL_IP": "127.0.0.1"}
    assert jvm_env(SparkConfig(master="local[2]"), {"SPARK_LOCAL_IP": "10.0.0.4"}) == {}
    assert jvm_env(SparkConfig(master="local", conf={"spark.driver.bindAddress": "10.0.0.3"}), {}) == {
        "SPARK_LOCAL_IP": "10.0.0.3"
    }
    assert jvm_env(SparkConfig(master="spark://10.0.0.1:7077"), {}) == {}
