#!/usr/bin/env bash
# Prints the Python 3.11 interpreter to build .venv with, or stops with one line.
for cand in "${PYTHON:-}" python3.11 python3; do
  [ -n "$cand" ] || continue
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    command -v "$cand"; exit 0
  fi
done
echo "sparktf: Python 3.11 is missing; install python3.11 (with venv) or set PYTHON=/path/to/python3.11." >&2
exit 1
