"""Wiring: build the pieces a process needs from :class:`~plyr_appview.config.Settings`."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from psycopg_pool import AsyncConnectionPool

from plyr_appview.config import Settings
from plyr_appview.log import Log
from plyr_appview.log.postgres import PostgresLog

__all__ = ["TOPICS", "configure_logging", "open_log"]

TOPICS = ("repo", "labels", "plays")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel("WARNING")
    logging.getLogger("uvicorn.access").setLevel("WARNING")


async def open_log(settings: Settings, pool: AsyncConnectionPool) -> Log:
    """The configured log backend, started, with the standard topics created."""
    topics = [settings.topic(t) for t in TOPICS]
    log: Log
    if settings.log_backend == "kafka":
        from plyr_appview.log.kafka import KafkaLog

        log = KafkaLog(settings.kafka_bootstrap, partitions=settings.partitions, topics=topics)
    else:
        log = PostgresLog(pool, partitions=settings.partitions, topics=topics)
    await log.start()
    return log
