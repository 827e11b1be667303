"""The chaos suite: claims churned on real nodes while the driver's parts are killed.

``bench/chaos.py`` runs it on a cluster of its own and prints the table;
``tests/e2e/test_chaos.py`` runs the reduced size in ``make test``.
"""
