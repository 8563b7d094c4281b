"""Runs claimed by one process at a time, so several processes can share a benchmark grid (``claim.py``)."""

import os
import signal
import subprocess
import sys
import textwrap

from derf_zoo.commands.benchmark.claim import claim_run


def test_a_run_is_held_by_one_claim_at_a_time(tmp_path):
    run = tmp_path / "runs/derf/seed0"
    with claim_run(run) as first:
        assert first
        with claim_run(run) as second:  # another open of the claim: what a second process does
            assert not second
        with claim_run(tmp_path / "runs/derf/seed1") as other:  # other runs stay free
            assert other
    with claim_run(run) as again:  # released at the end of the block
        assert again
    try:
        with claim_run(run) as held:
            assert held
            raise RuntimeError("training failed")
    except RuntimeError:
        pass
    with claim_run(run) as free:  # and released when the block raised
        assert free


def test_a_killed_process_leaves_no_stale_claim(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from derf_zoo.commands.benchmark.claim import claim_run
        with claim_run(Path({str(run)!r})) as mine:
            print(mine, flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "True"
        with claim_run(run) as mine:
            assert not mine  # a live process holds it
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with claim_run(run) as mine:
            assert mine  # the operating system dropped the dead process's lock: nothing to clean up by hand
        assert (run / ".claim").read_text() == f"pid {os.getpid()}\n"
    finally:
        holder.kill()
        holder.wait()
