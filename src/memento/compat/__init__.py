"""memento-ml 1.2's lower-level API, built on the core: ``Cache`` and the cache providers
(``caching``), ``FileSystemCheckpointing`` (``checkpointing``) and ``TaskManager``
(``parallel``)."""
