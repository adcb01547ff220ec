"""The service: Kafka and Redis around the pure domain in ``models``."""

import os

# One BLAS thread per process, unless the environment says otherwise. The service's matrices are
# small (a batch of rows against a few dozen centroids, 4-parameter BTYD fits), and its workers
# already use the cores: OpenBLAS's own threads only spin against them. Measured on the e2e log
# replayed in memory on 2 loaded cores: the value model's 9 fits took 1.0-1.7 s with the default
# threads, 0.05-0.15 s with one. Set before numpy loads OpenBLAS (importing ``stream`` first).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
