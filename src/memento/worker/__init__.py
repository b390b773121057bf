"""What runs on a node: the wire types (``wire``: Job, Outcome), the task runner (``task``),
the one exception wire format (``errors``), output routing (``output``), worker-process set-up
(``process``), the ``Context`` an experiment gets (``context``). Imports no driver code."""
