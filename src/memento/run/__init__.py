"""The driver: ``Memento``, the front door (``memento``); the frozen settings of one run
(``settings``); the loop that runs one plan (``driver``); ``run_all`` over dependent matrices
(``run_all``); the live display (``progress``); Ctrl-C and SIGTERM (``stopping``)."""
