"""``python -m contractnet`` is the ``contractnet`` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
