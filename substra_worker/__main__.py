"""``python -m substra_worker``: the ``substra-worker`` command line."""

from substra_worker.cli import main

if __name__ == "__main__":
    main(prog_name="substra-worker")
