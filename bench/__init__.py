"""`make bench`: the project's hot paths measured side by side with raw twins of the same work.

`python -m bench` (or `make bench`; `SMOKE=1` for a few seconds of every path) creates its own
databases, broker namespace, ports and SMTP sink, runs each path and its raw twin alternately,
and writes results.json, results.md and e2e_latency.svg. bench/README.md says how to read them.
"""
