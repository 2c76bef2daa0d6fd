"""Load drivers, peers and reports for voicecall's benchmarks (run with ``make bench``)."""
