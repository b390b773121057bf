"""``python -m memento``: the ``memento`` command (see :mod:`memento.cli`)."""

from __future__ import annotations

from memento.cli import main

if __name__ == "__main__":
    main()
