"""Read-only views over a store: the ``memento`` command (``cli``), the HTML report
(``report``), and ``memento import-1.2`` (``import_legacy``), which copies a memento-ml 1.2
store into a new one."""
