"""The release scripts overwrite a release or export folder only when asked (``--overwrite``, default off)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[1] / "scripts"


@pytest.mark.parametrize("script", ["release_dna_demo.py", "release_speech_demo.py", "release_dit_digits.py",
                                    "release_gpt2_nano.py"])
def test_release_scripts_overwrite_only_with_the_flag(script):
    path = SCRIPTS / script
    tree = ast.parse(path.read_text())
    passed = [ast.unparse(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
              for k in node.keywords if k.arg == "overwrite"]  # fmt: skip
    assert passed and set(passed) == {"args.overwrite"}, passed  # never a hard-coded True
    docstring = ast.get_docstring(tree)
    assert "--overwrite" in docstring
    help_text = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--overwrite" in help_text and "default: refuse" in " ".join(help_text.split())
