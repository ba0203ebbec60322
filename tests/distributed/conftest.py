"""One Spark session for every Spark test: local[2], loopback only, UI off.

Without pyspark or Java the tests skip on a laptop but fail when CI=true.
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def spark():
    missing = []
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing.append("pyspark (pip install -e '.[spark]')")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        missing.append("Java 17")
    if missing:
        message = "Spark tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from recstack.distributed.spark import spark_session

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = spark_session("local[2]", app="recstack-tests",
                            conf={"spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
