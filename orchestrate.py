"""Run the whole pipeline: ``python orchestrate.py --help``."""

from orchestration.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
