"""Moved: the checkpoint checksum lives in :mod:`derf_zoo.tasks.checkpoint` with the rest of reading and writing a
task's checkpoint. These names are re-exported so that imports written before keep working."""

from derf_zoo.tasks.checkpoint import (
    CHECKSUM_KEY,
    SECTIONS,
    CorruptCheckpointError,
    record_checksum,
    section_digests,
    verify_checksum,
)

__all__ = ["CHECKSUM_KEY", "SECTIONS", "CorruptCheckpointError", "record_checksum", "section_digests",
           "verify_checksum"]
