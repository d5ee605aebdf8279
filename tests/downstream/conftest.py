"""The scripts here run in a client's own virtual environment (.ci/downstream), never under
the fork's pytest: they import sae_lens / circuit_tracer, which the fork's venv lacks."""

collect_ignore_glob = ["*.py"]
