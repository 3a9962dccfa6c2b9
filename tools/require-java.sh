#!/usr/bin/env bash
# Stops with one line when Java 17+ (what Spark 4 needs) is missing.
java_bin="java"
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java_bin="$JAVA_HOME/bin/java"; fi
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "sparktf: Java is missing; install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless') for Spark." >&2
  exit 1
fi
# JDK_JAVA_OPTIONS / JAVA_TOOL_OPTIONS make java print "Picked up ..." before its version.
line=$("$java_bin" -version 2>&1 | grep -v 'Picked up ' | head -n 1)
major=$(printf '%s' "$line" | sed -E 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/')
set -- $major
if [ "${1:-0}" = "1" ]; then v="${2:-0}"; else v="${1:-0}"; fi
case "$v" in ''|*[!0-9]*) v=0 ;; esac
if [ "$v" -lt 17 ]; then
  echo "sparktf: Java $v found ($line); Spark 4 needs Java 17 or newer: install openjdk-17-jre-headless." >&2
  exit 1
fi
