"""The checkpoint callback every ``derf-zoo fit`` run gets (the recipes' ``checkpoint:`` section)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["LOCK_NAME", "LatestCheckpoint", "RunFolderError"]

#: the lock file a fit holds in its checkpoint folder while it runs
LOCK_NAME = "fit.lock"
_HELD: set[str] = set()  # lock files this process holds (a pid reused after a restart is not a live holder)


class RunFolderError(RuntimeError):
    """The checkpoint folder cannot be used by this run (held by another fit, or holding another run)."""


class LatestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``save_last=True`` by default, so ``--ckpt_path last`` resumes, and
    with the guards a long run on a cluster needs.

    - **One run per folder.** While a fit runs, rank 0 holds the lock file ``fit.lock`` in ``dirpath`` (pid, host,
      start time, command). A second fit into the same folder stops with an error naming the holder, instead of
      racing it and leaving ``last.ckpt`` and ``last-v1.ckpt`` (after which ``--ckpt_path last`` loads whichever
      is newer). The lock goes at the end of the fit, also when it fails; a lock left by a process that died
      (its pid is gone on this host) is taken over with a warning.
    - **No fresh run over an old one.** A fit that does not resume from this folder (no ``--ckpt_path``, or a
      checkpoint elsewhere) into a folder that already holds checkpoints is an error naming the folder and the
      two ways out: ``--ckpt_path last`` to resume, or ``--overwrite`` to start again, which moves the old
      ``*.ckpt`` files aside into ``dirpath/replaced-<date>T<time>/`` (nothing is deleted).
    - **Pre-emption.** On SIGTERM, Lightning stops the loop; this callback then writes ``last.ckpt`` at the
      current step (unless the signal came during validation, where an EMA's weights are swapped in: the last
      checkpoint is kept) and ``derf-zoo fit`` exits with status 143, so ``fit && export`` never exports a
      half-trained model.
    - **Pre-emption under DDP.** A signal reaches one rank, some, or all, at any moment; Lightning's own handler
      then runs a collective inside the signal handler and lets each rank stop on its own, which deadlocks or
      breaks the process group. With several processes this callback replaces it: the handler only notes the
      signal, and at every step boundary the ranks all-reduce the note, so all of them stop after the same step;
      rank 0 saves ``last.ckpt``, releases the lock, and every rank exits 143. A signal during validation takes
      effect after it, at the next training step (or at the end of the fit).
    - ``--ckpt_path last`` with no last checkpoint in the folder is an error, unless ``resume_if_present`` is
      set: the pre-emption pattern, where the same command (with ``--ckpt_path last``) starts the run the first
      time and resumes it after every requeue.
    - A ``fast_dev_run`` writes nothing (no checkpoint, no lock) and checks nothing. Lightning 2.6's
      ``on_train_end`` saves ``last.ckpt`` without the fast-dev-run check its other hooks make, which for a
      ViT-L recipe is a 4.8 GB file (weights, AdamW moments and EMA) written by a run that was only meant to
      prove the recipe works.

    Args:
        resume_if_present: ``--ckpt_path last`` starts a fresh run when the folder holds no last checkpoint
            (instead of an error). Set it in the recipe's ``checkpoint:`` section or with
            ``--checkpoint.resume_if_present true``.
        overwrite: start a fresh run in a folder that holds checkpoints, moving them aside first (the CLI's
            ``--overwrite``).
        *args, **kwargs: ``ModelCheckpoint``'s (``dirpath``, ``every_n_train_steps``, ``save_top_k``, ...).
    """

    def __init__(
        self, *args, save_last: bool | str | None = True, resume_if_present: bool = False, overwrite: bool = False,
        **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, save_last=save_last, **kwargs)
        self.resume_if_present = resume_if_present
        self.overwrite = overwrite
        self._lock: Path | None = None
        self._sigterm_noted = False  # a SIGTERM this process received (DDP: acted on when the ranks agree)
        self._sigterm_previous = None  # the handler ours replaced, put back at the end

    def has_last_checkpoint(self, trainer) -> bool:
        """Whether the run folder holds a ``last*.ckpt`` that ``--ckpt_path last`` would resume from (the folder is
        resolved as Lightning resolves it, also before ``setup``)."""
        return bool(self._find_last_checkpoints(trainer))

    # ---- one run per folder ------------------------------------------------------------------------------

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and not trainer.fast_dev_run:
            # Rank 0 takes the lock (DDP ranks share the folder) and every rank raises its verdict.
            self._on_rank_zero(trainer, self._take_lock)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_sigterm_handler()
        self._release_lock()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException):
            self._save_on_sigterm(trainer)
        self._restore_sigterm_handler()
        self._release_lock()  # Lightning skips the teardown hooks when a fit fails

    # ---- pre-emption under DDP: the ranks agree at a step boundary -------------------------------------------

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        super().on_sanity_check_start(trainer, pl_module)
        self._take_sigterm(trainer)  # Lightning registered its handler just before

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._take_sigterm(trainer)
        # Here, not in setup: Lightning resolves the checkpoint it resumes from (trainer.ckpt_path) after setup.
        if not trainer.fast_dev_run:
            self._on_rank_zero(trainer, self._check_folder)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._agree_on_sigterm(trainer)  # Lightning stops right after this hook when the flag is set

    def on_train_end(self, trainer, pl_module) -> None:
        self._agree_on_sigterm(trainer)  # a signal during the last validation: the fit still exits 143
        if trainer.fast_dev_run:
            return
        super().on_train_end(trainer, pl_module)

    def _take_sigterm(self, trainer) -> None:
        """Replace Lightning's SIGTERM handler (a collective inside a signal handler, and a stop decided by each
        rank alone) with one that only notes the signal, when several processes train."""
        if trainer.world_size < 2 or self._sigterm_previous is not None:
            return
        if threading.current_thread() is not threading.main_thread():  # signal.signal works in the main thread only
            return
        self._sigterm_noted = False
        self._sigterm_previous = signal.signal(signal.SIGTERM, self._note_sigterm)

    def _note_sigterm(self, signum, frame) -> None:
        self._sigterm_noted = True  # nothing else here: no collective, no I/O, whatever the rank is doing

    def _agree_on_sigterm(self, trainer) -> None:
        """All-reduce the ranks' notes (every rank calls this at the same step): if any rank received SIGTERM,
        every rank sets Lightning's flag now, so all of them stop after this step and save together."""
        if self._sigterm_previous is None:
            return
        if trainer.strategy.reduce_boolean_decision(self._sigterm_noted, all=False):
            trainer._signal_connector.received_sigterm = True  # what trainer.received_sigterm reads

    def _restore_sigterm_handler(self) -> None:
        if self._sigterm_previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._sigterm_previous)
        self._sigterm_previous = None

    def _on_rank_zero(self, trainer, check) -> None:
        message = None
        if trainer.is_global_zero:
            try:
                check(trainer)
            except RunFolderError as err:
                message = str(err)
        message = trainer.strategy.broadcast(message, src=0)
        if message:
            self._release_lock()
            raise RunFolderError(message)

    def _local_dir(self) -> Path | None:
        if not self.dirpath or not _is_local_file_protocol(str(self.dirpath)):
            return None
        return Path(self.dirpath)

    def _take_lock(self, trainer) -> None:
        folder = self._local_dir()
        if folder is None:
            rank_zero_warn(f"Checkpoint folder {self.dirpath} is not on a local file system: no run lock is taken.")
            return
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / LOCK_NAME
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)[:500]}  # fmt: skip
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # atomic, also on NFS v3+
            except FileExistsError:
                holder = _read_lock(lock)
                if not _is_stale(holder, lock):
                    raise RunFolderError(
                        f"Another fit is writing checkpoints to {folder}: {_describe(holder)} holds {lock}. Two "
                        "fits in one folder overwrite each other's last.ckpt. Wait for it to end, or give this run "
                        "its own folder (--checkpoint.dirpath). If no such process runs any more, delete the lock "
                        "file."
                    ) from None
                rank_zero_warn(f"Taking over the lock {lock} left by {_describe(holder)}, which no longer runs.")
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self._lock = lock
            _HELD.add(str(lock))
            return
        raise RunFolderError(f"Could not take the lock {lock}: another fit took it at the same moment.")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            _HELD.discard(str(self._lock))
            self._lock = None

    # ---- no fresh run over an old one ---------------------------------------------------------------------

    def _check_folder(self, trainer) -> None:
        folder = self._local_dir()
        if folder is None or not folder.is_dir():
            return
        old = sorted(p for p in folder.iterdir() if p.suffix == self.FILE_EXTENSION)
        if not old:
            return
        resumed = Path(trainer.ckpt_path).resolve() if trainer.ckpt_path else None
        from_here = resumed is not None and resumed.parent == folder.resolve()
        if from_here and self.overwrite:
            raise RunFolderError(
                f"--overwrite moves the checkpoints in {folder} aside, but this run resumes from one of them "
                f"({resumed.name}): drop --overwrite (or pass --no_overwrite) to resume, or drop --ckpt_path to start "
                "again."
            )
        if from_here:
            return
        if not self.overwrite:
            names = ", ".join(p.name for p in old[:4]) + (", ..." if len(old) > 4 else "")
            raise RunFolderError(
                f"{folder} already holds checkpoints of another run ({names}) and this fit "
                f"{'resumes from ' + str(resumed) if resumed else 'starts a fresh run'}: its checkpoints would mix "
                "with them (last.ckpt next to last-v1.ckpt). Add --ckpt_path last to resume the run in that folder, "
                f"or --overwrite to start again (the old checkpoints move to {folder}/replaced-<date>T<time>/), or "
                "give this run its own folder (--checkpoint.dirpath)."
            )
        stamp, n = time.strftime("replaced-%Y%m%dT%H%M%S"), 1
        aside = folder / stamp
        while aside.exists():  # two --overwrite runs within a second
            n += 1
            aside = folder / f"{stamp}-{n}"
        aside.mkdir()
        for path in old:
            path.rename(aside / path.name)
        rank_zero_info(f"--overwrite: moved {len(old)} old checkpoint(s) from {folder} to {aside}.")

    # ---- pre-emption and fast dev runs ---------------------------------------------------------------------

    def _save_on_sigterm(self, trainer) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if trainer.validating:  # Lightning's weight averaging has its EMA swapped into the model right now
            rank_zero_warn(f"SIGTERM during validation: keeping the last checkpoint ({self.last_model_path or 'none'}"
                           f") rather than saving step {trainer.global_step} with the averaged weights swapped in.")
            return
        candidates = self._monitor_candidates(trainer)
        if self.save_last:
            self._save_last_checkpoint(trainer, candidates)
        else:
            self._save_checkpoint(trainer, self.format_checkpoint_name(candidates))
        rank_zero_info(f"SIGTERM: saved {self._last_checkpoint_saved} at step {trainer.global_step}; resume with "
                       "--ckpt_path last.")  # fmt: skip



def _read_lock(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}  # being written right now, or not ours: treat as held


def _describe(holder: dict) -> str:
    if not holder:
        return "a process (lock file unreadable)"
    return (f"process {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')}: "
            f"{holder.get('command', '?')})")  # fmt: skip


def _is_stale(holder: dict, lock: Path) -> bool:
    """Whether the lock's holder is known dead: a process of this host that no longer exists (or this process's
    own pid, reused after a restart, for a lock this process does not hold)."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    if pid == os.getpid():
        return str(lock) not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
