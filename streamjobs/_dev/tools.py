"""Kafka's own command line tools, run from the same jars as the local broker."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from .broker import _log_opts
from .jars import check_java, resolve_classpath

__all__ = ["TOOLS", "run_tool"]

# The script names of the Kafka distribution -> their main classes in Kafka 4.1.
TOOLS: dict[str, str] = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-storage": "kafka.tools.StorageTool",
}


def tool_command(name: str, args: Sequence[str]) -> list[str]:
    main_class = TOOLS[name.removesuffix(".sh")]
    return [check_java(), "-Xmx256m", *_log_opts("tools-log4j2.properties"),
            "-cp", resolve_classpath(), main_class, *args]


def run_tool(name: str, args: Sequence[str], *, timeout: float | None = None,
             capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tool_command(name, args), timeout=timeout, text=True,
                          capture_output=capture)
