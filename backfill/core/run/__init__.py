"""Running jobs: the worker, its local queue and slots, claiming, running, recording results, and the side tasks
that keep a running worker honest (listener, heartbeat, loop monitor)."""
