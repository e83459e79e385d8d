#!/usr/bin/env bash
# The Node packages of the PouchDB suite and the browser test (pouchdb 9, pouchdb-adapter-memory), exactly
# as package-lock.json pins them, into tests/couch/node/node_modules (git-ignored). Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
