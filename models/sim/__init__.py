"""Logs to try segstream on: a seeded generator of planted personas and the real CDNOW log.

- :mod:`~models.sim.personas`: the personas as data (one row of parameters each);
- :mod:`~models.sim.simulate`: the seeded simulation behind the generator;
- :mod:`~models.sim.rhythm`: the ``rhythm`` scenario's shoppers, closures, peak, pauses, lapses;
- :mod:`~models.sim.generator`: the public generator (records, ground truth, scenarios);
- :mod:`~models.sim.cdnow`: the CDNOW purchase log as interaction events.
"""

from models.sim.generator import (
    MALFORMED_KINDS,
    GeneratedLog,
    GeneratedRecord,
    RhythmCustomer,
    RhythmTruth,
    customer_id,
    generate,
    ground_truth,
    iter_records,
    rhythm_truth,
    write_truth_csv,
)
from models.sim.personas import (
    CATEGORIES,
    DEFAULT_PERSONA_WEIGHTS,
    DEFAULT_START,
    PERSONAS,
    RHYTHM_PERSONA_ORDER,
    RHYTHM_PERSONAS,
    SCENARIOS,
    Persona,
    RhythmPersona,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_PERSONA_WEIGHTS",
    "DEFAULT_START",
    "MALFORMED_KINDS",
    "PERSONAS",
    "RHYTHM_PERSONAS",
    "RHYTHM_PERSONA_ORDER",
    "SCENARIOS",
    "GeneratedLog",
    "GeneratedRecord",
    "Persona",
    "RhythmCustomer",
    "RhythmPersona",
    "RhythmTruth",
    "customer_id",
    "generate",
    "ground_truth",
    "iter_records",
    "rhythm_truth",
    "write_truth_csv",
]
