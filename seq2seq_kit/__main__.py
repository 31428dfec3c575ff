import os
import signal

from .cli import main

status = main()
if status and "WORLD_SIZE" in os.environ:
    # torchrun ends the other ranks with SIGTERM once one fails: this one has said why it
    # stops, and exits with its own status rather than an atexit traceback
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
raise SystemExit(status)
