"""Per-customer behavioural features, in event time.

- :mod:`~models.features.table`: the feature table (names, units, labels, shaping): one row per
  feature, the one place a feature is described;
- :mod:`~models.features.state`: the customer state, its event-time update, dedupe and packing;
- :mod:`~models.features.vector`: a state evaluated as of a time (the feature vector);
- :mod:`~models.features.schedule`: inactivity re-scoring times;
- :mod:`~models.features.batch`: a batch's states as columns (the pipeline's hot path);
- :mod:`~models.features.clock`: a partition's watermark that no single customer moves.
"""

from models.features.schedule import (
    crosses,
    due_after,
    due_after_event,
    is_crossing,
    next_due,
    schedule_after_event,
    threshold_offsets,
)
from models.features.state import (
    CHANNEL_GROUPS,
    DAY,
    DECAYED,
    DEDUPE_WINDOW,
    KIND_GROUPS,
    NEVER_PURCHASED_DAYS,
    CustomerState,
    Fact,
    FeatureParams,
    admit,
    apply_event,
    apply_values,
    fact_of,
    feature_differences,
)
from models.features.table import (
    CLIP_RANGES,
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURE_UNITS,
    FEATURES,
    LOG_FEATURES,
    Feature,
    feature_label,
    format_value,
)
from models.features.vector import SNAPSHOT_WIDTH, evaluate, evaluate_many, snapshot

__all__ = [
    "CHANNEL_GROUPS",
    "CLIP_RANGES",
    "DAY",
    "DECAYED",
    "DEDUPE_WINDOW",
    "FEATURES",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FEATURE_UNITS",
    "KIND_GROUPS",
    "LOG_FEATURES",
    "NEVER_PURCHASED_DAYS",
    "SNAPSHOT_WIDTH",
    "CustomerState",
    "Fact",
    "Feature",
    "FeatureParams",
    "admit",
    "apply_event",
    "apply_values",
    "crosses",
    "due_after",
    "due_after_event",
    "evaluate",
    "evaluate_many",
    "fact_of",
    "feature_differences",
    "feature_label",
    "format_value",
    "is_crossing",
    "next_due",
    "schedule_after_event",
    "snapshot",
    "threshold_offsets",
]
