"""Allow ``python -m her2viewer``."""

from her2viewer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
