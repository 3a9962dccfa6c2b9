"""``python -m sparktf.tuning TASK RESULT PARENT_PID``: one trial's training process
(see :mod:`sparktf.tuning.trial`).

A separate entry point because ``-m sparktf.tuning.trial`` would run a second copy of a
module the package has already imported.
"""

from __future__ import annotations

import sys

from sparktf.tuning.trial import main

if __name__ == "__main__":
    main(sys.argv[1:])
