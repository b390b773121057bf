"""What runs on a node: the task runner and output routing (``task``), the ``Context``
an experiment gets (``context``). Imports no driver code."""
