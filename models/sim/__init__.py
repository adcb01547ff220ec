"""Logs to try segstream on: a seeded generator of planted personas and the real CDNOW log.

- :mod:`~models.sim.personas`: the personas as data (one row of parameters each);
- :mod:`~models.sim.simulate`: the seeded simulation behind the generator;
- :mod:`~models.sim.generator`: the public generator (records, ground truth, scenarios);
- :mod:`~models.sim.cdnow`: the CDNOW purchase log as interaction events.
"""

from models.sim.generator import (
    MALFORMED_KINDS,
    GeneratedLog,
    GeneratedRecord,
    customer_id,
    generate,
    ground_truth,
    iter_records,
    write_truth_csv,
)
from models.sim.personas import (
    CATEGORIES,
    DEFAULT_PERSONA_WEIGHTS,
    DEFAULT_START,
    PERSONAS,
    SCENARIOS,
    Persona,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_PERSONA_WEIGHTS",
    "DEFAULT_START",
    "MALFORMED_KINDS",
    "PERSONAS",
    "SCENARIOS",
    "GeneratedLog",
    "GeneratedRecord",
    "Persona",
    "customer_id",
    "generate",
    "ground_truth",
    "iter_records",
    "write_truth_csv",
]
