#!/usr/bin/env bash
# README command 1: set up (idempotent) and run the main job.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
derf-zoo demo "$@"
