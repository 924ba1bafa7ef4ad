"""Side-by-side benchmark of chatgate, Prosody and ejabberd (`make bench`, `python -m bench.run`).

The package owns everything the benchmark needs: peer servers started from private configs on
loopback ports (`bench.peers`), our own load generator (`bench.loadgen`, run as a separate
process pinned to another core), the run plan and orchestration (`bench.run`), and the report
(`bench.report`). It never touches a system service and binds only to 127.0.0.1.
"""
