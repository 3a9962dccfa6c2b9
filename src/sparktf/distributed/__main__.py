"""``python -m sparktf.distributed SPEC CONTROL_FD PARENT_PID``: one TF worker process (see :mod:`.worker`).

A separate entry point because running ``-m sparktf.distributed.worker`` would
execute a module the package has already imported.
"""

from __future__ import annotations

import sys

from sparktf.distributed.worker import main

if __name__ == "__main__":
    main(sys.argv[1:])
