"""Training over several threads (threads.py) and several processes (single.py, mpi.py, world.py,
launch.py)."""
