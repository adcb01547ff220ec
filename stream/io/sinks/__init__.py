"""Where the pipeline's outputs go: one base (:class:`~stream.io.sinks.base.OutputSink`), one file
per sink. A new sink subclasses the base (or implements :class:`~stream.io.sinks.base.Sink`)."""

from __future__ import annotations

from stream.config import Settings
from stream.io.sinks.base import OutputSink, Sink

__all__ = ["OutputSink", "Sink", "open_sink"]


def open_sink(settings: Settings) -> OutputSink:
    """The sink the settings ask for (``kafka.publisher``): a publisher process, or a producer
    in this process."""
    from stream.io.kafka import make_producer
    from stream.io.sinks.kafka import KafkaSink
    from stream.io.sinks.process import ProcessSink

    if settings.kafka.publisher == "process":
        return ProcessSink(settings)
    sink = KafkaSink(settings, make_producer(settings))
    sink.warm_up()
    return sink
