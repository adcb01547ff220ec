"""Prometheus metrics. The registry is passed in (tests use a fresh one); never a customer id in a label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream.state import MAX_UNWRITTEN_BATCHES

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "segstream_events_consumed", "Records read from the interactions topic", registry=registry
        )
        self.events_applied = Counter(
            "segstream_events_applied", "Valid events applied to the feature state", registry=registry
        )
        self.events_skipped = Counter(
            "segstream_events_skipped",
            "Records skipped because the partition had already applied their offset (replayed after a crash)",
            registry=registry,
        )
        self.duplicates = Counter(
            "segstream_duplicate_events",
            "Events ignored as duplicates of a recent event_id",
            registry=registry,
        )
        self.dead_letters = Counter(
            "segstream_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=registry
        )
        self.changes = Counter(
            "segstream_segment_changes", "Segment changes published", ["reason"], registry=registry
        )
        self.stage_changes = Counter(
            "segstream_stage_changes",
            "Lifecycle stage changes published, by the stage entered",
            ["stage"],
            registry=registry,
        )
        self.reevaluations = Counter(
            "segstream_inactivity_reevaluations",
            "Customers re-scored because their inactivity crossed a threshold",
            registry=registry,
        )
        self.batch_size = Histogram(
            "segstream_batch_size",
            "Records per processed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "segstream_batch_seconds",
            "Wall time to process one batch (its flush and write run behind the loop)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        # Since a batch's output flush and state write run behind the loop (OrderedIO), a slow
        # publisher or Redis no longer shows in the batch time: these two show it.
        self.rescore_seconds = Histogram(
            "segstream_rescore_seconds",
            "One re-scoring of a partition's customers against the version in force (model.rescore_*)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "segstream_output_flush_seconds",
            "Wait for a batch's outputs to be acknowledged before its state is written",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.unwritten_batches = Gauge(
            "segstream_unwritten_batches",
            "Processed batches whose state is not yet in Redis "
            f"(the loop waits beyond {MAX_UNWRITTEN_BATCHES})",
            registry=registry,
        )
        self.latency = Histogram(
            "segstream_event_to_change_seconds",
            "From the event's own timestamp to the publish of the change it caused",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag_messages = Gauge(
            "segstream_consumer_lag_messages", "Records behind the log end", ["partition"], registry=registry
        )
        self.lag_seconds = Gauge(
            "segstream_consumer_lag_seconds",
            "Wall clock minus the event time of the last applied event",
            ["partition"],
            registry=registry,
        )
        self.watermark = Gauge(
            "segstream_watermark_seconds",
            "Event-time watermark per partition",
            ["partition"],
            registry=registry,
        )
        self.segment_size = Gauge(
            "segstream_segment_customers",
            "Customers currently in each segment",
            ["segment"],
            registry=registry,
        )
        self.model_version = Gauge("segstream_model_version", "Current model version", registry=registry)
        self.model_updated = Gauge(
            "segstream_model_updated_timestamp_seconds",
            "Wall-clock time of the last model version",
            registry=registry,
        )
        self.model_waiting_rows = Gauge(
            "segstream_model_waiting_rows",
            "Rows and records the learner holds until its other partitions pass them "
            "(model.align_partitions)",
            registry=registry,
        )
        self.merge_forced = Counter(
            "segstream_merge_forced_records_total",
            "Records a learner processed out of the merge's order: more than model.max_held_records "
            "waited for a partition that did not deliver",
            registry=registry,
        )
        self.follower_wait_seconds = Histogram(
            "segstream_follower_merge_wait_seconds",
            "How long a follower waited per batch for the learner's merge to pass its rows",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.follower_retried_batches = Counter(
            "segstream_follower_retried_batches_total",
            "Follower batches read again because the learner's merge did not pass them within "
            "model.follower_wait_seconds (a learner dead, catching up or rebalancing)",
            registry=registry,
        )
        self.follower_unmerged_batches = Counter(
            "segstream_follower_unmerged_batches_total",
            "Follower batches assigned with another version than the merge's: the one they needed "
            "was no longer kept (after a merge forced out of order)",
            registry=registry,
        )
        self.model_checkpoint_bytes = Gauge(
            "segstream_model_checkpoint_bytes",
            "Size of the learner's last model checkpoint",
            registry=registry,
        )
        self.model_events = Counter(
            "segstream_model_events", "Births, deaths, splits, merges, drift", ["kind"], registry=registry
        )
        self.errors = Counter(
            "segstream_errors", "Errors talking to a dependency", ["component"], registry=registry
        )
        self.dependency_silence = Gauge(
            "segstream_dependency_silence_seconds",
            "Seconds since Kafka or Redis last answered the health prober "
            "(/readyz is 503 past service.dependency_silence_seconds)",
            ["dependency"],
            registry=registry,
        )
        self.rebalances = Counter("segstream_rebalances", "Partition assignments received", registry=registry)
        self.restore_seconds = Gauge(
            "segstream_restore_seconds", "Time to restore the model at start", registry=registry
        )
        self.assigned_partitions = Gauge(
            "segstream_assigned_partitions", "Partitions this instance owns", registry=registry
        )
        self.last_loop = Gauge(
            "segstream_last_loop_timestamp_seconds",
            "Wall-clock time of the last poll loop",
            registry=registry,
        )

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters sent so far by this process, by error class (the counter's reason label)."""
        return {
            sample.labels["reason"]: int(sample.value)
            for family in self.dead_letters.collect()
            for sample in family.samples
            if sample.name.endswith("_total") and sample.value
        }
