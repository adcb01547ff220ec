"""One exception base for the runtime, so the CLI can turn any of them into a one-line message."""


class SegstreamError(Exception):
    """Base of every error segstream raises on purpose."""


class ConfigError(SegstreamError):
    """Settings could not be loaded or are invalid."""


class ServiceUnavailable(SegstreamError):
    """Kafka or Redis did not answer."""


class StateConflict(SegstreamError):
    """Another writer advanced a partition's applied offset (rebalance or a second instance)."""


class ModelConflict(SegstreamError):
    """Another learner checkpointed a model version in this namespace: only one instance may learn."""


class TopicChanged(SegstreamError):
    """The input topic is not the one the namespace's state was built from (recreated, truncated)."""


class StateLost(SegstreamError):
    """Redis holds less than the consumer group and the model checkpoint say was written."""


class BatchAbandoned(SegstreamError):
    """A follower stopped while it waited for the learner: its batch was not written (a restart
    reads it again from the applied offsets)."""
