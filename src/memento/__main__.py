"""``python -m memento``: the ``memento`` command (see :mod:`memento.view.cli`)."""

from __future__ import annotations

from memento.view.cli import main

if __name__ == "__main__":
    main()
