"""``segstream report``: a namespace's segments as one self-contained HTML file with charts.

- :mod:`~stream.ops.report.gather`: what is read (the store, the changes and model-events topics);
- :mod:`~stream.ops.report.timeline`: membership over event time, flows, volatility (pure);
- :mod:`~stream.ops.report.segments`: segment cards, the customer map, the tree (pure);
- :mod:`~stream.ops.report.figures`: the Plotly charts;
- :mod:`~stream.ops.report.page`: the HTML around them;
- :mod:`~stream.ops.report.build`: all of it, for the command.

Plotly is the optional ``report`` extra (``pip install segstream[report]``); only figures, page
and build import it.
"""
